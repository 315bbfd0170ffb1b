from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.db.models.sql.subqueries import DeleteQuery
from django.utils import timezone

from django_sql_sessions.models import Session
from django_sql_sessions.sql import SUPPORTED_VENDORS, Statements, _compile, statements
from tests.mssql_offline import offline_connection

# How many parameters each statement takes (documented in sql.Statements).
PARAMETERS = {
    "load": 2,
    "reload": 1,
    "reload_locked": 1,
    "exists": 1,
    "insert": 8,
    "update": 9,
    "update_exact": 8,
    "touch_activity": 5,
    "delete": 1,
    "rekey": 3,
    "count_expired": 1,
    "batch_end": 2,
    "batch_end_after": 3,
    "delete_until": 1,
    "delete_between": 2,
}


@pytest.mark.parametrize("vendor", SUPPORTED_VENDORS)
def test_placeholders_match_the_documented_parameters(vendor: str) -> None:
    compiled = _compile(vendor, '"t"')
    for name, count in PARAMETERS.items():
        if name == "reload_locked" and vendor == "sqlite":
            assert compiled.reload_locked == ""
            continue
        extra = 1 if name == "rekey" and compiled.rekey_guarded else 0
        assert getattr(compiled, name).count("%s") == count + extra, (vendor, name)
        assert '"t"' in getattr(compiled, name)


def test_only_postgresql_guards_the_rekey() -> None:
    assert [v for v in SUPPORTED_VENDORS if _compile(v, "t").rekey_guarded] == ["postgresql"]


def test_collision_handling_per_vendor() -> None:
    assert _compile("postgresql", "t").insert.endswith("ON CONFLICT (key_hash) DO NOTHING")
    assert _compile("sqlite", "t").insert.endswith("ON CONFLICT (key_hash) DO NOTHING")
    assert "ON CONFLICT" not in _compile("mysql", "t").insert
    assert "ON CONFLICT" not in _compile("microsoft", "t").insert


def test_unsupported_vendor() -> None:
    with pytest.raises(NotImplementedError, match="'oracle'"):
        _compile("oracle", "t")


def test_invalid_table_name_builds_no_sql(settings: Any) -> None:
    settings.SQL_SESSIONS_TABLE = 'x"; DROP TABLE auth_user; --'
    with pytest.raises(ImproperlyConfigured, match="SQL_SESSIONS_TABLE"):
        statements(connections["default"])


def test_the_table_cannot_change_at_run_time(settings: Any) -> None:
    # The model's table is fixed at import; an engine following the new
    # setting would write a table that list_sessions() and the admin never read.
    settings.SQL_SESSIONS_TABLE = "another_valid_table"
    with pytest.raises(ImproperlyConfigured, match="cannot change while the process runs"):
        statements(connections["default"])


def test_table_name_is_quoted_by_the_backend() -> None:
    table = connections["default"].ops.quote_name("select")  # a reserved word, once quoted
    assert 'FROM "select" WHERE' in _compile("sqlite", table).load


class TestSqlServerOffline:
    """mssql-django's own operations and compiler, with no server."""

    def test_statements(self) -> None:
        compiled = statements(offline_connection())
        assert isinstance(compiled, Statements)
        assert compiled.load == (
            "SELECT data, expire_date, version, updated_at FROM [test_web_sessions] "
            "WHERE key_hash = %s AND expire_date > %s"
        )
        assert compiled.update == (
            "UPDATE [test_web_sessions] SET data = %s, expire_date = CASE WHEN expire_date > %s "
            "THEN expire_date ELSE %s END, user_id = %s, ip = COALESCE(%s, ip), "
            "user_agent = COALESCE(%s, user_agent), updated_at = %s, version = version + 1 "
            "WHERE key_hash = %s AND version = %s"
        )
        assert compiled.touch_activity == (
            "UPDATE [test_web_sessions] SET ip = COALESCE(%s, ip), "
            "user_agent = COALESCE(%s, user_agent), updated_at = %s "
            "WHERE key_hash = %s AND updated_at <= %s"
        )
        assert compiled.batch_end_after == (
            "SELECT expire_date FROM [test_web_sessions] WHERE expire_date > %s AND "
            "expire_date <= %s ORDER BY expire_date OFFSET %s ROWS FETCH NEXT 1 ROWS ONLY"
        )
        for field in dataclasses.fields(compiled):
            value = getattr(compiled, field.name)
            assert not isinstance(value, str) or "LIMIT" not in value

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
