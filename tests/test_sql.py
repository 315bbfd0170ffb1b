from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.db.models.sql.subqueries import DeleteQuery
from django.utils import timezone

from django_sql_sessions import cursors, dialects
from django_sql_sessions.dialects import DIALECTS, MARIADB, SUPPORTED_VENDORS, statements
from django_sql_sessions.models import Session
from django_sql_sessions.sql import Statement, Statements
from django_sql_sessions.storage import session_table
from tests.mssql_offline import offline_connection


def _compile(vendor: str, table: str, *, mariadb: bool = False) -> Statements:
    return (MARIADB if mariadb else DIALECTS[vendor]).compile(table)


def bound(statement: Statement, values: dict[str, Any]) -> list[Any]:
    """The values in the order cursors.send() binds them: placeholder order."""
    return [values[name] for name in statement.names]


# The parameters each statement takes, by name (the engine, the cleanup and
# the lock pass them as keywords).
PARAMETERS = {
    "load": {"key_hash", "now", "born_after"},
    "load_created": {"key_hash", "now", "born_after"},
    "reload": {"key_hash", "now"},
    "reload_locked": {"key_hash", "now"},
    "exists": {"key_hash"},
    "insert": {"key_hash", "data", "expire_date", "now", "user_id", "ip", "user_agent"},
    # born: created_at when a login restarts the absolute lifetime, else NULL.
    "update": {
        "data",
        "expire_date",
        "now",
        "key_hash",
        "version",
        "user_id",
        "ip",
        "user_agent",
        "born",
    },
    "update_exact": {
        "born",
        "data",
        "expire_date",
        "now",
        "key_hash",
        "version",
        "user_id",
        "ip",
        "user_agent",
    },
    "touch_activity": {"ip", "user_agent", "now", "key_hash", "version", "due"},
    "delete": {"key_hash"},
    "rekey": {"new_key_hash", "now", "key_hash"},
    "count_expired": {"cutoff"},
    "batch_end": {"cutoff", "offset"},
    "batch_end_after": {"after", "after_key", "cutoff", "offset"},
    "delete_until": {"until", "until_key"},
    "delete_between": {"after", "after_key", "until", "until_key"},
    "scan_unsealed": {"after", "pattern", "limit"},
    "scan_sealed": {"after", "pattern", "limit"},
    "reseal": {"data", "key_hash", "version"},
}


@pytest.mark.parametrize("vendor", SUPPORTED_VENDORS)
def test_every_statement_takes_its_documented_parameters(vendor: str) -> None:
    compiled = _compile(vendor, '"t"')
    assert {field.name for field in dataclasses.fields(compiled)} == set(PARAMETERS)
    for name, expected in PARAMETERS.items():
        statement = getattr(compiled, name)
        if name == "reload_locked" and vendor == "sqlite":
            assert statement is None  # no row locks
            continue
        assert set(statement.names) == expected, (vendor, name)
        assert statement.format.count("%s") == len(statement.names)
        assert statement.qmark.count("?") == len(statement.names)
        assert "%(" not in statement.format
        assert '"t"' in statement.sql


def test_parameters_are_bound_by_name_in_placeholder_order() -> None:
    update = _compile("sqlite", "t").update
    values = {name: f"<{name}>" for name in PARAMETERS["update"]}
    # expire_date twice (the CASE), each value where its placeholder stands.
    assert bound(update, values) == [
        "<data>",
        "<expire_date>",
        "<expire_date>",
        "<user_id>",
        "<ip>",
        "<user_agent>",
        "<born>",
        "<now>",
        "<key_hash>",
        "<version>",
    ]
    assert update.format.startswith("UPDATE t SET data = %s, expire_date = CASE WHEN")


@pytest.mark.parametrize(
    "values",
    [
        {"key_hash": "h", "now": 1},  # one missing
        {"key_hash": "h", "now": 1, "born_after": 0, "user_agent": "x"},  # one too many
        {"key_hash": "h", "nwo": 1, "born_after": 0},  # misspelt
    ],
)
def test_a_missing_or_unknown_parameter_is_refused(values: dict[str, Any]) -> None:
    with pytest.raises(TypeError, match=r"takes \['born_after', 'key_hash', 'now'\]"):
        cursors.send(None, _compile("sqlite", "t").load, values)  # type: ignore[arg-type]


