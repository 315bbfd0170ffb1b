"""
Everything the package does differently per database vendor, in one object
per vendor, as Django's ``connection.ops`` is: its SQL, what its errors mean
and what the server can do. No other module asks which vendor a connection
is (tests/test_layers.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Callable, Collection, Iterator
from typing import Any, TypeVar

from django.db import DatabaseError
from django.db.backends.base.base import BaseDatabaseWrapper

from django_sql_sessions.keys import HASH_LENGTH
from django_sql_sessions.sql import Statement, Statements

_T = TypeVar("_T")


@dataclasses.dataclass(frozen=True)
class Size:
    """A table's size on disk, from the database's catalog (sessionstats)."""

    total_bytes: int | None
    table_bytes: int | None  # rows, with PostgreSQL's TOAST and SQL Server's LOB pages
    index_bytes: int | None
    source: str  # where the numbers come from
    note: str | None = None


class Dialect:
    """What the vendors share; an instance of it is an unsupported vendor's (no statements())."""

    vendor = ""  # Django's connection.vendor

    # A key collision on INSERT: 0 rows where the vendor can say so without an error.
    on_conflict = ""
    rekey_guard = ""  # appended to the key-moving UPDATE
    row_lock: tuple[str, str] | None = ("", " FOR UPDATE")  # (a table hint, a suffix)
    nth = "ORDER BY expire_date, key_hash LIMIT 1 OFFSET %(offset)s"
    first = "LIMIT %(limit)s"
    lease_insert = "INSERT {} ON CONFLICT (name) DO NOTHING"

    # The fast cursor path (cursors.py): ? placeholders; one driver cursor
    # kept per connection (psycopg builds a cursor's adapters anew each
    # time); Django's cursor always.
    qmark = False
    keeps_cursor = False
    django_cursor = False

    key_hash_type = f"char({HASH_LENGTH})"

    # The cleanup lock (cleanup.py): (acquire, release) tied to the
    # connection's session, each answering true when this connection holds
    # the lock %(name)s; None where one writer at a time needs none. And one
    # tied to the transaction, for a run inside a caller's atomic() block.
    session_lock: tuple[Statement, Statement] | None = None
    transaction_lock: Statement | None = None

    # Error codes (error_codes()): an operation rolled back whole to resolve
    # a conflict; a write refused by a read-only server; a missing table.
    conflict_errors: frozenset[object] = frozenset()
    read_only_errors: frozenset[object] = frozenset()
    missing_table_errors: frozenset[object] = frozenset()
    missing_table_name = re.compile(r"(?!)")
    # And of a prepared statement the server session does not have, or has
    # already: a pooler moved the client to another server session.
    lost_prepared_errors: frozenset[object] = frozenset()

    size_source = ""  # where table_size() reads
    size_note: str | None = None

    def compile(self, table: str, extra: tuple[str, ...] = ()) -> Statements:
        """
        The session table's statements, for the table name as the backend
        quotes it; a session model's own columns (quoted) are written by the
        insert and the updates, as parameters x0, x1, ...
        """
        columns = (
            "key_hash, data, expire_date, created_at, updated_at, user_id, ip, user_agent, version"
        ) + "".join(f", {column}" for column in extra)
        params = "".join(f", %(x{i})s" for i in range(len(extra)))
        insert = (
            f"INSERT INTO {table} ({columns}) VALUES (%(key_hash)s, %(data)s, %(expire_date)s, "
            f"%(now)s, %(now)s, %(user_id)s, %(ip)s, %(user_agent)s, 1{params}){self.on_conflict}"
        )
        # created_at stays: rotating the id must not extend the absolute
        # lifetime; a login restarts it through the save's `born`.
        rekey = (
            f"UPDATE {table} SET key_hash = %(new_key_hash)s, updated_at = %(now)s, "
            f"version = version + 1 WHERE key_hash = %(key_hash)s"
        ) + self.rekey_guard.format(table=table)
        cas = (
            "updated_at = %(now)s, version = version + 1 "
            "WHERE key_hash = %(key_hash)s AND version = %(version)s"
        )
        # A save outside a request (a shell, a task) keeps the device details.
        device = "ip = COALESCE(%(ip)s, ip), user_agent = COALESCE(%(user_agent)s, user_agent)"
        owner = f"user_id = %(user_id)s, {device}, created_at = COALESCE(%(born)s, created_at)"
        owner += "".join(f", {column} = %(x{i})s" for i, column in enumerate(extra))
        # Live rows only: a merged save must not bring an expired row back.
        row = "WHERE key_hash = %(key_hash)s AND expire_date > %(now)s"
        reload = f"SELECT data, version FROM {table} {row}"
        hint, suffix = self.row_lock or ("", "")
        locked = f"SELECT data, version FROM {table}{hint} {row}{suffix}"

        # The cleanup deletes (expire_date, key_hash) ranges, each after the
        # last: docs/design.rst, "The cleanup", says why.
        expired = f"SELECT expire_date, key_hash FROM {table} WHERE"
        after = (
            "expire_date >= %(after)s AND (expire_date > %(after)s OR key_hash > %(after_key)s)"
        )
        until = (
            "expire_date <= %(until)s AND (expire_date < %(until)s OR key_hash <= %(until_key)s)"
        )
        scan = f"SELECT key_hash, data, version FROM {table} WHERE key_hash > %(after)s AND data"
        causal = self.causal(1)
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
            reload_locked=s(causal + locked) if self.row_lock else None,
            exists=s(f"{causal}SELECT 1 FROM {table} WHERE key_hash = %(key_hash)s"),
            insert=s(insert),
            update=s(
                f"UPDATE {table} SET data = %(data)s, expire_date = CASE WHEN expire_date > "
                f"%(expire_date)s THEN expire_date ELSE %(expire_date)s END, {owner}, {cas}"
            ),
            update_exact=s(
                f"UPDATE {table} SET data = %(data)s, expire_date = %(expire_date)s, "
                f"{owner}, {cas}"
            ),
            touch_activity=s(
                f"UPDATE {table} SET {device}, updated_at = %(now)s, version = version + 1 "
                "WHERE key_hash = %(key_hash)s AND version = %(version)s AND updated_at <= %(due)s"
            ),
            delete=s(f"DELETE FROM {table} WHERE key_hash = %(key_hash)s"),
            rekey=s(rekey),
            count_expired=s(f"SELECT COUNT(*) FROM {table} WHERE expire_date <= %(cutoff)s"),
            batch_end=s(f"{expired} expire_date <= %(cutoff)s {self.nth}"),
            batch_end_after=s(f"{expired} {after} AND expire_date <= %(cutoff)s {self.nth}"),
            delete_until=s(f"DELETE FROM {table} WHERE {until}"),
            delete_between=s(f"DELETE FROM {table} WHERE {after} AND {until}"),
            scan_unsealed=s(f"{scan} NOT LIKE %(pattern)s ORDER BY key_hash {self.first}"),
            scan_sealed=s(f"{scan} LIKE %(pattern)s ORDER BY key_hash {self.first}"),
            reseal=s(
                f"UPDATE {table} SET data = %(data)s, version = version + 1 "
                "WHERE key_hash = %(key_hash)s AND version = %(version)s"
            ),
        )

    def import_statements(self, table: str) -> tuple[Statement, Statement]:
        """Django's session table: the expired rows' count; the next live rows by key."""
        return (
            Statement.of(f"SELECT COUNT(*) FROM {table} WHERE expire_date <= %(cutoff)s"),
            Statement.of(
                f"SELECT session_key, session_data, expire_date FROM {table} WHERE session_key > "
                f"%(after)s AND expire_date > %(cutoff)s ORDER BY session_key {self.first}"
            ),
        )

    def lease_statements(self, table: str) -> tuple[Statement, Statement, Statement, Statement]:
        """
        The cleanup lease (cleanup.py): take an expired one, insert one where
        there is none, renew ours if unexpired (each 1 row if done), release.
        """
        # On Galera each waits until this node sees a lease another node took.
        causal = self.causal(7)
        insert = (
            f"INTO {table} (name, holder, expires_at) VALUES (%(name)s, %(holder)s, %(until)s)"
        )
        ours = "WHERE name = %(name)s AND holder = %(holder)s"
        unexpired = "expires_at > %(now)s"
        s = Statement.of
        return (
            s(
                f"{causal}UPDATE {table} SET holder = %(holder)s, expires_at = %(until)s "
                "WHERE name = %(name)s AND expires_at <= %(now)s"
            ),
            s(causal + self.lease_insert.format(insert)),
            s(f"{causal}UPDATE {table} SET expires_at = %(until)s {ours} AND {unexpired}"),
            s(f"{causal}DELETE FROM {table} {ours}"),
        )

    def causal(self, wait: int) -> str:
        """A prefix: the statement waits for the cluster's earlier writes."""
        return ""

    def lock_key(self, name: str) -> object:
        return name

    def galera(self, connection: BaseDatabaseWrapper) -> bool:
        return False

    def needs_lease(self, connection: BaseDatabaseWrapper) -> bool:
        """Whether the cleanup takes a lease (cleanup.py) rather than the server's lock."""
        return self.galera(connection)

    def causal_reads(self, connection: BaseDatabaseWrapper) -> bool:
        """Whether a read sees every write a cluster committed before it (check W007)."""
        return True

    def rows_per_transaction(self, connection: BaseDatabaseWrapper, row_bytes: int) -> int | None:
        """How many rows of up to row_bytes bytes of data one transaction may change, if capped."""
        return None

    def why_read_only(self, connection: BaseDatabaseWrapper) -> str | None:
        """Why the connection's server or session refuses writes (check E015), or None."""
        return None

    # Errors as the driver raises them, or as Django does (the driver's as cause).

    def error_codes(self, exc: BaseException) -> Collection[object]:
        return ()

    def _coded(self, error: BaseException, codes: frozenset[object]) -> BaseException | None:
        for exc in (error, error.__cause__):
            if exc is not None and not codes.isdisjoint(self.error_codes(exc)):
                return exc
        return None

    def aborted_by_conflict(self, error: BaseException) -> bool:
        """Whether the database rolled the operation back whole to resolve a conflict."""
        return self._coded(error, self.conflict_errors) is not None

    def refused_as_read_only(self, error: BaseException) -> bool:
        return self._coded(error, self.read_only_errors) is not None

    def lost_prepared_statement(self, error: BaseException) -> bool:
        """Whether a prepared statement was missing (or already there) on the server session."""
        return self._coded(error, self.lost_prepared_errors) is not None

    def missing_table(self, error: BaseException) -> str | None:
        """The missing table a statement failed on ("" if unnamed), or None."""
        exc = self._coded(error, self.missing_table_errors)
        if exc is None:
            return None
        found = self.missing_table_name.search(str(exc))
        return found[1] if found else ""

    def size_query(self, connection: BaseDatabaseWrapper, table: str) -> tuple[str, list[Any]]:
        """The catalog's (bytes in all, bytes of the rows, rows or NULL) of the table."""
        raise NotImplementedError(f"no size query for {connection.vendor}")

    def table_size(self, connection: BaseDatabaseWrapper, table: str) -> tuple[Size, int | None]:
        """The table's size on disk from the catalog, and its row estimate where it gives one."""
        try:
            sql, params = self.size_query(connection, table)
        except NotImplementedError as exc:
            return Size(None, None, None, connection.vendor, str(exc)), None
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                row = cursor.fetchone()
        except DatabaseError as exc:  # e.g. no permission to read the catalog
            return Size(None, None, None, self.size_source, f"not available: {exc}"), None
        if row is None:
            return Size(None, None, None, self.size_source, "the table was not found"), None
        total, data, rows = int(row[0] or 0), int(row[1] or 0), row[2]
        size = Size(total, data, total - data, self.size_source, self.size_note)
        return size, None if rows is None else int(rows)

    def explain_rows(self, queryset: Any) -> int | None:
        """The planner's estimate of the queryset's rows, where EXPLAIN gives one."""
        return None


