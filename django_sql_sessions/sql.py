"""
The SQL the session store sends, written once per database vendor, and the
two functions that send it.

Each statement names its parameters (%(key_hash)s) and is bound by name, so
no caller can pass them in the wrong order. None needs BEGIN/COMMIT around
it, and none leaves a caller's transaction aborted for an expected outcome
(a key collision is 0 rows or a statement-level error).
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import logging
import random
import re
import threading
import time
from _thread import get_ident
from asyncio import _get_running_loop
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from django.db import DatabaseError
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import DateTimeField, Value

from django_sql_sessions.missing_table import missing, missing_table
from django_sql_sessions.read_only import refusal, refused_as_read_only

SUPPORTED_VENDORS = ("postgresql", "sqlite", "mysql", "microsoft", "cockroachdb")

logger = logging.getLogger("django_sql_sessions")

_PARAMETER = re.compile(r"%\((\w+)\)s")
_T = TypeVar("_T")


@dataclasses.dataclass(frozen=True)
class Statement:
    """A statement with named parameters, and what the drivers are sent."""

    sql: str  # with %(name)s parameters
    names: tuple[str, ...]  # in the order they occur, repeats included
    format: str  # %s placeholders: Django's cursors, psycopg, MySQLdb, pyodbc
    qmark: str  # ? placeholders: the sqlite3 module

    @classmethod
    def of(cls, sql: str) -> Statement:
        names = tuple(_PARAMETER.findall(sql))
        return cls(sql, names, _PARAMETER.sub("%s", sql), _PARAMETER.sub("?", sql))

    def params(self, values: Mapping[str, Any]) -> list[Any]:
        """The values in placeholder order; every name given, none extra."""
        if values.keys() != self._expected:
            raise TypeError(
                f"Statement takes {sorted(self._expected)}, was given {sorted(values)}: {self.sql}"
            )
        return [values[name] for name in self.names]

    @functools.cached_property
    def _expected(self) -> frozenset[str]:
        return frozenset(self.names)


@dataclasses.dataclass(frozen=True)
class Statements:
    # -> (data, expire_date, version, updated_at) of a live session: not
    # expired, and created (or moved to its key) after born_after
    load: Statement
    # As load, and created_at: the cached engine's entries carry it, so that
    # a hit can apply SQL_SESSIONS_ABSOLUTE_LIFETIME as the load does.
    load_created: Statement
    # -> (data, version), live or expired
    reload: Statement
    # As reload, locking the row until the transaction ends; None where the
    # database has no row locks (SQLite, which serializes writers instead).
    reload_locked: Statement | None
    # -> a row if the key is taken, live or not
    exists: Statement
    # 0 rows or an IntegrityError when the key is taken; version 1
    insert: Statement
    # 0 rows when the row is gone or has another version. Keeps a later
    # stored expiry, and the stored ip and user_agent where these are NULL
    # (not recorded by this request).
    update: Statement
    # As update, but sets the expiry as given.
    update_exact: Statement
    # Sets updated_at (and the device details, as update does) if it is at
    # or before `due`.
    touch_activity: Statement
    delete: Statement
    # Moves the row to new_key_hash: 0 rows when the old row is gone (or, on
    # PostgreSQL, when the new key is taken), an IntegrityError elsewhere
    # when the new key is taken; bumps the version.
    rekey: Statement
    # -> (how many sessions are expired,)
    count_expired: Statement
    # -> (the expire_date of the offset+1th oldest expired row,), if any
    batch_end: Statement
    # As batch_end, among rows expiring after `after`.
    batch_end_after: Statement
    delete_until: Statement
    delete_between: Statement


_compiled: dict[tuple[str, bool, str], Statements] = {}


# Whether a MySQL alias's server is MariaDB, by alias and server, per
# process. Django keeps the answer on the connection object, and asks the
# server (on a connection of its own, if none is open) once per object; under
# ASGI every request's thread has new objects, so asking Django on each
# request would open a connection per request, a cache hit's included.
# OPTIONS is part of the server: with HOST empty, unix_socket or
# read_default_file there says which server it is.
_mariadb: dict[tuple[str, object, object, str], bool] = {}


def _is_mariadb(connection: BaseDatabaseWrapper) -> bool:
    settings_dict = connection.settings_dict
    server = (
        connection.alias,
        settings_dict["HOST"],
        settings_dict["PORT"],
        repr(settings_dict.get("OPTIONS")),
    )
    try:
        return _mariadb[server]
    except KeyError:
        mariadb = _mariadb[server] = bool(connection.mysql_is_mariadb)  # type: ignore[attr-defined]
        return mariadb


def statements(connection: BaseDatabaseWrapper, table: str) -> Statements:
    """The statements for this connection's vendor and a (validated) table name."""
    vendor = connection.vendor
    mariadb = vendor == "mysql" and _is_mariadb(connection)
    try:
        return _compiled[vendor, mariadb, table]
    except KeyError:
        compiled = _compile(vendor, connection.ops.quote_name(table), mariadb=mariadb)
        _compiled[vendor, mariadb, table] = compiled
        return compiled


