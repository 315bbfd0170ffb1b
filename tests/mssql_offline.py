"""
A SQL Server connection object that never connects, for compiling SQL with
mssql-django's own operations, compiler and schema editor where no server is
available.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

# What a DatabaseWrapper needs; HOST and NAME lead nowhere. Shared with
# tests/distributed_offline.py.
OFFLINE_SETTINGS: dict[str, Any] = {
    "NAME": "offline",
    "HOST": "",
    "PORT": "",
    "USER": "",
    "PASSWORD": "",
    "OPTIONS": {},
    "TIME_ZONE": None,
    "CONN_MAX_AGE": 0,
    "CONN_HEALTH_CHECKS": False,
    "AUTOCOMMIT": True,
    "ATOMIC_REQUESTS": False,
    "TEST": {},
}


def offline_connection() -> Any:
    try:
        from mssql.base import DatabaseWrapper
    except Exception as exc:  # ImproperlyConfigured when pyodbc has no libodbc
        reason = f"mssql-django cannot be imported here ({exc}); install unixODBC"
        if "mssql_offline" in os.environ.get("SQL_SESSIONS_TEST_REQUIRE", ""):
            pytest.fail(reason)
        pytest.skip(reason)
    alias = "mssql_offline"
    # Seed the version cache the compiler consults, instead of asking a server.
    DatabaseWrapper._known_versions[alias] = 2022
    DatabaseWrapper._known_azures[alias] = False
    return DatabaseWrapper({**OFFLINE_SETTINGS, "ENGINE": "mssql"}, alias=alias)