class SQLite(Dialect):
    vendor = "sqlite"
    on_conflict = " ON CONFLICT (key_hash) DO NOTHING"
    # One writer at a time: no row locks, no cleanup lock.
    row_lock = None
    qmark = True
    size_source = "dbstat"

    def missing_table(self, error: BaseException) -> str | None:
        # Only the message says (SQLITE_ERROR is every SQL error's code).
        found = re.search(r"no such table: (\S+)", str(error))
        return found[1] if found else None

    def table_size(self, connection: BaseDatabaseWrapper, table: str) -> tuple[Size, int | None]:
        with connection.cursor() as cursor:
            try:
                cursor.execute(
                    "SELECT name, SUM(pgsize) FROM dbstat WHERE name = %s OR name IN "
                    "(SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = %s) "
                    "GROUP BY name",
                    [table, table],
                )
            except DatabaseError:  # SQLite built without SQLITE_ENABLE_DBSTAT_VTAB
                cursor.execute(
                    "SELECT page_count * page_size FROM pragma_page_count, pragma_page_size"
                )
                (whole,) = cursor.fetchone()
                note = "the whole database file: this SQLite has no dbstat table"
                return Size(int(whole), None, None, "page_count * page_size", note), None
            sizes = dict(cursor.fetchall())
        data = int(sizes.pop(table, 0))
        index = sum(int(pages) for pages in sizes.values())
        return Size(data + index, data, index, self.size_source), None


