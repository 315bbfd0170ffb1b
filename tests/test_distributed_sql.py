"""
CockroachDB and TiDB without their servers: what their Django backends
report and compile, and what this package sends through them, as
docs/scaling.rst ("Distributed SQL") says. YugabyteDB has nothing of its own
to compile: through Django's postgresql backend it is vendor "postgresql" and
gets PostgreSQL's statements, which run against PostgreSQL elsewhere.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from django_sql_sessions import cleanup, dialects
from django_sql_sessions.checks import check_settings
from django_sql_sessions.cleanup import lock_name, single_runner
from django_sql_sessions.dialects import DIALECTS, statements
from django_sql_sessions.storage import session_table
from tests.distributed_offline import (
    as_alias,
    cockroachdb_connection,
    migration_sql,
    tidb_connection,
)


def sent_by_single_runner(connection: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The statements the cleanup lock sends on this connection (each answered "held")."""
    sent: list[str] = []

    def fake_send(connection: Any, statement: Any, **values: Any) -> Any:
        sent.append(statement.format)
        return (1,)

    monkeypatch.setattr(cleanup, "fetch_one", fake_send)
    monkeypatch.setattr(
        cleanup, "execute", lambda *args, **kwargs: bool(fake_send(*args, **kwargs))
    )
    with single_runner(connection, session_table()) as hold:
        assert hold.held
    return sent


def one(statements: list[str], pattern: str) -> str:
    (found,) = [sql for sql in statements if re.search(pattern, sql)]
    return found


class TestCockroachDB:
    def test_its_vendor_gets_postgresql_statements(self) -> None:
        connection = cockroachdb_connection()
        assert connection.vendor == "cockroachdb"
        table = session_table()
        assert connection.ops.quote_name(table) == f'"{table}"'
        compiled = statements(connection, table)
        assert compiled == DIALECTS["postgresql"].compile(f'"{table}"')
        assert compiled.insert.sql.endswith("ON CONFLICT (key_hash) DO NOTHING")
        assert "AND NOT EXISTS (SELECT 1 FROM" in compiled.rekey.sql
        assert compiled.reload_locked is not None
        assert compiled.reload_locked.sql.endswith(" FOR UPDATE")
        with as_alias("default", connection):
            assert check_settings(None) == []  # no E004

    def test_the_cleanup_takes_the_lease_not_an_advisory_lock(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # CockroachDB defines pg_try_advisory_lock() as a stub that returns
        # true for every caller: every runner would think it held the lock.
        sent = sent_by_single_runner(cockroachdb_connection(), monkeypatch)
        assert not [sql for sql in sent if "advisory" in sql], sent
        take, release = sent
        assert take.startswith('UPDATE "django_sql_sessions_lease" SET holder = %s')
        assert release.startswith('DELETE FROM "django_sql_sessions_lease" WHERE name = %s')

    def test_migrations_compile_to_plain_postgresql_ddl(self) -> None:
        ddl = migration_sql(cockroachdb_connection())
        table = session_table()
        create = one(ddl, f'^CREATE TABLE "{table}"')
        assert create.startswith(
            f'CREATE TABLE "{table}" ("key_hash" char(64) NOT NULL PRIMARY KEY, '
        )
        assert '"expire_date" timestamptz NOT NULL' in create
        # An ordinary ordered index (no USING HASH): the cleanup's range scans
        # use it, and every save writes near its end.
        expiry_index = one(ddl, f'^CREATE INDEX "{table}_expire_date_')
        assert expiry_index.endswith(f'ON "{table}" ("expire_date");')
        assert one(ddl, '"version" bigint').endswith(
            'ADD COLUMN "version" bigint DEFAULT 1 NOT NULL;'
        )
        assert one(ddl, "sql_sessions_user_idx") == (
            f'CREATE INDEX "sql_sessions_user_idx" ON "{table}" ("user_id");'
        )
        assert one(ddl, '^CREATE TABLE "django_sql_sessions_lease"').startswith(
            'CREATE TABLE "django_sql_sessions_lease" ("name" varchar(64) NOT NULL PRIMARY KEY, '
        )
        # Nothing vendor-specific: no RunSQL, only Django's own DDL.
        assert all(re.match(r"(CREATE TABLE|CREATE INDEX|ALTER TABLE) ", sql) for sql in ddl), ddl


class TestTiDB:
    def test_its_backend_is_vendor_mysql(self, monkeypatch: pytest.MonkeyPatch) -> None:
        connection = tidb_connection()
        # Whether a MySQL server is a Galera node is asked of the server; a
        # TiDB server is not one.
        monkeypatch.setattr(dialects.MySQL, "galera", lambda self, connection: False)
        assert (connection.vendor, connection.display_name) == ("mysql", "TiDB")
        compiled = statements(connection, session_table())
        # MySQL's statements: a key collision is an IntegrityError (1062).
        assert "ON CONFLICT" not in compiled.insert.sql
        assert compiled.reload_locked is not None
        assert compiled.reload_locked.sql.endswith(" FOR UPDATE")
        # MySQL's lock, which TiDB implements cluster-wide since v6.1; it
        # raises the timeout of 0 to its minimum of one second.
        sent = sent_by_single_runner(connection, monkeypatch)
        assert sent == ["SELECT GET_LOCK(%s, 0)", "SELECT RELEASE_LOCK(%s)"]
        assert len(lock_name(connection, session_table())) <= 64

    def test_migrations_compile_to_mysql_ddl(self) -> None:
        ddl = migration_sql(tidb_connection())
        table = session_table()
        create = one(ddl, f"^CREATE TABLE `{table}`")
        assert create.startswith(
            f"CREATE TABLE `{table}` (`key_hash` char(64) CHARACTER SET ascii COLLATE ascii_bin "
            "NOT NULL PRIMARY KEY, "
        )
        # No CLUSTERED or NONCLUSTERED: tidb_enable_clustered_index decides.
        assert "CLUSTERED" not in create
        assert "`expire_date` datetime(6) NOT NULL" in create
        expiry_index = one(ddl, f"^CREATE INDEX `{table}_expire_date_")
        assert expiry_index.endswith(f"ON `{table}` (`expire_date`);")
        assert all(re.match(r"(CREATE TABLE|CREATE INDEX|ALTER TABLE) ", sql) for sql in ddl), ddl
