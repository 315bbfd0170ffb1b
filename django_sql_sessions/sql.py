"""
The SQL the session store sends, written once per database vendor.

Every statement is complete on its own: in autocommit it is its own
transaction, so no operation needs BEGIN/COMMIT round trips. Inside a caller's
atomic() block none of them can leave the transaction aborted for an expected
outcome: a key collision is either reported without an error (PostgreSQL,
SQLite) or raised as a statement-level error that the database rolls back on
its own (MySQL/MariaDB, SQL Server).

Parameters are written as %s, the placeholder of Django's cursors. Column
names are fixed; the table name is validated (conf.table_name()) and then
quoted by the backend before it is put in any statement. Statements
are compiled once per vendor and table name and kept for the process.

run() sends them. It skips Django's cursor wrapper, which costs more than
SQLite's whole query, but keeps what that wrapper guarantees: the connection
is opened (and health-checked) the same way, errors come out as
django.db exceptions, and a broken transaction is refused. When anything
observes queries through Django (DEBUG query logging, execute_wrapper()
hooks) or the vendor is SQL Server, it uses Django's cursor instead. On
PostgreSQL with OPTIONS "prepare_threshold" set, statements are bound on the
server, so psycopg prepares them once per connection.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
from collections.abc import Sequence
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db.backends.base.base import BaseDatabaseWrapper

from .conf import conf, table_name

SUPPORTED_VENDORS = ("postgresql", "sqlite", "mysql", "microsoft")

COLUMNS = "key_hash, data, expire_date, created_at, updated_at, user_id, ip, user_agent, version"


@dataclasses.dataclass(frozen=True)
class Statements:
    # (key_hash, now) -> rows of (data, expire_date, version, updated_at) for a
    # live session
    load: str
    # (key_hash) -> rows of (data, version), live or expired
    reload: str
    # As reload, locking the row until the transaction ends; "" on SQLite,
    # which has no row locks.
    reload_locked: str
    # (key_hash) -> a row if the key is taken, live or not
    exists: str
    # (key_hash, data, expire_date, now, now, user_id, ip, user_agent) ->
    # rowcount 0 or an IntegrityError when the key is taken; version 1
    insert: str
    # (data, expire_date, expire_date, user_id, ip, user_agent, now, key_hash,
    # version) -> rowcount 0 when the row is gone or has another version;
    # keeps a later stored expiry, and the stored ip and user_agent where
    # these are NULL (not recorded by this request)
    update: str
    # (data, expire_date, user_id, ip, user_agent, now, key_hash, version) ->
    # as update, but sets the expiry as given
    update_exact: str
    # (ip, user_agent, now, key_hash, before) -> sets updated_at (and the
    # device details, as update does) if it is at or before `before`
    touch_activity: str
    # (key_hash)
    delete: str
    # (new_key_hash, now, old_key_hash[, new_key_hash]) -> rowcount 0 when the
    # old row is gone (or, on PostgreSQL, when the new key is taken), an
    # IntegrityError elsewhere when the new key is taken; bumps the version
    rekey: str
    # (now) -> one row: how many sessions are expired
    count_expired: str
    # (now, n) -> the expire_date of the n+1th oldest expired row, if any
    batch_end: str
    # (after, now, n) -> as batch_end, among rows expiring after `after`
    batch_end_after: str
    # (until) -> deletes rows expiring at or before `until`
    delete_until: str
    # (after, until) -> deletes rows expiring after `after`, at or before `until`
    delete_between: str
    # Whether rekey takes its last parameter (the NOT EXISTS guard).
    rekey_guarded: bool


_compiled: dict[tuple[str, object], Statements] = {}


def statements(connection: BaseDatabaseWrapper) -> Statements:
    """Return the statements for this connection's vendor and the session table."""
    try:
        return _compiled[connection.vendor, conf.TABLE]
    except (KeyError, TypeError):  # TypeError: an unhashable (so invalid) name
        name = table_name()
        from .models import Session  # the model imports this module's settings

        if name != Session._meta.db_table:
            # The model's table was fixed when it was imported; an engine that
            # followed the setting would write one table while the model's
            # queries (user_sessions, the admin) read another.
            raise ImproperlyConfigured(
                f"SQL_SESSIONS_TABLE is {name!r}, but the session model was loaded with "
                f"{Session._meta.db_table!r}: the table cannot change while the process "
                "runs (override_settings included). Set it before Django starts."
            ) from None
        compiled = _compile(connection.vendor, connection.ops.quote_name(name))
        _compiled[connection.vendor, name] = compiled
        return compiled


def run(
    connection: BaseDatabaseWrapper, sql: str, params: Sequence[Any], *, fetch: bool = False
) -> tuple[int, Any]:
    """Execute one statement; return its rowcount and, with fetch, its first row."""
    if (
        connection.vendor == "microsoft"
        or connection.queries_logged
        or connection.execute_wrappers
    ):
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.rowcount, cursor.fetchone() if fetch else None
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    connection.validate_thread_sharing()
    connection.validate_no_broken_transaction()
    if connection.vendor == "sqlite":
        sql = _qmark(sql)
    with connection.wrap_database_errors:
        cursor = _raw_cursor(connection)
        try:
            cursor.execute(sql, params)
            return cursor.rowcount, cursor.fetchone() if fetch else None
        finally:
            cursor.close()