class PostgreSQL(Dialect):
    vendor = "postgresql"
    # A failed statement would abort a caller's transaction: a collision is 0 rows.
    on_conflict = " ON CONFLICT (key_hash) DO NOTHING"
    rekey_guard = " AND NOT EXISTS (SELECT 1 FROM {table} WHERE key_hash = %(new_key_hash)s)"
    keeps_cursor = True
    session_lock = (
        Statement.of("SELECT pg_try_advisory_lock(%(name)s)"),
        Statement.of("SELECT pg_advisory_unlock(%(name)s)"),
    )
    transaction_lock = Statement.of("SELECT pg_try_advisory_xact_lock(%(name)s)")
    # Never 40003, "statement completion unknown": the write may have happened.
    conflict_errors = frozenset({"40P01", "40001"})
    read_only_errors = frozenset({"25006"})
    missing_table_errors = frozenset({"42P01"})
    missing_table_name = re.compile(r'relation "([^"]+)" does not exist')
    # invalid_sql_statement_name ("prepared statement ... does not exist"),
    # duplicate_prepared_statement ("... already exists"): PgBouncer in
    # transaction mode before 1.21 sends a client's statements to whichever
    # server connection is free, whose session lacks (or holds) the name.
    lost_prepared_errors = frozenset({"26000", "42P05"})
    size_source = "pg_total_relation_size, pg_table_size"
    READ_ONLY = (
        "a standby: pg_is_in_recovery() is true",
        "default_transaction_read_only is on",
        "transaction_read_only is on",
    )

    def error_codes(self, exc: BaseException) -> Collection[object]:
        return (getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None),)

    def lock_key(self, name: str) -> object:  # advisory locks take a bigint
        return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)

    def why_read_only(self, connection: BaseDatabaseWrapper) -> str | None:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_is_in_recovery(), current_setting('default_transaction_read_only'), "
                "current_setting('transaction_read_only')"
            )
            found = zip(cursor.fetchone(), self.READ_ONLY, strict=True)
        return next((why for value, why in found if value in (True, "on")), None)

    def size_query(self, connection: BaseDatabaseWrapper, table: str) -> tuple[str, list[Any]]:
        return (
            "SELECT pg_total_relation_size(c.oid), pg_table_size(c.oid), NULL "
            "FROM pg_class c WHERE c.oid = to_regclass(%s)",
            [connection.ops.quote_name(table)],
        )

    def explain_rows(self, queryset: Any) -> int | None:
        plan = json.loads(queryset.values_list("pk").explain(format="json"))
        return int(plan[0]["Plan"]["Plan Rows"])


