"""
A sessions alias on a server that refuses writes: check E015 and the
SessionDatabaseReadOnly error, on connections whose session is read-only
(the *_read_only aliases of tests/settings.py: a server made read-only would
be read-only for every other user of the shared test servers too), and on
SQL Server offline. tests/cluster/test_pg_standby.py does the same on a real
PostgreSQL standby.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.core import checks
from django.db import (
    DatabaseError,
    InternalError,
    ProgrammingError,
    close_old_connections,
    connections,
    transaction,
)

from django_sql_sessions import exceptions
from django_sql_sessions.checks import check_server
from django_sql_sessions.cursors import execute
from django_sql_sessions.dialects import DIALECTS, dialect
from django_sql_sessions.exceptions import SessionDatabaseReadOnly
from django_sql_sessions.sql import Statement
from tests.distributed_offline import cockroachdb_connection
from tests.helpers import error_codes, saved_session
from tests.mssql_offline import offline_connection

# The read-only alias of each server, and what E015 says about it.
READ_ONLY = {
    "postgresql": ("postgresql_read_only", "default_transaction_read_only is on", "25006"),
    "mysql": ("mysql_read_only", "tx_read_only", 1792),
}
ENV = {"postgresql": "POSTGRES_HOST", "mysql": "MYSQL_HOST"}


def read_only_params() -> list[Any]:
    params = []
    for vendor, (alias, why, code) in READ_ONLY.items():
        skip = pytest.mark.skip(reason=f"{vendor} not configured: {ENV[vendor]} is not set")
        marks = [] if alias in settings.DATABASES else [skip]
        params.append(pytest.param((alias, why, code), id=vendor, marks=marks))
    return params


@pytest.fixture(params=read_only_params())
def read_only_alias(
    request: pytest.FixtureRequest,
    django_db_setup: None,
    django_db_blocker: Any,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[str, str, object]]:
    """
    (alias, why E015 says it is read-only, the driver's error code), the
    alias set as SQL_SESSIONS_DB_ALIAS.
    """
    alias = request.param[0]
    monkeypatch.setattr(exceptions, "_reported", set())
    settings.SQL_SESSIONS_DB_ALIAS = alias
    with django_db_blocker.unblock():
        yield request.param
        connections[alias].close()


def test_the_check_is_registered_for_databases() -> None:
    registered = checks.registry.registry.get_checks(include_deployment_checks=True)
    assert {check_server} <= set(registered)
    assert checks.Tags.database in getattr(check_server, "tags", ())


def test_check_on_a_read_only_connection(read_only_alias: tuple[str, str, object]) -> None:
    alias, why, _code = read_only_alias
    [error] = check_server(None, databases=[alias])
    assert error.id == "django_sql_sessions.E015"
    assert error.msg.startswith(f"SQL_SESSIONS_DB_ALIAS {alias!r} is a standby or read-only")
    assert why in error.msg
    assert "primary" in str(error.hint)
    # Only with the database tag, and for the sessions alias.
    assert check_server(None, databases=None) == []
    assert check_server(None, databases=["default"]) == []


def test_a_save_on_a_read_only_connection(
    read_only_alias: tuple[str, str, object], caplog: pytest.LogCaptureFixture
) -> None:
    alias, _why, code = read_only_alias
    with caplog.at_level(logging.ERROR, logger="django_sql_sessions"):
        for _ in range(2):
            with pytest.raises(SessionDatabaseReadOnly) as raised:
                saved_session(cart=[1])
    message = str(raised.value)
    assert message.startswith(f"SQL_SESSIONS_DB_ALIAS {alias!r} is a standby or read-only")
    assert "it refused a write: " in message
    assert code in error_codes(raised.value.__cause__)
    logged = [r.getMessage() for r in caplog.records if r.name == "django_sql_sessions"]
    assert logged == [message]


def test_a_kept_connection_that_refused_a_write_is_closed_after_the_request(
    read_only_alias: tuple[str, str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A persistent connection (CONN_MAX_AGE) that a proxy sent to a server
    # that refuses writes (an old primary back as a replica after a
    # failover, tests/cluster/test_patroni_failover.py) still answers
    # Django's usability check, so Django would keep it and every write on
    # it would fail until CONN_MAX_AGE ran out. Closed at the end of the
    # request instead, the next request connects again, to wherever the
    # proxy sends it now.
    alias = read_only_alias[0]
    connection = connections[alias]
    connection.close()
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 60)
    close_old_connections()  # a request starts
    with pytest.raises(SessionDatabaseReadOnly):
        saved_session(cart=[1])
    assert connection.connection is not None  # the request may go on using it
    close_old_connections()  # the request ends
    assert connection.connection is None
    # A connection that refused nothing is kept, as Django keeps it.
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    close_old_connections()
    assert connection.connection is not None


@pytest.mark.parametrize("alias", ["postgresql", "mysql"])
def test_no_error_where_writes_are_accepted(
    alias: str, django_db_setup: None, django_db_blocker: Any, settings: Any
) -> None:
    if alias not in settings.DATABASES:
        pytest.skip(f"{alias} not configured: {ENV[alias]} is not set")
    settings.SQL_SESSIONS_DB_ALIAS = alias
    with django_db_blocker.unblock():
        assert check_server(None, databases=[alias]) == []


def test_a_read_only_transaction_on_postgresql(
    django_db_setup: None, django_db_blocker: Any, settings: Any
) -> None:
    if "postgresql" not in settings.DATABASES:
        pytest.skip("postgresql not configured: POSTGRES_HOST is not set")
    settings.SQL_SESSIONS_DB_ALIAS = "postgresql"
    connection = connections["postgresql"]
    with django_db_blocker.unblock(), transaction.atomic(using="postgresql"):
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION READ ONLY")
        assert dialect(connection).why_read_only(connection) == "transaction_read_only is on"
        transaction.set_rollback(True, using="postgresql")


class TestSqlServerOffline:
    # What pyodbc raises for a write to a read-only database or a readable
    # secondary replica.
    REFUSED = (
        "42000",
        "[42000] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Failed to update "
        'database "sessions" because the database is read-only. (3906) (SQLExecDirectW)',
    )
    DUPLICATE = (
        "23000",
        "[23000] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Violation of PRIMARY "
        "KEY constraint. (2627) (SQLExecDirectW)",
    )

    class Cursor:
        def __init__(self, row: tuple[Any, ...] = (), error: Exception | None = None) -> None:
            self.row, self.error, self.sql = row, error, ""

        def __enter__(self) -> TestSqlServerOffline.Cursor:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def execute(self, sql: str, params: object = None) -> None:
            self.sql = sql
            if self.error:
                raise self.error

        def fetchone(self) -> tuple[Any, ...]:
            return self.row

    @pytest.mark.parametrize(
        ("updateability", "expected"),
        [
            ("READ_ONLY", "DATABASEPROPERTYEX(DB_NAME(), 'Updateability') is READ_ONLY"),
            ("READ_WRITE", None),
        ],
    )
    def test_check(
        self, monkeypatch: pytest.MonkeyPatch, updateability: str, expected: str | None
    ) -> None:
        connection = offline_connection()
        cursor = self.Cursor(row=(updateability,))
        monkeypatch.setattr(connection, "cursor", lambda: cursor)
        sql_server = dialect(connection)
        assert sql_server.why_read_only(connection) == expected
        assert cursor.sql == sql_server.UPDATEABILITY  # type: ignore[attr-defined]

    def test_refusal_as_pyodbc_and_django_raise_it(self) -> None:
        offline_connection()  # skips, or fails when required, without pyodbc
        import pyodbc

        refused = pyodbc.ProgrammingError(*self.REFUSED)
        sql_server = DIALECTS["microsoft"]
        assert sql_server.refused_as_read_only(refused)
        wrapped = ProgrammingError(*refused.args)
        wrapped.__cause__ = refused
        assert sql_server.refused_as_read_only(wrapped)
        assert not sql_server.refused_as_read_only(pyodbc.IntegrityError(*self.DUPLICATE))
        assert not DIALECTS["postgresql"].refused_as_read_only(refused)

    def test_a_refused_write_through_djangos_cursor(
        self, monkeypatch: pytest.MonkeyPatch, settings: Any
    ) -> None:
        # SQL Server statements always go through Django's cursor, which
        # raises Django's error with pyodbc's as its cause.
        connection = offline_connection()
        monkeypatch.setattr(exceptions, "_reported", set())
        error = ProgrammingError(*self.REFUSED)
        monkeypatch.setattr(connection, "cursor", lambda: self.Cursor(error=error))
        with pytest.raises(SessionDatabaseReadOnly) as raised:
            execute(connection, Statement.of("DELETE FROM t WHERE k = %(k)s"), k=1)
        assert raised.value.__cause__ is error
        assert "SQL_SESSIONS_DB_ALIAS 'mssql_offline' is a standby or read-only" in str(
            raised.value
        )
        assert "(3906)" in str(raised.value)
        assert isinstance(raised.value, DatabaseError)


def test_cockroachdb_refusals_are_postgresqls(monkeypatch: pytest.MonkeyPatch) -> None:
    # django-cockroachdb speaks psycopg; CockroachDB refuses a write in a
    # read-only transaction with PostgreSQL's SQLSTATE. It has no standby to
    # connect to, so check E015 asks it nothing.
    import psycopg

    refused = psycopg.errors.ReadOnlySqlTransaction(
        "cannot execute INSERT in a read-only transaction"
    )
    wrapped = InternalError(*refused.args)
    wrapped.__cause__ = refused
    cockroachdb = DIALECTS["cockroachdb"]
    assert cockroachdb.refused_as_read_only(wrapped)
    assert not cockroachdb.refused_as_read_only(psycopg.errors.UniqueViolation())
    connection = cockroachdb_connection()
    monkeypatch.setattr(connection, "cursor", lambda: pytest.fail("a query was sent"))
    assert dialect(connection).why_read_only(connection) is None
