"""
The fast cursor path: send() passes a Statement (sql.py) to the driver's own
cursor, keeping what Django's cursor wrapper guarantees. What it relies on and
what it buys: docs/design.rst, "The fast cursor path"; tests/test_sql.py.
"""

from __future__ import annotations

import logging
import random
import secrets
import sys
import threading
import time
from _thread import get_ident
from asyncio import _get_running_loop
from collections import Counter
from collections.abc import Mapping
from typing import Any

from django.db import DatabaseError
from django.db.backends.base.base import BaseDatabaseWrapper

from django_sql_sessions import conf
from django_sql_sessions.dialects import KEPT, dialect, kept
from django_sql_sessions.exceptions import (
    SessionDatabaseReadOnly,
    SessionPreparedStatementLost,
    SessionTableMissing,
)
from django_sql_sessions.sql import Statement

logger = logging.getLogger("django_sql_sessions")

# What send() returns.
ROWCOUNT, ONE, ALL = 0, 1, 2

# Under contention Galera rejects a few in ten writes to one row: five
# retries leave about one in ten thousand to the caller.
CONFLICT_RETRIES = 5
# Operations tried again, by alias, since the process started.
conflict_retries: Counter[str] = Counter()
_retries_lock = threading.Lock()
# Aliases whose server sessions lost a prepared statement (a pooler in
# transaction mode, see stop_preparing()): their statements go unprepared
# until the process ends.
unprepared: set[str] = set()


def send(
    connection: BaseDatabaseWrapper,
    statement: Statement,
    values: Mapping[str, Any],
    result: int = ROWCOUNT,
) -> Any:
    """
    Send one statement with its values (every name given, none extra);
    return its rowcount (ROWCOUNT), its first row or None (ONE), or all its
    rows (ALL). An operation aborted by a conflict is tried again.
    """
    if values.keys() != statement.expected:
        raise TypeError(
            f"Statement takes {sorted(statement.expected)}, was given {sorted(values)}: "
            f"{statement.sql}"
        )
    # map(), not a comprehension: before Python 3.12 a comprehension is a
    # function call of its own, on every statement.
    params = list(map(values.__getitem__, statement.names))
    attempt = 1
    retried_unprepared = False
    while True:
        try:
            return _send_once(connection, statement, params, result)
        except DatabaseError as exc:
            chosen = dialect(connection)
            # Errors that name the alias and the fix, in place of the driver's.
            if chosen.refused_as_read_only(exc):
                # Closed when the request ends (CONN_MAX_AGE ran out), not
                # kept: it still passes Django's usability check, and behind
                # a proxy that sent it to an old primary back as a replica
                # (a failover) every write on it would fail until then.
                connection.close_at = time.monotonic()
                raise SessionDatabaseReadOnly.refused(connection.alias, exc) from exc
            if (table := chosen.missing_table(exc)) is not None:
                raise SessionTableMissing.on(connection.alias, table) from exc
            # The server session lacked the prepared statement, so nothing
            # ran: once more, unprepared (inside a transaction, an error).
            if chosen.lost_prepared_statement(exc) and not retried_unprepared:
                stop_preparing(connection, exc)
                retried_unprepared = True
                continue
            if not retry_after(connection, exc, attempt):
                raise
        attempt += 1


def execute(connection: BaseDatabaseWrapper, statement: Statement, **values: Any) -> int:
    return int(send(connection, statement, values, ROWCOUNT))


def fetch_one(
    connection: BaseDatabaseWrapper, statement: Statement, **values: Any
) -> tuple[Any, ...] | None:
    found: tuple[Any, ...] | None = send(connection, statement, values, ONE)
    return found


def retry_after(connection: BaseDatabaseWrapper, error: DatabaseError, attempt: int) -> bool:
    """
    Whether to try an operation again after the attempt-th try failed with
    error: the database rolled it back whole to resolve a conflict, outside
    any transaction of the caller's (whose owner alone could start it
    again). If so, count it and pause a random moment.
    """
    if attempt > CONFLICT_RETRIES or not dialect(connection).aborted_by_conflict(error):
        return False
    if connection.in_atomic_block or not connection.autocommit:
        return False
    with _retries_lock:
        conflict_retries[connection.alias] += 1
    logger.debug("Conflict on %r, try %d: %s", connection.alias, attempt, error)
    time.sleep(random.random() * attempt / 1000)
    return True