def execute(connection: BaseDatabaseWrapper, statement: Statement, **values: Any) -> int:
    """Send one statement; return its rowcount."""
    return _send(connection, statement, values, _rowcount)


def fetch_one(
    connection: BaseDatabaseWrapper, statement: Statement, **values: Any
) -> tuple[Any, ...] | None:
    """Send one statement; return its first row, or None."""
    return _send(connection, statement, values, _first_row)


def fetch_all(
    connection: BaseDatabaseWrapper, statement: Statement, **values: Any
) -> list[tuple[Any, ...]]:
    """Send one statement; return all its rows."""
    return _send(connection, statement, values, _all_rows)


def _rowcount(cursor: Any) -> int:
    return int(cursor.rowcount)


def _first_row(cursor: Any) -> tuple[Any, ...] | None:
    row = cursor.fetchone()
    return None if row is None else tuple(row)


def _all_rows(cursor: Any) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in cursor.fetchall()]


def _send(
    connection: BaseDatabaseWrapper,
    statement: Statement,
    values: Mapping[str, Any],
    read: Callable[[Any], _T],
) -> _T:
    params = statement.params(values)
    attempt = 1
    while True:
        try:
            return _send_once(connection, statement, params, read)
        except DatabaseError as exc:
            _raise_if_read_only(connection, exc)
            _raise_if_table_missing(connection, exc)
            if not retry_after(connection, exc, attempt):
                raise
        attempt += 1


def _raise_if_read_only(connection: BaseDatabaseWrapper, error: DatabaseError) -> None:
    """
    A write refused by a standby or read-only server becomes one error that
    says so and names SQL_SESSIONS_DB_ALIAS (see read_only.py), instead of
    the driver's, which names neither. Never tried again: it stays refused.
    """
    if refused_as_read_only(connection.vendor, error):
        raise refusal(connection.alias, error) from error


def _raise_if_table_missing(connection: BaseDatabaseWrapper, error: DatabaseError) -> None:
    """
    A table the alias does not have (migrate not run there) becomes one error
    that names the alias and the command that creates it (see
    missing_table.py), instead of the driver's "no such table".
    """
    table = missing_table(connection.vendor, error)
    if table is not None:
        raise missing(connection.alias, table) from error


# How often an operation the database aborted to resolve a conflict is tried
# again. Under contention Galera rejects a few in ten writes to one row, so
# five retries leave about one in ten thousand to the caller.
CONFLICT_RETRIES = 5
# Operations tried again, by alias, since the process started: a rising count
# means writers keep colliding (on Galera, writes to one session through
# several nodes).
conflict_retries: Counter[str] = Counter()
_retries_lock = threading.Lock()


def retry_after(connection: BaseDatabaseWrapper, error: DatabaseError, attempt: int) -> bool:
    """
    Whether to try an operation again after the attempt-th try failed with
    error: the database rolled it back whole to resolve a conflict (a
    deadlock, a lost Galera certification, a serialization failure), it ran
    outside any transaction of the caller's, and the retries are not used
    up. If so, count it and pause briefly (random, so that the colliding
    writers do not collide again in step).
    """
    if attempt > CONFLICT_RETRIES or not _aborted_by_conflict(connection, error):
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


# ER_LOCK_DEADLOCK: an InnoDB deadlock, or a writeset that lost Galera's
# certification to another node's. TiDB's optimistic autocommit statements:
# write conflict (9007), and 8002, 8022, 8028, which its docs say to retry.
_MYSQL_CONFLICTS = frozenset({1213, 9007, 8002, 8022, 8028})


def _aborted_by_conflict(connection: BaseDatabaseWrapper, error: DatabaseError) -> bool:
    vendor = connection.vendor
    if vendor == "mysql":
        return bool(error.args) and error.args[0] in _MYSQL_CONFLICTS
    if vendor in ("postgresql", "cockroachdb"):
        # deadlock_detected, serialization_failure (CockroachDB's "restart
        # transaction"). Never 40003, "statement completion unknown": the
        # write may have happened.
        return getattr(error.__cause__, "sqlstate", None) in ("40P01", "40001")
    if vendor == "microsoft":
        # pyodbc's SQLSTATE for a deadlock victim (error 1205).
        return bool(error.args) and error.args[0] == "40001"
    return False


