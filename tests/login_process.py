"""
One login in a process of its own, for tests/test_session_limit.py's parallel
logins: its own database connection (and Redis client), on the test run's
databases, as one of several web servers would be.

    python -m tests.login_process <alias> <engine> <user id> <limit> <refuse>

It prints {"ready": true} once Django is set up, waits for a line on stdin
(so that every process logs in at the same moment), logs the user in with
Django's login() and saves the session as the middleware would, and prints
{"key": <the session key>} (with "revoked": true if a later login
revoked it before that save) or {"refused": true} or {"error": "<traceback>"}.
<engine> is "db" or "cached" (on the "sessions_redis" cache).
"""

from __future__ import annotations

import json
import os
import sys
import traceback


def main(alias: str, engine: str, user_id: str, limit: str, refuse: str) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    os.environ["SQL_SESSIONS_TEST_DB_ALIAS"] = alias
    import django
    from django.conf import settings

    database = settings.DATABASES[alias]
    database["NAME"] = database.get("TEST", {}).get("NAME") or database["NAME"]
    if engine == "cached":
        settings.SESSION_ENGINE = "django_sql_sessions.backends.cached_db"
        settings.SESSION_CACHE_ALIAS = "sessions_redis"
    settings.SQL_SESSIONS_MAX_PER_USER = int(limit)
    settings.SQL_SESSIONS_MAX_PER_USER_REFUSE = refuse == "refuse"
    django.setup()

    from django.contrib.auth import get_user_model, login
    from django.contrib.auth.models import AnonymousUser
    from django.contrib.auth.signals import user_logged_in
    from django.contrib.sessions.backends.base import UpdateError
    from django.db import connections
    from django.test import RequestFactory
    from django.utils.module_loading import import_string

    from django_sql_sessions.exceptions import TooManySessions

    # The user need not exist here: users live on 'default', which is the
    # test run's own (in memory) for SQLite.
    user_logged_in.disconnect(dispatch_uid="update_last_login")
    user = get_user_model()(pk=int(user_id), username=f"user{user_id}", password="x")
    store_class = import_string(f"{settings.SESSION_ENGINE}.SessionStore")
    request = RequestFactory().get("/")
    request.session = store_class()
    request.session["basket"] = "before login"
    request.session.save()  # an anonymous session, as a login form's GET leaves
    request.user = AnonymousUser()
    connections[alias].ensure_connection()

    print(json.dumps({"ready": True}), flush=True)
    sys.stdin.readline()
    try:
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        answer: dict[str, object] = {"key": request.session.session_key}
        try:
            request.session.save()  # the middleware's save after the view
        except UpdateError:
            # A later login revoked it already (the middleware answers 400).
            answer["revoked"] = True
    except TooManySessions:
        answer = {"refused": True}
    except Exception:
        answer = {"error": traceback.format_exc()}
    print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
