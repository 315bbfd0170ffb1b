"""
CockroachDB (django-cockroachdb) and TiDB (django-tidb) connection objects
that never connect, for compiling SQL with those backends' own operations and
schema editors where no server is available, as tests/mssql_offline.py does
for SQL Server. See docs/scaling.rst, "Distributed SQL".
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import pytest
from django.db import connections
from django.db.migrations.loader import MigrationLoader

from django_sql_sessions.routers import APP_LABEL
from tests.mssql_offline import OFFLINE_SETTINGS


def cockroachdb_connection() -> Any:
    wrapper = _backend("django_cockroachdb", "cockroachdb_offline")
    connection = wrapper(
        {**OFFLINE_SETTINGS, "ENGINE": "django_cockroachdb"}, alias="cockroachdb_offline"
    )
    # The version the features ask the server for (django-cockroachdb 6.1
    # needs 24.3 or later).
    connection.__dict__["cockroachdb_version"] = (25, 4, 0)
    # Its schema editor opens a connection on entering, whether or not it
    # only collects SQL; nothing here may reach a server.
    connection.ensure_connection = lambda: None
    connection.get_new_connection = _refuse
    # Django's PostgreSQL schema editor renders DDL parameters through a
    # cursor of the connection (psycopg's mogrify).
    connection.ops.compose_sql = _compose_integers
    return connection


def tidb_connection() -> Any:
    wrapper = _backend("django_tidb", "tidb_offline")
    connection = wrapper({**OFFLINE_SETTINGS, "ENGINE": "django_tidb"}, alias="tidb_offline")
    # The server variables django-tidb and Django's MySQL backend read once
    # per connection object.
    server = {
        "version": "8.0.11-TiDB-v8.5.1",
        "sql_mode": "STRICT_TRANS_TABLES",
        "default_storage_engine": "InnoDB",
        "sql_auto_is_null": False,
        "lower_case_table_names": False,
        "has_zoneinfo_database": True,
    }
    connection.__dict__["tidb_server_data"] = server
    connection.__dict__["mysql_server_data"] = server
    connection.ensure_connection = _refuse
    connection.get_new_connection = _refuse

    class OfflineSchemaEditor(connection.SchemaEditorClass):  # type: ignore[name-defined,misc]
        def quote_value(self, value: object) -> str:
            # Django's MySQL schema editor escapes through the driver's
            # connection.
            return _integer_literal(value)

    connection.SchemaEditorClass = OfflineSchemaEditor
    return connection


def migration_sql(connection: Any) -> list[str]:
    """
    The SQL of every migration of this app, in order, as sqlmigrate prints it
    for this connection (comments left out), without a database: Django's
    MigrationExecutor would read django_migrations first.
    """
    loader = MigrationLoader(None, ignore_no_migrations=True)
    (leaf,) = loader.graph.leaf_nodes(APP_LABEL)
    collected: list[str] = []
    # Operations look their connection up by alias (can_migrate, routers).
    connections[connection.alias] = connection
    try:
        for key in loader.graph.forwards_plan(leaf):
            if key[0] != APP_LABEL:
                continue
            migration = loader.graph.nodes[key]
            state = loader.project_state(key, at_end=False)
            with connection.schema_editor(collect_sql=True, atomic=migration.atomic) as editor:
                migration.apply(state, editor, collect_sql=True)
            collected += [sql for sql in editor.collected_sql if not sql.startswith("--")]
    finally:
        del connections[connection.alias]
    return collected


@contextmanager
def as_alias(alias: str, connection: Any) -> Iterator[None]:
    """Let ``connections[alias]`` be ``connection`` for a while."""
    previous = connections[alias]
    connections[alias] = connection
    try:
        yield
    finally:
        connections[alias] = previous


def _backend(module: str, requirement: str) -> Any:
    try:
        base = importlib.import_module(f"{module}.base")
    except Exception as exc:  # ImportError, or ImproperlyConfigured without its driver
        reason = f"{module} cannot be imported here ({exc})"
        if requirement in os.environ.get("SQL_SESSIONS_TEST_REQUIRE", ""):
            pytest.fail(reason)
        pytest.skip(reason)
    return base.DatabaseWrapper


def _refuse(*args: Any, **kwargs: Any) -> NoReturn:
    raise AssertionError("An offline connection must not connect.")


def _compose_integers(sql: str, params: Any) -> str:
    return sql % tuple(_integer_literal(value) for value in params or ())


def _integer_literal(value: object) -> str:
    # The one parameter the migrations have is the version column's default
    # of 1; any other type fails here rather than being quoted by guesswork.
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"Offline DDL only renders integer parameters, not {value!r}.")
    return str(value)
