"""
A client process of tests/test_pgbouncer.py: a site's process whose sessions
alias reaches the test database through PgBouncer, on the test run's settings
(tests/settings.py with the run's SQL_SESSIONS_TEST_RUN_ID).

    python -m tests.pgbouncer_client <port> <pool: 0 or 1> probe
    python -m tests.pgbouncer_client <port> <pool: 0 or 1> load <threads> <rounds>

probe: one session, saved, loaded, and saved again three times while another
client holds the server connection that prepared them, so that under
transaction pooling the next statement reaches another server session.

load: each thread makes a session of its own and increments its counter
`rounds` times (load, then save), giving its connection back (to Django's
pool, or closing it) every few rounds.

Prints one line of JSON: {"errors": [tracebacks], "unprepared": whether the
engine stopped preparing, "sessions": {session key: the counter it should
hold}}.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import traceback
from typing import Any

ALIAS = "postgresql"
RECONNECT_EVERY = 5  # rounds


def configure(port: int, pool: bool, threads: int) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    os.environ["SQL_SESSIONS_TEST_DB_ALIAS"] = ALIAS
    import django
    from django.conf import settings

    database = settings.DATABASES[ALIAS]
    database["NAME"] = database["TEST"]["NAME"]
    database["HOST"], database["PORT"] = "127.0.0.1", str(port)
    if pool:
        database["CONN_MAX_AGE"] = 0
        database["OPTIONS"] = {
            **database.get("OPTIONS", {}),
            "pool": {"min_size": 1, "max_size": threads},
        }
    django.setup()


def increment(session_key: str) -> None:
    from django_sql_sessions.backends.db import SessionStore

    store = SessionStore(session_key)
    store["n"] += 1
    store.save()


def new_session() -> str:
    from django_sql_sessions.backends.db import SessionStore

    store = SessionStore()
    store["n"] = 0
    store.save()
    assert store.session_key is not None
    return store.session_key


def probe(port: int) -> dict[str, int]:
    import psycopg
    from django.db import connections

    session_key = new_session()
    increment(session_key)  # the load and the update, prepared
    settings_dict = connections[ALIAS].settings_dict
    holder = psycopg.connect(
        host="127.0.0.1",
        port=port,
        user=settings_dict["USER"],
        password=settings_dict["PASSWORD"],
        dbname=settings_dict["NAME"],
        autocommit=True,
    )
    try:
        # PgBouncer hands out its most recently used server connection: the
        # one that just prepared the load and the update.
        holder.execute("BEGIN")
        holder.execute("SELECT 1")
        for _ in range(3):
            increment(session_key)
        holder.execute("ROLLBACK")
    finally:
        holder.close()
    return {session_key: 4}


def load(threads: int, rounds: int, errors: list[str]) -> dict[str, int]:
    from django.db import connections

    sessions: dict[str, int] = {}
    lock = threading.Lock()

    def client() -> None:
        try:
            session_key = new_session()
            done = 0
            try:
                for done in range(1, rounds + 1):
                    increment(session_key)
                    if done % RECONNECT_EVERY == 0:
                        connections[ALIAS].close()
            finally:
                with lock:
                    sessions[session_key] = done
                connections.close_all()
        except Exception:
            with lock:
                errors.append(traceback.format_exc())

    started = [threading.Thread(target=client) for _ in range(threads)]
    for thread in started:
        thread.start()
    for thread in started:
        thread.join()
    return sessions


def main(port: int, pool: bool, command: str, *args: str) -> None:
    threads = int(args[0]) if args else 1
    configure(port, pool, threads)
    from django_sql_sessions import cursors

    errors: list[str] = []
    sessions: dict[str, int] = {}
    try:
        sessions = probe(port) if command == "probe" else load(threads, int(args[1]), errors)
    except Exception:
        errors.append(traceback.format_exc())
    result: dict[str, Any] = {
        "errors": errors,
        "unprepared": ALIAS in cursors.unprepared,
        "sessions": sessions,
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2] == "1", sys.argv[3], *sys.argv[4:])
