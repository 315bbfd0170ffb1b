"""
The fast cursor path: how the session table's statements reach the driver.

One function, send(), takes a Statement (sql.py) and its named values, and
returns the rowcount, the first row or all rows. On the usual path it uses
the driver's own cursor rather than Django's cursor wrapper, which costs more
than SQLite's whole query, and keeps what that wrapper guarantees (see
_send_once()). What it relies on, and what it buys (benchmarks/overhead.py),
is in docs/design.rst, "The fast cursor path". Every Django in the test
matrix runs the tests of tests/test_sql.py that pin that behaviour.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from _thread import get_ident
from asyncio import _get_running_loop
from collections import Counter
from collections.abc import Mapping
from typing import Any

from django.db import DatabaseError
from django.db.backends.base.base import BaseDatabaseWrapper

from django_sql_sessions.dialects import KEPT, dialect, kept
from django_sql_sessions.exceptions import SessionDatabaseReadOnly, SessionTableMissing
from django_sql_sessions.sql import Statement

logger = logging.getLogger("django_sql_sessions")

# What send() returns.
ROWCOUNT, ONE, ALL = 0, 1, 2

# How often an operation the database aborted to resolve a conflict is tried
# again. Under contention Galera rejects a few in ten writes to one row, so
# five retries leave about one in ten thousand to the caller.
CONFLICT_RETRIES = 5
# Operations tried again, by alias, since the process started: a rising count
# means writers keep colliding (on Galera, writes to one session through
# several nodes).
conflict_retries: Counter[str] = Counter()
_retries_lock = threading.Lock()


def send(
    connection: BaseDatabaseWrapper,
    statement: Statement,
    values: Mapping[str, Any],
    result: int = ROWCOUNT,
) -> Any:
    """
    Send one statement with its values (every name given, none extra);
    return its rowcount (ROWCOUNT), its first row or None (ONE), or all its
    rows (ALL). A write refused by a read-only server raises
    SessionDatabaseReadOnly; an operation the database aborted to resolve a
    conflict is tried again (retry_after()).
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
    while True:
        try:
            return _send_once(connection, statement, params, result)
        except DatabaseError as exc:
            chosen = dialect(connection)
            # A write refused by a standby or read-only server becomes one
            # error that says so and names the alias, instead of the
            # driver's, which names neither; never tried again.
            if chosen.refused_as_read_only(exc):
                # Closed when the request ends (CONN_MAX_AGE ran out), not
                # kept: it still passes Django's usability check, and behind
                # a proxy that sent it to an old primary back as a replica
                # (a failover) every write on it would fail until then.
                connection.close_at = time.monotonic()
                raise SessionDatabaseReadOnly.refused(connection.alias, exc) from exc
            # A table the alias does not have (migrate not run there) becomes
            # one error naming the alias and the command that creates it.
            if (table := chosen.missing_table(exc)) is not None:
                raise SessionTableMissing.on(connection.alias, table) from exc
            if not retry_after(connection, exc, attempt):
                raise
        attempt += 1


def execute(connection: BaseDatabaseWrapper, statement: Statement, **values: Any) -> int:
    """Send one statement; return its rowcount."""
    return int(send(connection, statement, values, ROWCOUNT))


def fetch_one(
    connection: BaseDatabaseWrapper, statement: Statement, **values: Any
) -> tuple[Any, ...] | None:
    """Send one statement; return its first row, or None."""
    found: tuple[Any, ...] | None = send(connection, statement, values, ONE)
    return found


def retry_after(connection: BaseDatabaseWrapper, error: DatabaseError, attempt: int) -> bool:
    """
    Whether to try an operation again after the attempt-th try failed with
    error: the database rolled it back whole to resolve a conflict (a
    deadlock, a lost Galera certification, a serialization failure), it ran
    outside any transaction of the caller's, and the retries are not used
    up. If so, count it and pause briefly (random, so that the colliding
    writers do not collide again in step).
    """
    if attempt > CONFLICT_RETRIES or not dialect(connection).aborted_by_conflict(error):
        return False
    # Inside a transaction the database rolled back everything before this
    # statement too; only the transaction's owner can start it again.
    if connection.in_atomic_block or not connection.autocommit:
        return False
    with _retries_lock:
        conflict_retries[connection.alias] += 1
    logger.debug("Conflict on %r, try %d: %s", connection.alias, attempt, error)
    time.sleep(random.random() * attempt / 1000)
    return True


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
    Send a statement through the driver's own cursor, or Django's.

    The driver cursor keeps what Django's cursor wrapper guarantees, each
    check skipped only where Django's own call would do nothing: the
    connection is opened (and health-checked) the same way, another thread
    is refused unless it may share the connection, a broken transaction is
    refused, and errors come out as django.db exceptions. Django's cursor is
    used instead whenever something observes queries through Django
    (DEBUG's query log, execute_wrapper() hooks), inside a running event
    loop (where it raises SynchronousOnlyOperation unless
    DJANGO_ALLOW_ASYNC_UNSAFE is set), and on SQL Server, whose driver
    adapter Django's cursor provides.
    """
    # Looked up without a call: see dialects.KEPT.
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
    # Only the thread that made the connection owns it; any other needs
    # allow_thread_sharing (LiveServerTestCase's server threads).
    owner = connection._thread_ident == get_ident()  # type: ignore[attr-defined]
    if not owner:
        connection.validate_thread_sharing()
    connection.validate_no_broken_transaction()
    try:
        # psycopg: the thread's kept cursor (see _KEPT_CURSOR); else one per
        # statement, closed at once: an open sqlite3 statement would hold its
        # read snapshot until the next one.
        kept_cursor = chosen.keeps_cursor and owner
        if kept_cursor:
            found = connection.__dict__.get(_KEPT_CURSOR)
            raw = connection.connection
            cursor = found[1] if found and found[0] is raw else _keep_cursor(connection)
        else:
            cursor = connection.connection.cursor()
        try:
            cursor.execute(statement.qmark if chosen.qmark else statement.format, params)
            # A load's row and a write's rowcount with no further call.
            if result == ONE:
                row = cursor.fetchone()
                return None if row is None else tuple(row)
            return cursor.rowcount if result == ROWCOUNT else _read(cursor, result)
        finally:
            if not kept_cursor:
                cursor.close()
    except Exception:
        # As Django's cursor would raise it: a django.db exception, and the
        # connection marked for a health check (errors_occurred). Entering
        # the wrapper only on failure costs the successful statement nothing.
        with connection.wrap_database_errors:
            raise


# One cursor per psycopg connection, used for every statement by the thread
# that owns the connection: psycopg builds a cursor's adapters and
# transformer anew each time, which costs more than the rest of a session
# load. Results are read at once and hold no server state. A thread that
# shares the connection (allow_thread_sharing) gets a cursor per statement,
# so two threads never read from one cursor. Kept on Django's connection
# object, with the driver connection it belongs to: a reconnect replaces both.
_KEPT_CURSOR = "_django_sql_sessions_cursor"


def _keep_cursor(connection: BaseDatabaseWrapper) -> Any:
    return kept(connection, _KEPT_CURSOR, _new_postgresql_cursor)


def _new_postgresql_cursor(connection: BaseDatabaseWrapper) -> Any:
    raw = connection.connection
    if raw.prepare_threshold is not None:
        # The project enabled prepared statements (OPTIONS "prepare_threshold"),
        # which only server-side binding uses: psycopg then prepares each of
        # these few statements once per connection.
        import psycopg

        return psycopg.Cursor(raw)
    return raw.cursor()
