"""
Whether a MariaDB/MySQL server is a Galera cluster node, and how large a
writeset the cluster takes.
"""

from __future__ import annotations

from django.db.backends.base.base import BaseDatabaseWrapper

from django_sql_sessions.cursors import fetch_all, fetch_one, kept
from django_sql_sessions.sql import Statement

# No rows where the server was built without wsrep (MySQL, most other builds).
_WSREP_ON = Statement.of("SHOW VARIABLES LIKE 'wsrep_on'")
_WRITESET_LIMITS = Statement.of("SELECT @@wsrep_max_ws_rows, @@wsrep_max_ws_size")
# Room per row for everything but the session data in a row-based writeset:
# the other columns, the key and the user index entries.
ROW_OVERHEAD = 1024


# Asked once per driver connection (a reconnect asks again).
_KEPT_ANSWER = "_django_sql_sessions_galera"


def is_galera_node(connection: BaseDatabaseWrapper) -> bool:
    if connection.vendor != "mysql":
        return False
    connection.ensure_connection()
    return kept(connection, _KEPT_ANSWER, _wsrep_on)


def _wsrep_on(connection: BaseDatabaseWrapper) -> bool:
    rows = fetch_all(connection, _WSREP_ON)
    return bool(rows) and str(rows[0][1]).upper() == "ON"


def rows_per_writeset(connection: BaseDatabaseWrapper, row_bytes: int) -> int:
    """
    How many rows of up to row_bytes bytes of data one writeset may hold on
    this Galera node: its wsrep_max_ws_rows (0, the default, is no limit)
    and wsrep_max_ws_size. A transaction over either fails at commit.
    """
    row = fetch_one(connection, _WRITESET_LIMITS)
    assert row is not None
    max_rows, max_bytes = int(row[0]), int(row[1])
    by_size = max(1, max_bytes // (row_bytes + ROW_OVERHEAD))
    return min(by_size, max_rows) if max_rows else by_size