def test_statement_of_reads_repeated_names() -> None:
    statement = Statement.of("SELECT %(a)s, %(b)s, %(a)s")
    assert statement.names == ("a", "b", "a")
    assert statement.format == "SELECT %s, %s, %s"
    assert statement.qmark == "SELECT ?, ?, ?"
    assert bound(statement, {"a": 1, "b": 2}) == [1, 2, 1]


def test_only_the_postgresql_dialect_guards_the_rekey() -> None:
    guarded = [
        v for v in SUPPORTED_VENDORS if _compile(v, "t").rekey.names.count("new_key_hash") == 2
    ]
    assert guarded == ["postgresql", "cockroachdb"]


def test_collision_handling_per_vendor() -> None:
    assert _compile("postgresql", "t").insert.sql.endswith("ON CONFLICT (key_hash) DO NOTHING")
    assert _compile("sqlite", "t").insert.sql.endswith("ON CONFLICT (key_hash) DO NOTHING")
    assert "ON CONFLICT" not in _compile("mysql", "t").insert.sql
    assert "ON CONFLICT" not in _compile("microsoft", "t").insert.sql


def test_unsupported_vendor() -> None:
    oracle = SimpleNamespace(vendor="oracle", alias="oracle")
    with pytest.raises(NotImplementedError, match="'oracle'"):
        statements(oracle, "t")  # type: ignore[arg-type]


def test_invalid_table_name_builds_no_sql(settings: Any) -> None:
    settings.SQL_SESSIONS_TABLE = 'x"; DROP TABLE auth_user; --'
    with pytest.raises(ImproperlyConfigured, match="SQL_SESSIONS_TABLE"):
        statements(connections["default"], session_table())


def test_the_table_cannot_change_at_run_time(settings: Any) -> None:
    # The model's table is fixed at import; an engine following the new
    # setting would write a table that list_sessions() and the admin never read.
    settings.SQL_SESSIONS_TABLE = "another_valid_table"
    with pytest.raises(ImproperlyConfigured, match="cannot change while the process runs"):
        session_table()


def test_table_name_is_quoted_by_the_backend() -> None:
    table = connections["default"].ops.quote_name("select")  # a reserved word, once quoted
    assert 'FROM "select" WHERE' in _compile("sqlite", table).load.sql


@pytest.mark.parametrize("vendor", SUPPORTED_VENDORS)
def test_cleanup_ranges_end_at_an_expiry_and_a_key(vendor: str) -> None:
    compiled = _compile(vendor, "t")
    # Ties on expire_date are broken by key_hash, in the order the ranges use.
    for name in ("batch_end", "batch_end_after"):
        statement = getattr(compiled, name).sql
        assert statement.startswith("SELECT expire_date, key_hash FROM t WHERE "), name
        assert "ORDER BY expire_date, key_hash " in statement, name
    assert bound(compiled.delete_until, {"until": "U", "until_key": "K"}) == ["U", "U", "K"]
    assert bound(
        compiled.delete_between, {"after": "A", "after_key": "a", "until": "U", "until_key": "K"}
    ) == ["A", "A", "a", "U", "U", "K"]
    # Every statement starts an index range with a plain comparison.
    assert compiled.delete_between.sql == (
        "DELETE FROM t WHERE expire_date >= %(after)s AND (expire_date > %(after)s OR "
        "key_hash > %(after_key)s) AND expire_date <= %(until)s AND (expire_date < %(until)s "
        "OR key_hash <= %(until_key)s)"
    )


@pytest.mark.parametrize("vendor", SUPPORTED_VENDORS)
def test_django_session_table_statements(vendor: str) -> None:
    count, batch = DIALECTS[vendor].import_statements("d")
    assert count.names == ("cutoff",)
    assert batch.names == ("after", "cutoff", "limit")
    assert ("OFFSET 0 ROWS FETCH NEXT" in batch.sql) == (vendor == "microsoft")