def _raw_cursor(connection: BaseDatabaseWrapper) -> Any:
    raw = connection.connection
    if connection.vendor == "postgresql" and raw.prepare_threshold is not None:
        # The project enabled prepared statements (OPTIONS "prepare_threshold"),
        # which only server-side binding uses: psycopg then prepares each of
        # these few statements once per connection.
        import psycopg

        return psycopg.Cursor(raw)
    return raw.cursor()


@functools.lru_cache(maxsize=64)
def _qmark(sql: str) -> str:
    """The sqlite3 module's placeholder; Django's SQLite cursor rewrites %s itself."""
    return sql.replace("%s", "?")


def _compile(vendor: str, table: str) -> Statements:
    if vendor not in SUPPORTED_VENDORS:
        raise NotImplementedError(
            f"django_sql_sessions supports {', '.join(SUPPORTED_VENDORS)}, not {vendor!r}."
        )
    p = "%s"
    insert = f"INSERT INTO {table} ({COLUMNS}) VALUES ({', '.join([p] * 8)}, 1)"
    rekey = (
        f"UPDATE {table} SET key_hash = {p}, updated_at = {p}, version = version + 1 "
        f"WHERE key_hash = {p}"
    )
    cas = f"updated_at = {p}, version = version + 1 WHERE key_hash = {p} AND version = {p}"
    # Which user a save records follows the session data; device details
    # come from the request, and a save outside one (a shell, a task) keeps
    # what the last request recorded.
    device = f"ip = COALESCE({p}, ip), user_agent = COALESCE({p}, user_agent)"
    owner = f"user_id = {p}, {device}"
    rekey_guarded = False
    if vendor in ("postgresql", "sqlite"):
        # A failed INSERT would abort a caller's PostgreSQL transaction;
        # ON CONFLICT turns the collision into "0 rows" instead.
        insert += " ON CONFLICT (key_hash) DO NOTHING"
    if vendor == "postgresql":
        # UPDATE has no ON CONFLICT clause, so the guard keeps a collision on the
        # new key from raising (and aborting a caller's transaction).
        rekey += f" AND NOT EXISTS (SELECT 1 FROM {table} WHERE key_hash = {p})"
        rekey_guarded = True

    # Cleanup walks the expire_date index in ranges: find where the next
    # batch of expired rows ends, then delete that range. Each range starts
    # after the last one, so a batch never rescans the index entries that
    # earlier batches deleted (InnoDB keeps them, delete-marked, until its
    # purge runs; a DELETE ... ORDER BY ... LIMIT from the start of the index
    # slows down batch after batch). A range lock on an expiry range does
    # not touch live sessions, whose expiries lie in the future.
    if vendor == "microsoft":
        nth = f"ORDER BY expire_date OFFSET {p} ROWS FETCH NEXT 1 ROWS ONLY"
    else:
        nth = f"ORDER BY expire_date LIMIT 1 OFFSET {p}"
    expired = f"SELECT expire_date FROM {table} WHERE"
    return Statements(
        load=(
            f"SELECT data, expire_date, version, updated_at FROM {table} "
            f"WHERE key_hash = {p} AND expire_date > {p}"
        ),
        reload=f"SELECT data, version FROM {table} WHERE key_hash = {p}",
        reload_locked={
            "postgresql": f"SELECT data, version FROM {table} WHERE key_hash = {p} FOR UPDATE",
            "mysql": f"SELECT data, version FROM {table} WHERE key_hash = {p} FOR UPDATE",
            "microsoft": (
                f"SELECT data, version FROM {table} WITH (UPDLOCK, ROWLOCK) WHERE key_hash = {p}"
            ),
            "sqlite": "",
        }[vendor],
        exists=f"SELECT 1 FROM {table} WHERE key_hash = {p}",
        insert=insert,
        update=(
            f"UPDATE {table} SET data = {p}, expire_date = CASE WHEN expire_date > {p} "
            f"THEN expire_date ELSE {p} END, {owner}, {cas}"
        ),
        update_exact=f"UPDATE {table} SET data = {p}, expire_date = {p}, {owner}, {cas}",
        touch_activity=(
            f"UPDATE {table} SET {device}, updated_at = {p} "
            f"WHERE key_hash = {p} AND updated_at <= {p}"
        ),
        delete=f"DELETE FROM {table} WHERE key_hash = {p}",
        rekey=rekey,
        count_expired=f"SELECT COUNT(*) FROM {table} WHERE expire_date <= {p}",
        batch_end=f"{expired} expire_date <= {p} {nth}",
        batch_end_after=f"{expired} expire_date > {p} AND expire_date <= {p} {nth}",
        delete_until=f"DELETE FROM {table} WHERE expire_date <= {p}",
        delete_between=f"DELETE FROM {table} WHERE expire_date > {p} AND expire_date <= {p}",
        rekey_guarded=rekey_guarded,
    )


def to_db_datetime(connection: BaseDatabaseWrapper, value: datetime.datetime) -> Any:
    """Adapt an aware datetime as a parameter, as the ORM would."""
    return connection.ops.adapt_datetimefield_value(value)


def from_db_datetime(connection: BaseDatabaseWrapper, value: Any) -> datetime.datetime:
    """Convert a datetime column read with raw SQL as the ORM would (time zone included)."""
    from .models import Session  # the model imports this module's settings

    column = Session._meta.get_field("expire_date").get_col(Session._meta.db_table)
    for converter in connection.ops.get_db_converters(column) + column.get_db_converters(
        connection
    ):
        value = converter(value, column, connection)
    assert isinstance(value, datetime.datetime)
    return value
