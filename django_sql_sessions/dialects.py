"""
Everything the package does differently per database vendor, in one object
per vendor, as Django's ``connection.ops`` is: the SQL it sends (the session
table's statements, the import's, the cleanup lock's and lease's, the
catalog queries of sessionstats), what the vendor's errors mean (a conflict,
a refused write, a missing table), and what the server can do (row locks,
Galera). dialect(connection) chooses one once per connection object; no other
module asks which vendor a connection is (tests/test_layers.py).
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

    # The session table's statements (compile()). A key collision on
    # INSERT: 0 rows where the vendor can say so without an error.
    on_conflict = ""
    # Appended to the key-moving UPDATE ({table}: the table).
    rekey_guard = ""
    # Locking a row until the transaction ends: (a table hint, a suffix).
    row_lock: tuple[str, str] | None = ("", " FOR UPDATE")
    # The offset+1th row in cleanup order, and the import's first rows.
    nth = "ORDER BY expire_date, key_hash LIMIT 1 OFFSET %(offset)s"
    first = "LIMIT %(limit)s"
    # The lease's INSERT (locks.py) of a lease that may be there already.
    lease_insert = "INSERT {} ON CONFLICT (name) DO NOTHING"

    # The fast cursor path (cursors.py): ? placeholders (the sqlite3
    # module); one driver cursor kept per connection (psycopg builds a
    # cursor's adapters anew each time); Django's cursor always.
    qmark = False
    keeps_cursor = False
    django_cursor = False

    # KeyHashField's column type.
    key_hash_type = f"char({HASH_LENGTH})"

    # The cleanup lock (locks.py), tied to the connection's session:
    # (acquire, release), each acquire answering one row, true when this
    # connection now holds the lock named %(name)s; None where no lock is
    # needed (one writer at a time). And one tied to the transaction, for a
    # run inside a caller's atomic() block.
    session_lock: tuple[Statement, Statement] | None = None
    transaction_lock: Statement | None = None

    # The error codes (error_codes()) of: an operation the database rolled
    # back whole to resolve a conflict; a write refused by a read-only server;
    # a table that does not exist, whose name the message says.
    conflict_errors: frozenset[object] = frozenset()
    read_only_errors: frozenset[object] = frozenset()
    missing_table_errors: frozenset[object] = frozenset()
    missing_table_name = re.compile(r"(?!)")
    # And of a prepared statement the server session does not have, or has
    # already: a pooler moved the client to another server session.
    lost_prepared_errors: frozenset[object] = frozenset()

    # Where table_size() reads, and what to know about its figures.
    size_source = ""
    size_note: str | None = None

    def compile(self, table: str) -> Statements:
        """The session table's statements, for the table name as the backend quotes it."""
        columns = (
            "key_hash, data, expire_date, created_at, updated_at, user_id, ip, user_agent, version"
        )
        insert = (
            f"INSERT INTO {table} ({columns}) VALUES (%(key_hash)s, %(data)s, %(expire_date)s, "
            f"%(now)s, %(now)s, %(user_id)s, %(ip)s, %(user_agent)s, 1){self.on_conflict}"
        )
        # The absolute lifetime goes on across a move to a new key (rotating the
        # id, as OWASP advises, must not extend it); a login restarts it through
        # the save's `born` (storage.SessionTable.update()).
        rekey = (
            f"UPDATE {table} SET key_hash = %(new_key_hash)s, updated_at = %(now)s, "
            f"version = version + 1 WHERE key_hash = %(key_hash)s"
        ) + self.rekey_guard.format(table=table)
        cas = (
            "updated_at = %(now)s, version = version + 1 "
            "WHERE key_hash = %(key_hash)s AND version = %(version)s"
        )
        # Which user a save records follows the session data; device details
        # come from the request, and a save outside one (a shell, a task) keeps
        # what the last request recorded.
        device = "ip = COALESCE(%(ip)s, ip), user_agent = COALESCE(%(user_agent)s, user_agent)"
        owner = f"user_id = %(user_id)s, {device}, created_at = COALESCE(%(born)s, created_at)"
        # Live rows only: a row that expired, or was expired (a forced expiry
        # moves the version on), has ended, and a merged save must not bring it
        # back, as it must not re-insert a deleted one.
        row = "WHERE key_hash = %(key_hash)s AND expire_date > %(now)s"
        reload = f"SELECT data, version FROM {table} {row}"
        hint, suffix = self.row_lock or ("", "")
        locked = f"SELECT data, version FROM {table}{hint} {row}{suffix}"

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
        expired = f"SELECT expire_date, key_hash FROM {table} WHERE"
        after = (
            "expire_date >= %(after)s AND (expire_date > %(after)s OR key_hash > %(after_key)s)"
        )
        until = (
            "expire_date <= %(until)s AND (expire_date < %(until)s OR key_hash <= %(until_key)s)"
        )
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
        )

    def import_statements(self, table: str) -> tuple[Statement, Statement]:
        """
        Reading Django's session table (importsessions): how many rows are expired
        at `cutoff`; the next `limit` live rows after `after` in key order.
        """
        return (
            Statement.of(f"SELECT COUNT(*) FROM {table} WHERE expire_date <= %(cutoff)s"),
            Statement.of(
                f"SELECT session_key, session_data, expire_date FROM {table} WHERE session_key > "
                f"%(after)s AND expire_date > %(cutoff)s ORDER BY session_key {self.first}"
            ),
        )

    def lease_statements(self, table: str) -> tuple[Statement, Statement, Statement, Statement]:
        """
        The cleanup lease's statements (locks.py), for the quoted table name:
        take an expired lease (1 row if taken), insert one where there is none
        (1 row if taken, 0 if there is one), renew ours if unexpired (1 row),
        release it.
        """
        # On Galera each statement first waits until this node has applied the
        # cluster's earlier writes, so that it sees a lease another node took.
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
        """A prefix: the statement waits for the cluster's earlier writes (see MariaDB)."""
        return ""

    def lock_key(self, name: str) -> object:
        return name

    # The server.

    def galera(self, connection: BaseDatabaseWrapper) -> bool:
        return False

    def needs_lease(self, connection: BaseDatabaseWrapper) -> bool:
        """Whether the cleanup takes a lease (locks.py) rather than the server's lock."""
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

    # Errors, as the driver raises them or as Django does (its own
    # exception, with the driver's args and the driver's as its cause).

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
        """
        The table a statement failed on because it does not exist ("" if the
        message does not name it), or None if it failed for another reason.
        """
        exc = self._coded(error, self.missing_table_errors)
        if exc is None:
            return None
        found = self.missing_table_name.search(str(exc))
        return found[1] if found else ""

    # sessionstats.

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
                # Pages of the table's b-tree and of its indexes (the primary
                # key's automatic one included).
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
    # A failed INSERT would abort a caller's transaction; ON CONFLICT turns
    # the collision into "0 rows" instead. UPDATE has no ON CONFLICT clause,
    # so the guard keeps a collision on the new key from raising.
    on_conflict = " ON CONFLICT (key_hash) DO NOTHING"
    rekey_guard = " AND NOT EXISTS (SELECT 1 FROM {table} WHERE key_hash = %(new_key_hash)s)"
    keeps_cursor = True
    session_lock = (
        Statement.of("SELECT pg_try_advisory_lock(%(name)s)"),
        Statement.of("SELECT pg_advisory_unlock(%(name)s)"),
    )
    transaction_lock = Statement.of("SELECT pg_try_advisory_xact_lock(%(name)s)")
    # deadlock_detected, serialization_failure (CockroachDB's "restart
    # transaction"). Never 40003, "statement completion unknown": the write
    # may have happened. read_only_sql_transaction: a hot standby, or
    # default_transaction_read_only / SET TRANSACTION READ ONLY (CockroachDB
    # raises it for the same settings). undefined_table.
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
    # Why E015 says, by the columns of why_read_only()'s query.
    READ_ONLY = (
        "a standby: pg_is_in_recovery() is true",
        "default_transaction_read_only is on",
        "transaction_read_only is on",
    )

    def error_codes(self, exc: BaseException) -> Collection[object]:
        # psycopg 3 says sqlstate, psycopg2 pgcode.
        return (getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None),)

    def lock_key(self, name: str) -> object:
        # Advisory locks take a bigint.
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
        # pg_table_size: the rows with their TOAST (large session data) and
        # maps; with the indexes (pg_indexes_size), pg_total_relation_size.
        return (
            "SELECT pg_total_relation_size(c.oid), pg_table_size(c.oid), NULL "
            "FROM pg_class c WHERE c.oid = to_regclass(%s)",
            [connection.ops.quote_name(table)],
        )

    def explain_rows(self, queryset: Any) -> int | None:
        plan = json.loads(queryset.values_list("pk").explain(format="json"))
        return int(plan[0]["Plan"]["Plan Rows"])