class CockroachDB(PostgreSQL):
    """PostgreSQL's statements; the cleanup lock differs (docs/scaling.rst)."""

    vendor = "cockroachdb"
    keeps_cursor = False
    # No standbys, no PostgreSQL size functions, no PostgreSQL EXPLAIN format.
    why_read_only = Dialect.why_read_only
    size_query = Dialect.size_query
    explain_rows = Dialect.explain_rows

    def needs_lease(self, connection: BaseDatabaseWrapper) -> bool:
        return True  # pg_try_advisory_lock() is a stub: see cleanup.py


class MySQL(Dialect):
    vendor = "mysql"
    # A key collision is an IntegrityError (1062), which rolls back only the statement.
    lease_insert = "INSERT IGNORE {}"
    key_hash_type = f"char({HASH_LENGTH}) CHARACTER SET ascii COLLATE ascii_bin"
    session_lock = (
        Statement.of("SELECT GET_LOCK(%(name)s, 0)"),
        Statement.of("SELECT RELEASE_LOCK(%(name)s)"),
    )
    # 1213: a deadlock, or a writeset that lost Galera's certification; TiDB's
    # write conflict (9007) and the 8002, 8022, 8028 its docs say to retry.
    # 1290 (ER_OPTION_PREVENTS_STATEMENT) can only be --(super-)read-only here.
    conflict_errors = frozenset({1213, 9007, 8002, 8022, 8028})
    read_only_errors = frozenset({1290, 1792})
    missing_table_errors = frozenset({1146})
    missing_table_name = re.compile(r"Table '(?:[^'.]*\.)?([^'.]+)' doesn't exist")
    size_source = "information_schema.TABLES"
    size_note = "InnoDB's figures as of its last statistics update"
    # A row's bytes in a writeset besides its data: other columns, index entries.
    ROW_OVERHEAD = 1024

    def error_codes(self, exc: BaseException) -> Collection[object]:
        return exc.args[:1]

    def galera(self, connection: BaseDatabaseWrapper) -> bool:
        connection.ensure_connection()
        return kept(connection, "_django_sql_sessions_galera", _wsrep_on)

    def causal_reads(self, connection: BaseDatabaseWrapper) -> bool:
        # Without SET STATEMENT (Percona XtraDB Cluster) the connection's
        # own setting must have the read bit.
        if self.causal(1) or not self.galera(connection):
            return True
        with connection.cursor() as cursor:
            cursor.execute("SELECT @@SESSION.wsrep_sync_wait")
            (sync_wait,) = cursor.fetchone()
        return bool(int(sync_wait) & 1)

    def rows_per_transaction(self, connection: BaseDatabaseWrapper, row_bytes: int) -> int | None:
        # A larger Galera writeset fails at commit; 0 rows is no limit.
        if not self.galera(connection):
            return None
        with connection.cursor() as cursor:
            cursor.execute("SELECT @@wsrep_max_ws_rows, @@wsrep_max_ws_size")
            max_rows, max_bytes = (int(value) for value in cursor.fetchone())
        by_size = max(1, max_bytes // (row_bytes + self.ROW_OVERHEAD))
        return min(by_size, max_rows) if max_rows else by_size

    def why_read_only(self, connection: BaseDatabaseWrapper) -> str | None:
        with connection.cursor() as cursor:
            # Not @@name: each server has only some of these, and an
            # unknown @@name is an error.
            cursor.execute(
                "SHOW VARIABLES WHERE Variable_name IN "
                "('read_only', 'super_read_only', 'transaction_read_only', 'tx_read_only')"
            )
            on = sorted(name for name, value in cursor.fetchall() if value not in ("OFF", "0"))
        return f"{' and '.join(on)} {'is' if len(on) == 1 else 'are'} ON" if on else None

    def size_query(self, connection: BaseDatabaseWrapper, table: str) -> tuple[str, list[Any]]:
        return (
            "SELECT DATA_LENGTH + INDEX_LENGTH, DATA_LENGTH, TABLE_ROWS FROM "
            "information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s",
            [table],
        )

    def explain_rows(self, queryset: Any) -> int | None:
        plan = json.loads(queryset.values_list("pk").explain(format="json"))
        if isinstance(plan, str):  # the JSON text, quoted again by Django
            plan = json.loads(plan)
        # MariaDB gives "rows", MySQL "rows_examined_per_scan".
        for node in _nodes(plan):
            if "table_name" in node:
                rows = node.get("rows", node.get("rows_examined_per_scan", 0))
                return round(float(rows) * float(node.get("filtered", 100)) / 100)
        return None


class MariaDB(MySQL):
    def causal(self, wait: int) -> str:
        # A Galera node applies other nodes' writes a moment after they
        # commit: a session saved through one node could load as missing
        # through another. Without Galera it does nothing.
        return f"SET STATEMENT wsrep_sync_wait = {wait} FOR "


class SQLServer(Dialect):
    vendor = "microsoft"
    row_lock = (" WITH (UPDLOCK, ROWLOCK)", "")
    nth = "ORDER BY expire_date, key_hash OFFSET %(offset)s ROWS FETCH NEXT 1 ROWS ONLY"
    first = "OFFSET 0 ROWS FETCH NEXT %(limit)s ROWS ONLY"
    django_cursor = True  # mssql-django's cursor adapts the parameters for pyodbc
    # pyodbc sends str as nvarchar; nchar compares without a conversion that
    # would defeat the primary key index.
    key_hash_type = f"nchar({HASH_LENGTH})"
    session_lock = (
        Statement.of(
            "DECLARE @result int; EXEC @result = sp_getapplock @Resource = %(name)s, "
            "@LockMode = 'Exclusive', @LockOwner = 'Session', @LockTimeout = 0; "
            "SELECT CASE WHEN @result >= 0 THEN 1 ELSE 0 END"
        ),
        Statement.of(
            "EXEC sp_releaseapplock @Resource = %(name)s, @LockOwner = 'Session'; SELECT 1"
        ),
    )
    # A deadlock victim's SQLSTATE; the others pyodbc only carries in the message.
    conflict_errors = frozenset({"40001"})
    read_only_errors = frozenset({"(3906)"})
    missing_table_errors = frozenset({"(208)"})
    missing_table_name = re.compile(r"Invalid object name '([^']+)'")
    size_source = "sys.dm_db_partition_stats"
    PAGE_BYTES = 8192
    UPDATEABILITY = "SELECT CONVERT(nvarchar(128), DATABASEPROPERTYEX(DB_NAME(), 'Updateability'))"

    def error_codes(self, exc: BaseException) -> Collection[object]:
        return {*exc.args[:1], *re.findall(r"\(\d+\)", " ".join(map(str, exc.args)))}

    def why_read_only(self, connection: BaseDatabaseWrapper) -> str | None:
        with connection.cursor() as cursor:
            cursor.execute(self.UPDATEABILITY)
            (updateability,) = cursor.fetchone()
        if updateability == "READ_ONLY":
            return "DATABASEPROPERTYEX(DB_NAME(), 'Updateability') is READ_ONLY"
        return None

    def size_query(self, connection: BaseDatabaseWrapper, table: str) -> tuple[str, list[Any]]:
        # sp_spaceused's arithmetic, without its result sets.
        return (
            f"SELECT SUM(used_page_count) * {self.PAGE_BYTES}, "
            "SUM(CASE WHEN index_id < 2 THEN in_row_data_page_count + lob_used_page_count "
            "+ row_overflow_used_page_count ELSE lob_used_page_count "
            f"+ row_overflow_used_page_count END) * {self.PAGE_BYTES}, "
            "SUM(CASE WHEN index_id < 2 THEN row_count ELSE 0 END) "
            "FROM sys.dm_db_partition_stats WHERE object_id = OBJECT_ID(%s)",
            [connection.ops.quote_name(table)],
        )


# By Django's connection.vendor; MariaDB's is "mysql" too (see dialect()).
DIALECTS: dict[str, Dialect] = {
    d.vendor: d for d in (PostgreSQL(), SQLite(), MySQL(), SQLServer(), CockroachDB())
}
SUPPORTED_VENDORS = tuple(DIALECTS)
MARIADB = MariaDB()
UNSUPPORTED = Dialect()

# Where dialect() keeps its choice on a connection (read by cursors.py without a call).
KEPT = "_django_sql_sessions_dialect"


def dialect(connection: BaseDatabaseWrapper) -> Dialect:
    """The connection's dialect, chosen once per connection object."""
    found: Dialect | None = connection.__dict__.get(KEPT)
    if found is None:
        found = for_vendor(connection.vendor)
        if found is DIALECTS["mysql"] and _is_mariadb(connection):
            found = MARIADB
        connection.__dict__[KEPT] = found
    return found


def for_vendor(vendor: str) -> Dialect:
    """A vendor's dialect, asking no server (MySQL's for MariaDB too)."""
    return DIALECTS.get(vendor, UNSUPPORTED)


_compiled: dict[tuple[Dialect, str, tuple[str, ...]], Statements] = {}


def statements(
    connection: BaseDatabaseWrapper, table: str, extra: tuple[str, ...] = ()
) -> Statements:
    chosen = dialect(connection)
    if (chosen, table, extra) not in _compiled:
        if chosen is UNSUPPORTED:
            raise NotImplementedError(
                f"django_sql_sessions supports {', '.join(SUPPORTED_VENDORS)}, "
                f"not {connection.vendor!r}."
            )
        _compiled[chosen, table, extra] = chosen.compile(
            connection.ops.quote_name(table), tuple(map(connection.ops.quote_name, extra))
        )
    return _compiled[chosen, table, extra]


# Whether a MySQL alias's server is MariaDB, per process: Django asks per
# connection object, and under ASGI each request's thread has new ones, so a
# cache hit would open a connection. OPTIONS can name the server (unix_socket).
_mariadb: dict[tuple[str, object, object, str], bool] = {}


def _is_mariadb(connection: BaseDatabaseWrapper) -> bool:
    db = connection.settings_dict
    server = (connection.alias, db["HOST"], db["PORT"], repr(db.get("OPTIONS")))
    if server not in _mariadb:
        _mariadb[server] = bool(connection.mysql_is_mariadb)  # type: ignore[attr-defined]
    return _mariadb[server]


def kept(
    connection: BaseDatabaseWrapper,
    attribute: str,
    make: Callable[[BaseDatabaseWrapper], _T],
) -> _T:
    """make(connection), kept on the connection object once per driver connection."""
    raw = connection.connection
    found = getattr(connection, attribute, None)
    if found is None or found[0] is not raw:
        found = (raw, make(connection))
        setattr(connection, attribute, found)
    return found[1]


def _wsrep_on(connection: BaseDatabaseWrapper) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SHOW VARIABLES LIKE 'wsrep_on'")
        rows = cursor.fetchall()
    return bool(rows) and str(rows[0][1]).upper() == "ON"


def _nodes(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        yield value
        for child in value.values():
            yield from _nodes(child)
    elif isinstance(value, list):
        for child in value:
            yield from _nodes(child)