class TestSqlServerOffline:
    """mssql-django's own operations and compiler, with no server."""

    def test_statements(self) -> None:
        compiled = statements(offline_connection(), session_table())
        assert isinstance(compiled, Statements)
        assert compiled.load.format == (
            "SELECT data, expire_date, version, updated_at FROM [test_web_sessions] "
            "WHERE key_hash = %s AND expire_date > %s AND created_at > %s"
        )
        assert compiled.update.format == (
            "UPDATE [test_web_sessions] SET data = %s, expire_date = CASE WHEN expire_date > %s "
            "THEN expire_date ELSE %s END, user_id = %s, ip = COALESCE(%s, ip), "
            "user_agent = COALESCE(%s, user_agent), created_at = COALESCE(%s, created_at), "
            "updated_at = %s, version = version + 1 WHERE key_hash = %s AND version = %s"
        )
        assert compiled.touch_activity.format == (
            "UPDATE [test_web_sessions] SET ip = COALESCE(%s, ip), "
            "user_agent = COALESCE(%s, user_agent), updated_at = %s, version = version + 1 "
            "WHERE key_hash = %s AND version = %s AND updated_at <= %s"
        )
        # No row-value comparison, which SQL Server lacks.
        assert compiled.batch_end_after.format == (
            "SELECT expire_date, key_hash FROM [test_web_sessions] WHERE expire_date >= %s "
            "AND (expire_date > %s OR key_hash > %s) AND expire_date <= %s "
            "ORDER BY expire_date, key_hash OFFSET %s ROWS FETCH NEXT 1 ROWS ONLY"
        )
        assert compiled.delete_between.format == (
            "DELETE FROM [test_web_sessions] WHERE expire_date >= %s AND (expire_date > %s "
            "OR key_hash > %s) AND expire_date <= %s AND (expire_date < %s OR key_hash <= %s)"
        )
        for field in dataclasses.fields(compiled):
            value = getattr(compiled, field.name)
            assert value is None or "LIMIT" not in value.sql

    def test_table_ddl(self) -> None:
        connection = offline_connection()
        editor = connection.schema_editor(collect_sql=True, atomic=False)
        with editor:
            editor.create_model(Session)
        # Which index comes first is not what this test is about.
        create_table, *indexes = editor.collected_sql
        create_index, user_index = sorted(indexes, reverse=True)
        assert create_table.startswith(
            "CREATE TABLE [test_web_sessions] ([key_hash] nchar(64) NOT NULL PRIMARY KEY, "
        )
        assert "[user_id] nvarchar(255) NULL" in create_table
        assert create_index.startswith("CREATE INDEX [test_web_sessions_expire_date_")
        assert create_index.endswith("ON [test_web_sessions] ([expire_date]);")
        assert user_index == (
            "CREATE INDEX [sql_sessions_user_idx] ON [test_web_sessions] ([user_id]);"
        )

    def test_manager_queries_compile(self) -> None:
        connection = offline_connection()
        now = timezone.now()
        query = Session.objects.filter(expire_date__lte=now).order_by("expire_date")[:5].query
        sql, params = query.get_compiler(connection=connection).as_sql()
        assert sql.startswith("SELECT TOP 5 [test_web_sessions].[key_hash]")
        assert "WHERE [test_web_sessions].[expire_date] <= %s" in sql
        assert params == (now,)

    def test_user_queries_compile(self) -> None:
        connection = offline_connection()
        query = Session.objects.active().filter(user_id="42").order_by("-updated_at").query
        sql, params = query.get_compiler(connection=connection).as_sql()
        assert "WHERE ([test_web_sessions].[expire_date] > %s AND " in sql
        assert "[test_web_sessions].[user_id] = %s)" in sql
        assert params[1] == "42"
        delete = Session.objects.filter(key_hash="0" * 64, user_id="42").query
        delete.__class__ = DeleteQuery
        sql, params = delete.get_compiler(connection=connection).as_sql()
        assert sql == (
            "SET NOCOUNT OFF; DELETE FROM [test_web_sessions] WHERE "
            "([test_web_sessions].[key_hash] = %s AND [test_web_sessions].[user_id] = %s)"
        )
        assert params == ("0" * 64, "42")