def _send_once(
    connection: BaseDatabaseWrapper,
    statement: Statement,
    params: list[Any],
    read: Callable[[Any], _T],
) -> _T:
    """
    Send a statement through the driver's own cursor, or Django's.

    Django's cursor wrapper costs more than SQLite's whole query. The driver
    cursor keeps what that wrapper guarantees, each check skipped only where
    Django's own call would do nothing: the connection is opened (and
    health-checked) the same way, another thread is refused unless it may
    share the connection, a broken transaction is refused, and errors come
    out as django.db exceptions. Django's cursor is used instead whenever
    something observes queries through Django (DEBUG's query log,
    execute_wrapper() hooks), inside a running event loop (where it raises
    SynchronousOnlyOperation unless DJANGO_ALLOW_ASYNC_UNSAFE is set), and
    on SQL Server, whose driver adapter Django's cursor provides.
    """
    vendor = connection.vendor
    if (
        vendor == "microsoft"
        or connection.queries_logged
        or connection.execute_wrappers
        or _get_running_loop() is not None
    ):
        with connection.cursor() as cursor:
            cursor.execute(statement.format, params)
            return read(cursor)
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
        if vendor == "postgresql" and owner:
            cursor = _postgresql_cursor(connection)
            cursor.execute(statement.format, params)
            return read(cursor)
        cursor = connection.connection.cursor()
        try:
            cursor.execute(statement.qmark if vendor == "sqlite" else statement.format, params)
            return read(cursor)
        finally:
            # Closed at once: an open sqlite3 statement would hold its read
            # snapshot until the next one.
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


def kept(
    connection: BaseDatabaseWrapper,
    attribute: str,
    make: Callable[[BaseDatabaseWrapper], _T],
) -> _T:
    """
    make(connection), made once per driver connection: kept on Django's
    connection object under `attribute` together with the driver connection
    it belongs to, so a reconnect makes it anew and frees the old one.
    """
    raw = connection.connection
    found = getattr(connection, attribute, None)
    if found is not None and found[0] is raw:
        return found[1]  # type: ignore[no-any-return]
    value = make(connection)
    setattr(connection, attribute, (raw, value))
    return value


def _postgresql_cursor(connection: BaseDatabaseWrapper) -> Any:
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


