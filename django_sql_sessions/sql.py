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
import logging
import re
from collections.abc import Mapping
from typing import Any, TypeVar

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import DateTimeField, Value

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
    expected: frozenset[str]  # the names, each once

    @classmethod
    def of(cls, sql: str) -> Statement:
        names = tuple(_PARAMETER.findall(sql))
        return cls(
            sql, names, _PARAMETER.sub("%s", sql), _PARAMETER.sub("?", sql), frozenset(names)
        )

    def params(self, values: Mapping[str, Any]) -> list[Any]:
        """The values in placeholder order; every name given, none extra."""
        if values.keys() != self.expected:
            raise TypeError(
                f"Statement takes {sorted(self.expected)}, was given {sorted(values)}: {self.sql}"
            )
        return [values[name] for name in self.names]


@dataclasses.dataclass(frozen=True)
class Statements:
    # -> (data, expire_date, version, updated_at) of a live session: not
    # expired, and created (or moved to its key) after born_after
    load: Statement
    # As load, and created_at: the cached engine's entries carry it, so that
    # a hit can apply SQL_SESSIONS_ABSOLUTE_LIFETIME as the load does.
    load_created: Statement
    # -> (data, version) of a live row
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
    # or before `due` and the row still has `version`, which it moves on: a
    # write since has recorded the activity itself.
    touch_activity: Statement
    delete: Statement
    # Moves the row to new_key_hash: 0 rows when the old row is gone (or, on
    # PostgreSQL, when the new key is taken), an IntegrityError elsewhere
    # when the new key is taken; bumps the version.
    rekey: Statement
    # -> (how many sessions are expired,)
    count_expired: Statement
    # -> (expire_date, key_hash) of the offset+1th expired row in that
    # order, if any
    batch_end: Statement
    # As batch_end, among rows after (after, after_key) in that order.
    batch_end_after: Statement
    # Rows up to (until, until_key) in (expire_date, key_hash) order; and
    # those after (after, after_key) as well.
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
    # The absolute lifetime goes on across a move to a new key (rotating the
    # id, as OWASP advises, must not extend it); a login restarts it through
    # the save's `born` (storage.SessionTable.update()).
    rekey = (
        f"UPDATE {table} SET key_hash = %(new_key_hash)s, "
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
    owner = f"user_id = %(user_id)s, {device}, created_at = COALESCE(%(born)s, created_at)"
    if vendor in ("postgresql", "sqlite"):
        # A failed INSERT would abort a caller's PostgreSQL transaction;
        # ON CONFLICT turns the collision into "0 rows" instead.
        insert += " ON CONFLICT (key_hash) DO NOTHING"
    if vendor == "postgresql":
        # UPDATE has no ON CONFLICT clause, so the guard keeps a collision on the
        # new key from raising (and aborting a caller's transaction).
        rekey += f" AND NOT EXISTS (SELECT 1 FROM {table} WHERE key_hash = %(new_key_hash)s)"
    # Live rows only: a row that expired, or was expired (a forced expiry
    # moves the version on), has ended, and a merged save must not bring it
    # back, as it must not re-insert a deleted one.
    reload = (
        f"SELECT data, version FROM {table} WHERE key_hash = %(key_hash)s "
        "AND expire_date > %(now)s"
    )
    reload_locked = {
        "postgresql": f"{reload} FOR UPDATE",
        "mysql": f"{reload} FOR UPDATE",
        "microsoft": (
            f"SELECT data, version FROM {table} WITH (UPDLOCK, ROWLOCK) "
            "WHERE key_hash = %(key_hash)s AND expire_date > %(now)s"
        ),
    }.get(vendor)

    # Cleanup walks the expire_date index in ranges: find where the next
    # batch of expired rows ends, then delete that range. Each range starts
    # after the last one, so a batch never rescans the index entries that
    # earlier batches deleted (InnoDB keeps them, delete-marked, until its
    # purge runs; a DELETE ... ORDER BY ... LIMIT from the start of the index
    # slows down batch after batch). A range lock on an expiry range does
    # not touch live sessions, whose expiries lie in the future.
    #
    # Ranges are of (expire_date, key_hash), so that rows sharing an expiry
    # (an import, a deploy that set one date) can end up in different
    # batches and no batch is larger than its size. The expire_date index
    # keeps ties in key order on InnoDB, SQL Server and CockroachDB (a
    # secondary index carries the primary key); PostgreSQL and SQLite sort
    # each expiry's ties alone (an incremental sort, a temporary b-tree for
    # the right part of the ORDER BY), so no (expire_date, key_hash) index
    # is needed: it would add a 64-character key to each entry of an index
    # that every save rewrites. No row-value comparison, which SQL Server
    # lacks: "expire_date >= X AND (expire_date > X OR key_hash > Y)", whose
    # first condition every planner reads as the start of an index range.
    if vendor == "microsoft":
        nth = "ORDER BY expire_date, key_hash OFFSET %(offset)s ROWS FETCH NEXT 1 ROWS ONLY"
    else:
        nth = "ORDER BY expire_date, key_hash LIMIT 1 OFFSET %(offset)s"
    expired = f"SELECT expire_date, key_hash FROM {table} WHERE"
    after = "expire_date >= %(after)s AND (expire_date > %(after)s OR key_hash > %(after_key)s)"
    until = "expire_date <= %(until)s AND (expire_date < %(until)s OR key_hash <= %(until_key)s)"
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
            f"UPDATE {table} SET {device}, updated_at = %(now)s, version = version + 1 "
            "WHERE key_hash = %(key_hash)s AND version = %(version)s AND updated_at <= %(due)s"
        ),
        delete=s(f"DELETE FROM {table} WHERE key_hash = %(key_hash)s"),
        rekey=s(rekey),
        count_expired=s(f"SELECT COUNT(*) FROM {table} WHERE expire_date <= %(cutoff)s"),
        batch_end=s(f"{expired} expire_date <= %(cutoff)s {nth}"),
        batch_end_after=s(f"{expired} {after} AND expire_date <= %(cutoff)s {nth}"),
        delete_until=s(f"DELETE FROM {table} WHERE {until}"),
        delete_between=s(f"DELETE FROM {table} WHERE {after} AND {until}"),
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