def postgresql_only(alias: str) -> None:
    if connections[alias].vendor != "postgresql":
        pytest.skip("PostgreSQL only: the other drivers' cursors cost little to make")


def test_postgresql_reuses_one_cursor_per_connection(alias: str) -> None:
    import gc
    import weakref

    from django_sql_sessions.backends.db import SessionStore

    postgresql_only(alias)
    connection = connections[alias]
    store = SessionStore()
    store["n"] = 1
    store.save()
    (raw, cursor) = getattr(connection, cursors._KEPT_CURSOR)
    assert raw is connection.connection
    assert SessionStore(store.session_key).load() == {"n": 1}
    assert getattr(connection, cursors._KEPT_CURSOR)[1] is cursor  # no new cursor
    # A reconnect (CONN_MAX_AGE, a failed health check) gets a cursor of
    # the new connection, and the old connection is not kept alive.
    old = weakref.ref(raw)
    del raw, cursor
    connection.close()
    assert SessionStore(store.session_key).load() == {"n": 1}
    new_raw, _new_cursor = getattr(connection, cursors._KEPT_CURSOR)
    assert new_raw is connection.connection
    gc.collect()
    assert old() is None


def test_postgresql_prepared_statements_are_used_when_enabled(alias: str) -> None:
    import psycopg

    from django_sql_sessions.backends.db import SessionStore

    postgresql_only(alias)
    connection = connections[alias]
    connection.close()
    connection.ensure_connection()
    # What OPTIONS {"prepare_threshold": 1} does to the driver connection.
    connection.connection.prepare_threshold = 1
    try:
        store = SessionStore()
        store["n"] = 1
        store.save()
        for _ in range(3):
            assert SessionStore(store.session_key).load() == {"n": 1}
        _raw, (cursor, prepares) = getattr(connection, cursors._KEPT_CURSOR)
        assert type(cursor) is psycopg.Cursor  # server-side binding
        assert prepares
        with connection.cursor() as check:
            check.execute("SELECT statement FROM pg_prepared_statements")
            prepared = [row[0] for row in check.fetchall()]
        assert any("expire_date > $2" in text for text in prepared), prepared
    finally:
        connection.close()