def _compile(vendor: str, table: str, *, mariadb: bool = False) -> Statements:
    if vendor not in SUPPORTED_VENDORS:
        raise NotImplementedError(
            f"django_sql_sessions supports {', '.join(SUPPORTED_VENDORS)}, not {vendor!r}."
        )
    if vendor == "cockroachdb":
        # PostgreSQL's dialect, and each of these statements is the same
        # there: ON CONFLICT, FOR UPDATE, and the rekey guard (an error
        # aborts a transaction there too). What differs is the cleanup lock
        # (locks.py) and the retries (docs/scaling.rst).
        vendor = "postgresql"
    columns = (
        "key_hash, data, expire_date, created_at, updated_at, user_id, ip, user_agent, version"
    )
    insert = (
        f"INSERT INTO {table} ({columns}) VALUES (%(key_hash)s, %(data)s, %(expire_date)s, "
        "%(now)s, %(now)s, %(user_id)s, %(ip)s, %(user_agent)s, 1)"
    )
    # A new key is a new session for the absolute lifetime: login() moves the
    # session to a new key, so the clock starts at login.
    rekey = (
        f"UPDATE {table} SET key_hash = %(new_key_hash)s, created_at = %(now)s, "
        "updated_at = %(now)s, version = version + 1 WHERE key_hash = %(key_hash)s"
    )
    cas = (
        "updated_at = %(now)s, version = version + 1 "
        "WHERE key_hash = %(key_hash)s AND version = %(version)s"
    )
    # Which user a save records follows the session data; device details
    # come from the request, and a save outside one (a shell, a task) keeps
    # what the last request recorded.
    device = "ip = COALESCE(%(ip)s, ip), user_agent = COALESCE(%(user_agent)s, user_agent)"
    owner = f"user_id = %(user_id)s, {device}"
    if vendor in ("postgresql", "sqlite"):
        # A failed INSERT would abort a caller's PostgreSQL transaction;
        # ON CONFLICT turns the collision into "0 rows" instead.
        insert += " ON CONFLICT (key_hash) DO NOTHING"
    if vendor == "postgresql":
        # UPDATE has no ON CONFLICT clause, so the guard keeps a collision on the
        # new key from raising (and aborting a caller's transaction).
        rekey += f" AND NOT EXISTS (SELECT 1 FROM {table} WHERE key_hash = %(new_key_hash)s)"
    reload = f"SELECT data, version FROM {table} WHERE key_hash = %(key_hash)s"
    reload_locked = {
        "postgresql": f"{reload} FOR UPDATE",
        "mysql": f"{reload} FOR UPDATE",
        "microsoft": (
            f"SELECT data, version FROM {table} WITH (UPDLOCK, ROWLOCK) "
            "WHERE key_hash = %(key_hash)s"
        ),
    }.get(vendor)

    # Cleanup walks the expire_date index in ranges: find where the next
    # batch of expired rows ends, then delete that range. Each range starts
    # after the last one, so a batch never rescans the index entries that
    # earlier batches deleted (InnoDB keeps them, delete-marked, until its
    # purge runs; a DELETE ... ORDER BY ... LIMIT from the start of the index
    # slows down batch after batch). A range lock on an expiry range does
    # not touch live sessions, whose expiries lie in the future.
    if vendor == "microsoft":
        nth = "ORDER BY expire_date OFFSET %(offset)s ROWS FETCH NEXT 1 ROWS ONLY"
    else:
        nth = "ORDER BY expire_date LIMIT 1 OFFSET %(offset)s"
    expired = f"SELECT expire_date FROM {table} WHERE"
    # On a MariaDB Galera cluster a node applies other nodes' writes a moment
    # after they commit, so a session saved through one node could load as
    # missing (logged out) through another. wsrep_sync_wait = 1 makes a read
    # wait until this node has applied every write committed before it, for
    # this statement only; without Galera the setting does nothing.
    causal = "SET STATEMENT wsrep_sync_wait = 1 FOR " if mariadb else ""
    live = (
        f"FROM {table} WHERE key_hash = %(key_hash)s AND expire_date > %(now)s "
        "AND created_at > %(born_after)s"
    )
    s = Statement.of
    return Statements(
        load=s(f"{causal}SELECT data, expire_date, version, updated_at {live}"),
        load_created=s(
            f"{causal}SELECT data, expire_date, version, updated_at, created_at {live}"
        ),
        reload=s(causal + reload),
        reload_locked=s(causal + reload_locked) if reload_locked else None,
        exists=s(f"{causal}SELECT 1 FROM {table} WHERE key_hash = %(key_hash)s"),
        insert=s(insert),
        update=s(
            f"UPDATE {table} SET data = %(data)s, expire_date = CASE WHEN expire_date > "
            f"%(expire_date)s THEN expire_date ELSE %(expire_date)s END, {owner}, {cas}"
        ),
        update_exact=s(
            f"UPDATE {table} SET data = %(data)s, expire_date = %(expire_date)s, {owner}, {cas}"
        ),
        touch_activity=s(
            f"UPDATE {table} SET {device}, updated_at = %(now)s "
            "WHERE key_hash = %(key_hash)s AND updated_at <= %(due)s"
        ),
        delete=s(f"DELETE FROM {table} WHERE key_hash = %(key_hash)s"),
        rekey=s(rekey),
        count_expired=s(f"SELECT COUNT(*) FROM {table} WHERE expire_date <= %(cutoff)s"),
        batch_end=s(f"{expired} expire_date <= %(cutoff)s {nth}"),
        batch_end_after=s(
            f"{expired} expire_date > %(after)s AND expire_date <= %(cutoff)s {nth}"
        ),
        delete_until=s(f"DELETE FROM {table} WHERE expire_date <= %(until)s"),
        delete_between=s(
            f"DELETE FROM {table} WHERE expire_date > %(after)s AND expire_date <= %(until)s"
        ),
    )


def django_session_statements(vendor: str, table: str) -> tuple[Statement, Statement]:
    """
    Reading Django's own session table (importsessions): how many rows are
    expired at `cutoff`, and the next `limit` live rows after `after` in key
    order, as (session_key, session_data, expire_date).
    """
    if vendor == "microsoft":
        limit = "OFFSET 0 ROWS FETCH NEXT %(limit)s ROWS ONLY"
    else:
        limit = "LIMIT %(limit)s"
    return (
        Statement.of(f"SELECT COUNT(*) FROM {table} WHERE expire_date <= %(cutoff)s"),
        Statement.of(
            f"SELECT session_key, session_data, expire_date FROM {table} WHERE session_key > "
            f"%(after)s AND expire_date > %(cutoff)s ORDER BY session_key {limit}"
        ),
    )


def to_db_datetime(connection: BaseDatabaseWrapper, value: datetime.datetime) -> Any:
    """An aware datetime as a statement parameter, adapted as the ORM would."""
    return connection.ops.adapt_datetimefield_value(value)


# What the ORM converts a DateTimeField column's values with; converters only
# look at the expression's output field.
_DATETIME = Value(None, output_field=DateTimeField())


def from_db_datetime(connection: BaseDatabaseWrapper, value: Any) -> datetime.datetime:
    """
    A datetime column read with raw SQL, converted as the ORM would (time
    zone included). A value converted already (an aware datetime; no driver
    returns one that a converter changes) is returned as it is: the cached
    engine's rows hold converted values.
    """
    if isinstance(value, datetime.datetime) and value.tzinfo is not None:
        return value
    for converter in connection.ops.get_db_converters(_DATETIME):
        value = converter(value, _DATETIME, connection)
    assert isinstance(value, datetime.datetime)
    return value