class CockroachDB(PostgreSQL):
    """
    PostgreSQL's statements, each the same there (an error aborts a transaction
    there too); the cleanup lock and the retries differ (docs/scaling.rst).
    """

    vendor = "cockroachdb"
    keeps_cursor = False
    # It has no standbys to connect to, none of PostgreSQL's catalog
    # functions for sizes, and no EXPLAIN estimate in PostgreSQL's format.
    why_read_only = Dialect.why_read_only
    size_query = Dialect.size_query
    explain_rows = Dialect.explain_rows

    def needs_lease(self, connection: BaseDatabaseWrapper) -> bool:
        return True  # pg_try_advisory_lock() is a stub: see locks.py


class MySQL(Dialect):
    vendor = "mysql"
    # A key collision is an IntegrityError (1062), which rolls back only the
    # statement.
    lease_insert = "INSERT IGNORE {}"
    key_hash_type = f"char({HASH_LENGTH}) CHARACTER SET ascii COLLATE ascii_bin"
    session_lock = (
        Statement.of("SELECT GET_LOCK(%(name)s, 0)"),
        Statement.of("SELECT RELEASE_LOCK(%(name)s)"),
    )
    # ER_LOCK_DEADLOCK: an InnoDB deadlock, or a writeset that lost Galera's
    # certification to another node's. TiDB's optimistic autocommit
    # statements: write conflict (9007), and 8002, 8022, 8028, which its docs
    # say to retry. ER_OPTION_PREVENTS_STATEMENT, which for the engine's
    # INSERT, UPDATE and DELETE on its own table can only be --read-only or
    # --super-read-only; ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION
    # (transaction_read_only, tx_read_only, SET TRANSACTION READ ONLY).
    # ER_NO_SUCH_TABLE.
    conflict_errors = frozenset({1213, 9007, 8002, 8022, 8028})
    read_only_errors = frozenset({1290, 1792})
    missing_table_errors = frozenset({1146})
    missing_table_name = re.compile(r"Table '(?:[^'.]*\.)?([^'.]+)' doesn't exist")
    size_source = "information_schema.TABLES"
    size_note = "InnoDB's figures as of its last statistics update"
    # Room per row for everything but the session data in a row-based
    # writeset: the other columns, the key and the user index entries.
    ROW_OVERHEAD = 1024

    def error_codes(self, exc: BaseException) -> Collection[object]:
        return exc.args[:1]

    def galera(self, connection: BaseDatabaseWrapper) -> bool:
        # Asked once per driver connection (a reconnect asks again).
        connection.ensure_connection()
        return kept(connection, "_django_sql_sessions_galera", _wsrep_on)

    def causal_reads(self, connection: BaseDatabaseWrapper) -> bool:
        # A Galera node that is not MariaDB (Percona XtraDB Cluster) has no
        # SET STATEMENT: the connection's own setting must have the read bit.
        if self.causal(1) or not self.galera(connection):
            return True
        with connection.cursor() as cursor:
            cursor.execute("SELECT @@SESSION.wsrep_sync_wait")
            (sync_wait,) = cursor.fetchone()
        return bool(int(sync_wait) & 1)

    def rows_per_transaction(self, connection: BaseDatabaseWrapper, row_bytes: int) -> int | None:
        # A Galera writeset over wsrep_max_ws_rows (0, the default, is no
        # limit) or wsrep_max_ws_size fails at commit.
        if not self.galera(connection):
            return None
        with connection.cursor() as cursor:
            cursor.execute("SELECT @@wsrep_max_ws_rows, @@wsrep_max_ws_size")
            max_rows, max_bytes = (int(value) for value in cursor.fetchone())
        by_size = max(1, max_bytes // (row_bytes + self.ROW_OVERHEAD))
        return min(by_size, max_rows) if max_rows else by_size

    def why_read_only(self, connection: BaseDatabaseWrapper) -> str | None:
        with connection.cursor() as cursor:
            # SHOW VARIABLES, not @@name: each server has only some of these
            # (super_read_only is MySQL's, tx_read_only gone from MySQL 8,
            # transaction_read_only new in MariaDB 11.1), and an unknown
            # @@name is an error. Session values, as this connection sees them.
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
        # MariaDB gives "rows", MySQL "rows_examined_per_scan"; either with the
        # share of them that the condition is expected to keep.
        for node in _nodes(plan):
            if "table_name" in node:
                rows = node.get("rows", node.get("rows_examined_per_scan", 0))
                return round(float(rows) * float(node.get("filtered", 100)) / 100)
        return None


class MariaDB(MySQL):
    def causal(self, wait: int) -> str:
        # On a Galera cluster a node applies other nodes' writes a moment
        # after they commit, so a session saved through one node could load
        # as missing (logged out) through another. SET STATEMENT makes the
        # statement wait, for itself only; without Galera it does nothing.
        return f"SET STATEMENT wsrep_sync_wait = {wait} FOR "


class SQLServer(Dialect):
    vendor = "microsoft"
    row_lock = (" WITH (UPDLOCK, ROWLOCK)", "")
    nth = "ORDER BY expire_date, key_hash OFFSET %(offset)s ROWS FETCH NEXT 1 ROWS ONLY"
    first = "OFFSET 0 ROWS FETCH NEXT %(limit)s ROWS ONLY"
    # mssql-django's cursor adapts the parameters for pyodbc.
    django_cursor = True
    # pyodbc sends str parameters as nvarchar; an nchar column compares with
    # them without an implicit conversion that would defeat the primary key
    # index.
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
    # pyodbc's SQLSTATE for a deadlock victim (error 1205). "Failed to update
    # database ... because the database is read-only" (a read-only database,
    # or a readable secondary replica) and "Invalid object name", which
    # pyodbc only carries in the message, as "(3906)" and "(208)".
    conflict_errors = frozenset({"40001"})
    read_only_errors = frozenset({"(3906)"})
    missing_table_errors = frozenset({"(208)"})
    missing_table_name = re.compile(r"Invalid object name '([^']+)'")
    size_source = "sys.dm_db_partition_stats"
    # Pages of SQL Server's data files are 8 KiB.
    PAGE_BYTES = 8192
    # What a read-only database or a readable secondary replica answers with READ_ONLY.
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
        # sp_spaceused's arithmetic, without its result sets: rows and data
        # pages from the heap or clustered index (index_id 0 or 1), plus
        # every index's large-object pages; the other used pages are index.
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

# Where dialect() keeps its choice on a connection object: read there
# without a call on the fast cursor path (cursors.py).
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


_compiled: dict[tuple[Dialect, str], Statements] = {}


def statements(connection: BaseDatabaseWrapper, table: str) -> Statements:
    """The session table's statements for this connection and a (validated) table name."""
    chosen = dialect(connection)
    if (chosen, table) not in _compiled:
        if chosen is UNSUPPORTED:
            raise NotImplementedError(
                f"django_sql_sessions supports {', '.join(SUPPORTED_VENDORS)}, "
                f"not {connection.vendor!r}."
            )
        _compiled[chosen, table] = chosen.compile(connection.ops.quote_name(table))
    return _compiled[chosen, table]


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
    if server not in _mariadb:
        _mariadb[server] = bool(connection.mysql_is_mariadb)  # type: ignore[attr-defined]
    return _mariadb[server]


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
    if found is None or found[0] is not raw:
        found = (raw, make(connection))
        setattr(connection, attribute, found)
    return found[1]


def _wsrep_on(connection: BaseDatabaseWrapper) -> bool:
    # No rows where the server was built without wsrep (MySQL, most other builds).
    with connection.cursor() as cursor:
        cursor.execute("SHOW VARIABLES LIKE 'wsrep_on'")
        rows = cursor.fetchall()
    return bool(rows) and str(rows[0][1]).upper() == "ON"


def _nodes(value: Any) -> Iterator[dict[str, Any]]:
    """Every JSON object in a plan, depth first."""
    if isinstance(value, dict):
        yield value
        for child in value.values():
            yield from _nodes(child)
    elif isinstance(value, list):
        for child in value:
            yield from _nodes(child)