def stop_preparing(connection: BaseDatabaseWrapper, error: DatabaseError) -> None:
    """
    Send the alias's statements unprepared from now on: its server session
    lacked a prepared statement of this connection's, or had its name
    already, because a pooler in transaction mode (PgBouncer before 1.21)
    runs each transaction on whichever server connection is free. Logged
    once per alias. Inside a transaction, which PostgreSQL has aborted,
    raise SessionPreparedStatementLost.
    """
    alias = connection.alias
    raw = connection.connection
    # psycopg's own preparing (OPTIONS["prepare_threshold"]) fails there too.
    if getattr(raw, "prepare_threshold", None) is not None:
        raw.prepare_threshold = None
    with _retries_lock:
        first = alias not in unprepared
        unprepared.add(alias)
    if first:
        logger.warning(
            "Database %r lost a prepared statement (%s): a connection pooler in "
            "transaction mode, such as PgBouncer before 1.21 or without "
            "max_prepared_statements, runs each transaction on another server session. "
            "The session engine's statements on %r are sent unprepared from now on; "
            "set SQL_SESSIONS_PREPARE = False to skip preparing them at all.",
            alias,
            str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__,
            alias,
        )
    if connection.in_atomic_block or not connection.autocommit:
        raise SessionPreparedStatementLost.inside_transaction(alias) from error


def _read(cursor: Any, result: int) -> Any:
    if result == ONE:
        row = cursor.fetchone()
        return None if row is None else tuple(row)
    if result == ALL:
        return [tuple(row) for row in cursor.fetchall()]
    return int(cursor.rowcount)


def _send_once(
    connection: BaseDatabaseWrapper, statement: Statement, params: list[Any], result: int
) -> Any:
    """
    Send a statement through the driver's own cursor, or through Django's
    where something observes queries, inside a running event loop (for its
    SynchronousOnlyOperation) and on SQL Server.
    """
    chosen = connection.__dict__.get(KEPT) or dialect(connection)
    if (
        chosen.django_cursor
        or connection.queries_logged
        or connection.execute_wrappers
        or _get_running_loop() is not None
    ):
        with connection.cursor() as cursor:
            cursor.execute(statement.format, params)
            return _read(cursor, result)
    connection.close_if_health_check_failed()
    if connection.connection is None:
        connection.ensure_connection()
    owner = connection._thread_ident == get_ident()  # type: ignore[attr-defined]
    if not owner:
        connection.validate_thread_sharing()
    connection.validate_no_broken_transaction()
    try:
        # psycopg: the thread's kept cursor; else one per statement, closed at
        # once: an open sqlite3 statement would hold its read snapshot.
        kept_cursor = chosen.keeps_cursor and owner
        if kept_cursor:
            found = connection.__dict__.get(_KEPT_CURSOR)
            raw = connection.connection
            cursor, prepares = found[1] if found and found[0] is raw else _keep_cursor(connection)
        else:
            cursor, prepares = connection.connection.cursor(), False
        try:
            if prepares:
                # Prepared outside transactions only (see _new_postgresql_cursor()).
                cursor.execute(
                    statement.format,
                    params,
                    prepare=connection.autocommit and connection.alias not in unprepared,
                )
            else:
                cursor.execute(statement.qmark if chosen.qmark else statement.format, params)
            if result == ONE:
                row = cursor.fetchone()
                return None if row is None else tuple(row)
            return cursor.rowcount if result == ROWCOUNT else _read(cursor, result)
        finally:
            if not kept_cursor:
                cursor.close()
    except Exception:
        # As Django's cursor would raise it; entered only on failure, for speed.
        with connection.wrap_database_errors:
            raise


# One psycopg cursor per connection for its owning thread: psycopg builds a
# cursor's adapters anew each time, which costs more than the rest of a load.
_KEPT_CURSOR = "_django_sql_sessions_cursor"


def _keep_cursor(connection: BaseDatabaseWrapper) -> tuple[Any, bool]:
    return kept(connection, _KEPT_CURSOR, _new_postgresql_cursor)


# A prepare_threshold no count reaches: psycopg prepares only the statements
# execute() is told to prepare (with None, Django's default, it prepares none).
ONLY_WHEN_ASKED = sys.maxsize


def _new_postgresql_cursor(connection: BaseDatabaseWrapper) -> tuple[Any, bool]:
    """
    The connection's cursor, and whether the engine prepares its statements
    on it (SQL_SESSIONS_PREPARE, psycopg 3): a cursor that binds on the
    server, so that psycopg prepares each statement once per connection.

    Only statements outside transactions are prepared. One that a pooler in
    transaction mode sent to a server session without it fails before it
    runs, and is sent again unprepared (send()); inside a transaction the
    failure would abort the caller's transaction.
    """
    raw = connection.connection
    manager: Any = getattr(raw, "_prepared", None)  # psycopg 3's; psycopg2 has none
    if (
        not conf.PREPARE.get()
        or connection.alias in unprepared
        or not isinstance(getattr(manager, "_prepared_idx", None), int)
    ):
        return raw.cursor(), False
    import psycopg

    if raw.prepare_threshold is None:
        raw.prepare_threshold = ONLY_WHEN_ASKED
    # psycopg names a connection's statements _pg3_0, _pg3_1, ... in the
    # order it prepares them. Behind PgBouncer in transaction mode, a client
    # can reach a server session where another client prepared its _pg3_1,
    # a different statement: with the same parameter types it would run
    # (an exists() running another client's DELETE). From a random start no
    # two connections share a name, so a lost statement is always an error.
    manager._prepared_idx = secrets.randbits(62)
    return psycopg.Cursor(raw), True
