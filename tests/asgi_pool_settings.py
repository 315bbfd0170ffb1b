"""
The example project's settings with its sessions on another database, for
tests/test_asgi_server.py: SQL_SESSIONS_TEST_POOL_DB holds the sessions
alias's DATABASES entry as JSON (the test suite's PostgreSQL test database,
behind Django's psycopg pool), SQL_SESSIONS_TEST_TABLE the session table's
name there.
"""

from __future__ import annotations

import importlib
import json
import os

_example = importlib.import_module("example.settings")
globals().update({name: value for name, value in vars(_example).items() if name.isupper()})

DATABASES = {
    **_example.DATABASES,
    "sessions": json.loads(os.environ["SQL_SESSIONS_TEST_POOL_DB"]),
}
SQL_SESSIONS_TABLE = os.environ["SQL_SESSIONS_TEST_TABLE"]
DEBUG = False
