"""
Another process of the same site, for tests/test_invariants.py: its own
database connection and its own Redis client, on the test run's databases
(tests/settings.py with the run's SQL_SESSIONS_TEST_RUN_ID) and the run's
Redis key prefix, as a second web server would be.

    python -m tests.second_process <alias>

It reads commands from stdin, one a line, and answers each with one line of
JSON on stdout:

    load <engine> <session key> <seconds>
        -> {"data": <what the engine loads, or null for no session>,
            "cache_errors": <the cache errors of this process so far>}

<engine> is "db" or "cached" (the cached engine on the "sessions_redis"
cache), or "custom" or "custom-cached" (the same on tests/custom_sessions);
<seconds> moves this process's clock (timezone.now()) that far ahead for the
load, as the test moves its own. An exception is answered as
{"error": "<traceback>"}.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import traceback
from typing import Any
from unittest import mock

ENGINES = {
    "db": "django_sql_sessions.backends.db",
    "cached": "django_sql_sessions.backends.cached_db",
    "custom": "tests.custom_sessions.engine",
    "custom-cached": "tests.custom_sessions.cached_engine",
}


def main(alias: str) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    os.environ["SQL_SESSIONS_TEST_DB_ALIAS"] = alias
    import django
    from django.conf import settings

    # The test database itself, as the test runner names it: for a server
    # NAME already is; SQLite's file has a name of its own.
    database = settings.DATABASES[alias]
    database["NAME"] = database.get("TEST", {}).get("NAME") or database["NAME"]
    if "sessions_redis" in settings.CACHES:
        settings.SESSION_CACHE_ALIAS = "sessions_redis"
    django.setup()

    from django.test import override_settings
    from django.utils import timezone
    from django.utils.module_loading import import_string

    from django_sql_sessions import caching

    real_now = timezone.now
    stores = {name: import_string(f"{module}.SessionStore") for name, module in ENGINES.items()}

    def load(engine: str, session_key: str, seconds: str) -> dict[str, Any]:
        moment = real_now() + datetime.timedelta(seconds=float(seconds))
        # The engine is SESSION_ENGINE: the model and the cache follow it.
        with (
            mock.patch.object(timezone, "now", return_value=moment),
            override_settings(SESSION_ENGINE=ENGINES[engine]),
        ):
            store = stores[engine](session_key)
            data = store.load()
        # load() forgets a key it did not find (missing, expired, past its lifetime).
        return {
            "data": None if store.session_key is None else data,
            "cache_errors": sum(caching.cache_errors.values()),
        }

    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        command, *args = line.split()
        try:
            if command != "load":
                raise ValueError(f"unknown command {command!r}")
            answer = load(*args)
        except Exception:
            answer = {"error": traceback.format_exc()}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
