from __future__ import annotations

import logging

import pytest
from django.db import DatabaseError, connections

from django_sql_sessions import exceptions
from django_sql_sessions.cursors import fetch_one
from django_sql_sessions.dialects import for_vendor
from django_sql_sessions.exceptions import SessionTableMissing
from django_sql_sessions.sql import Statement


@pytest.fixture(autouse=True)
def nothing_reported_yet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(exceptions, "_reported", set())


def test_a_statement_on_a_missing_table_names_the_alias_and_the_command(
    alias: str, caplog: pytest.LogCaptureFixture
) -> None:
    statement = Statement.of("SELECT data FROM not_migrated_sessions WHERE key_hash = %(k)s")
    connection = connections[alias]
    with caplog.at_level(logging.ERROR, logger="django_sql_sessions"):
        for _ in range(2):
            with pytest.raises(SessionTableMissing) as raised:
                fetch_one(connection, statement, k="x")
    message = str(raised.value)
    assert message.startswith(
        f"Database {alias!r} has no table 'not_migrated_sessions': its migrations have not "
        f"run there. Run 'python manage.py migrate --database={alias}' to create it"
    )
    assert isinstance(raised.value, DatabaseError)  # as the driver's error was
    assert isinstance(raised.value.__cause__, DatabaseError)
    # Logged once per process, not once per request.
    assert [record.getMessage() for record in caplog.records] == [message]


def test_other_errors_are_left_alone(alias: str) -> None:
    with pytest.raises(DatabaseError) as raised:
        fetch_one(connections[alias], Statement.of("SELECT no_such_column FROM django_session"))
    assert not isinstance(raised.value, SessionTableMissing)


class DriverError(Exception):
    pass


@pytest.mark.parametrize(
    ("vendor", "error", "table"),
    [
        ("sqlite", DriverError("no such table: web_sessions"), "web_sessions"),
        # psycopg2 says pgcode, psycopg 3 sqlstate.
        (
            "postgresql",
            type("UndefinedTable", (Exception,), {"pgcode": "42P01"})(
                'relation "web_sessions" does not exist\nLINE 1: SELECT ...'
            ),
            "web_sessions",
        ),
        (
            "cockroachdb",
            type("UndefinedTable", (Exception,), {"sqlstate": "42P01"})(
                'relation "web_sessions" does not exist'
            ),
            "web_sessions",
        ),
        ("mysql", DriverError(1146, "Table 'site.web_sessions' doesn't exist"), "web_sessions"),
        (
            "microsoft",
            DriverError(
                "42S02",
                "[42S02] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Invalid object "
                "name 'web_sessions'. (208) (SQLExecDirectW)",
            ),
            "web_sessions",
        ),
        ("microsoft", DriverError("42000", "[42000] Incorrect syntax near 'x'. (102)"), None),
        ("mysql", DriverError(1054, "Unknown column 'x' in 'field list'"), None),
        ("sqlite", DriverError("no such column: x"), None),
        ("oracle", DriverError("ORA-00942: table or view does not exist"), None),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_each_databases_words_for_a_missing_table(
    vendor: str, error: Exception, table: str | None
) -> None:
    assert for_vendor(vendor).missing_table(error) == table
    # As Django raises it: its own exception, the driver's as the cause.
    wrapped = DatabaseError(*error.args)
    wrapped.__cause__ = error
    assert for_vendor(vendor).missing_table(wrapped) == table