def test_postgresql_thread_sharing_a_connection_gets_a_cursor_a_statement(
    alias: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from django.db import DatabaseError

    from django_sql_sessions.backends.db import SessionStore

    postgresql_only(alias)
    connection = connections[alias]
    store = SessionStore()
    store["n"] = 1
    store.save()
    kept = cursors._keep_cursor
    users: list[int] = []

    def tracked(connection: Any) -> Any:
        users.append(threading.get_ident())
        return kept(connection)

    monkeypatch.setattr(cursors, "_keep_cursor", tracked)
    # Made anew at the next use, through tracked().
    connection.__dict__.pop(cursors._KEPT_CURSOR, None)
    outcome: list[object] = []

    def load_in_another_thread() -> None:
        # As LiveServerTestCase's server thread does: the same connection
        # object, handed over.
        connections[alias] = connection
        try:
            outcome.append(SessionStore(store.session_key).load())
        except Exception as exc:
            outcome.append(exc)

    def run_other_thread() -> object:
        outcome.clear()
        thread = threading.Thread(target=load_in_another_thread)
        thread.start()
        thread.join()
        return outcome[0]

    connection.inc_thread_sharing()
    try:
        assert run_other_thread() == {"n": 1}
        assert users == []  # the other thread did not touch the kept cursor
        assert SessionStore(store.session_key).load() == {"n": 1}
        assert users == [threading.get_ident()]  # the owner still keeps its own
    finally:
        connection.dec_thread_sharing()
    # Not shared: another thread is refused, as Django's cursor refuses it.
    refused = run_other_thread()
    assert isinstance(refused, DatabaseError), refused
    assert "can only be used in that same thread" in str(refused)


def test_the_driver_path_raises_what_django_cursors_raise(alias: str) -> None:
    from django.db import DatabaseError

    connection = connections[alias]
    # A missing column: a missing table becomes SessionTableMissing (test_missing_table.py).
    broken = Statement.of("SELECT no_such_column FROM django_session WHERE 1 = %(one)s")
    connection.errors_occurred = False
    with pytest.raises(DatabaseError) as raised:  # django.db's, not the driver's
        cursors.fetch_one(connection, broken, one=1)
    assert type(raised.value).__module__ == "django.db.utils"
    assert isinstance(raised.value.__cause__, connection.Database.Error)  # type: ignore[attr-defined]
    # As after a failed query through Django: the health check runs next time.
    assert connection.errors_occurred


def test_the_driver_path_refuses_a_broken_transaction(alias: str) -> None:
    from django.db import transaction
    from django.db.transaction import TransactionManagementError

    from django_sql_sessions.backends.db import SessionStore

    store = SessionStore()
    store["n"] = 1
    store.save()
    with transaction.atomic(using=alias):
        connection = connections[alias]
        # What an error inside atomic() leaves behind, however it was caught.
        connection.needs_rollback = True
        with pytest.raises(TransactionManagementError):
            SessionStore(store.session_key).load()
        connection.needs_rollback = False
    assert SessionStore(store.session_key).load() == {"n": 1}


def test_the_sync_engine_inside_an_event_loop_is_refused_as_django_refuses_it(
    alias: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    from django.core.exceptions import SynchronousOnlyOperation
    from django.db.backends.base.base import BaseDatabaseWrapper

    from django_sql_sessions.backends.db import SessionStore

    store = SessionStore()
    store["n"] = 1
    store.save()
    key = store.session_key

    async def sync_call_in_the_loop() -> dict[str, Any]:
        try:
            return SessionStore(key).load()
        finally:
            # The loop's context has a connection of its own; closed for
            # good, even SQLite's in-memory one (whose close() keeps it).
            BaseDatabaseWrapper.close(connections[alias])

    with pytest.raises(SynchronousOnlyOperation):
        asyncio.run(sync_call_in_the_loop())
    # Django's escape hatch lets it through, as it lets Django's cursor through.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    assert asyncio.run(sync_call_in_the_loop()) == {"n": 1}


def test_mariadb_reads_wait_for_the_cluster_and_nothing_else_does() -> None:
    prefix = "SET STATEMENT wsrep_sync_wait = 1 FOR SELECT "
    mariadb = _compile("mysql", "t", mariadb=True)
    reads = {"load", "load_created", "reload", "reload_locked", "exists"}
    for field in dataclasses.fields(mariadb):
        statement = getattr(mariadb, field.name)
        assert statement.sql.startswith(prefix) == (field.name in reads), field.name
    for vendor in SUPPORTED_VENDORS:  # MySQL has no SET STATEMENT; the others no Galera
        compiled = _compile(vendor, "t")
        assert not any(
            "wsrep" in getattr(compiled, field.name).sql
            for field in dataclasses.fields(compiled)
            if getattr(compiled, field.name) is not None
        )


def test_the_sessions_statements_follow_the_server_flavour(alias: str) -> None:
    connection = connections[alias]
    compiled = statements(connection, session_table())
    mariadb = connection.vendor == "mysql" and connection.mysql_is_mariadb  # type: ignore[attr-defined]
    assert ("wsrep_sync_wait" in compiled.load.sql) == mariadb


def test_the_mariadb_answer_is_kept_per_server_not_per_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # With HOST and PORT empty, Django's MySQL backend finds the server
    # through OPTIONS (unix_socket, read_default_file): the same alias, host
    # and port can name another server after a settings change.
    monkeypatch.setattr(dialects, "_mariadb", {})

    def connection(options: dict[str, str], mariadb: bool) -> Any:
        settings_dict = {"HOST": "", "PORT": "", "OPTIONS": options}
        return SimpleNamespace(alias="x", settings_dict=settings_dict, mysql_is_mariadb=mariadb)

    assert dialects._is_mariadb(connection({"unix_socket": "/run/mariadb.sock"}, True)) is True
    assert dialects._is_mariadb(connection({"unix_socket": "/run/mysqld.sock"}, False)) is False
    # Asked once per server.
    assert dialects._is_mariadb(connection({"unix_socket": "/run/mariadb.sock"}, False)) is True
