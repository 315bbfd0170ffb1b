from __future__ import annotations

import datetime

import pytest
from django.db import connections
from django.utils import timezone

from django_sql_sessions.dialects import statements
from django_sql_sessions.fields import KeyHashField
from django_sql_sessions.models import Session
from django_sql_sessions.storage import hash_key, session_table


def test_deconstruct_omits_the_fixed_length() -> None:
    field = KeyHashField(primary_key=True)
    field.set_attributes_from_name("key_hash")
    _name, path, _args, kwargs = field.deconstruct()
    assert path == "django_sql_sessions.fields.KeyHashField"
    assert "max_length" not in kwargs
    assert KeyHashField(**kwargs).max_length == 64


def test_column_type_per_vendor(alias: str) -> None:
    connection = connections[alias]
    column = Session._meta.get_field("key_hash").db_type(connection)
    expected = {
        "mysql": "char(64) CHARACTER SET ascii COLLATE ascii_bin",
        "microsoft": "nchar(64)",
    }.get(connection.vendor, "char(64)")
    assert column == expected


def test_only_the_indexes_the_store_uses(alias: str) -> None:
    """The primary key, the expiry and user indexes: no PostgreSQL _like index."""
    connection = connections[alias]
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, session_table())
    indexed = sorted(
        tuple(c["columns"])
        for c in constraints.values()
        if c["index"] or c["primary_key"] or c["unique"]
    )
    assert indexed == [("expire_date",), ("key_hash",), ("user_id",)]


def test_mysql_key_column_is_ascii_binary(alias: str) -> None:
    connection = connections[alias]
    if connection.vendor != "mysql":
        pytest.skip("MySQL/MariaDB only")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT character_set_name, collation_name, character_maximum_length "
            "FROM information_schema.columns "
            "WHERE table_schema = DATABASE() AND table_name = %s AND column_name = 'key_hash'",
            [session_table()],
        )
        assert cursor.fetchone() == ("ascii", "ascii_bin", 64)


def test_key_lookups_use_the_primary_key(alias: str) -> None:
    """The parameter's type must not force a conversion that skips the index."""
    from django_sql_sessions.backends.db import SessionStore

    store = SessionStore()
    store["x"] = 1
    store.save()
    assert store.session_key is not None
    connection = connections[alias]
    load = statements(connection, session_table()).load
    values = {
        "key_hash": hash_key(store.session_key),
        "now": connection.ops.adapt_datetimefield_value(timezone.now()),
        "born_after": connection.ops.adapt_datetimefield_value(
            timezone.now() - datetime.timedelta(days=1)
        ),
    }
    params = [values[name] for name in load.names]
    explain = {
        "postgresql": "EXPLAIN ",
        "mysql": "EXPLAIN FORMAT=JSON ",
        "sqlite": "EXPLAIN QUERY PLAN ",
    }[connection.vendor]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET enable_seqscan = off")
        # EXPLAIN takes the SELECT without MariaDB's per-statement setting.
        select = (
            load.format.split(" FOR ", 1)[1] if load.format.startswith("SET ") else load.format
        )
        cursor.execute(explain + select, params)
        plan = " ".join(str(column) for row in cursor.fetchall() for column in row)
        if connection.vendor == "postgresql":
            cursor.execute("RESET enable_seqscan")
    expected = {
        "postgresql": "_pkey",
        "mysql": '"key": "PRIMARY"',
        "sqlite": "INDEX sqlite_autoindex",
    }[connection.vendor]
    assert expected in plan


def test_a_users_sessions_are_found_through_the_user_index(alias: str) -> None:
    """The query behind list_sessions() and the revoke functions."""
    from django.contrib.auth import SESSION_KEY

    from django_sql_sessions.backends.db import SessionStore
    from django_sql_sessions.models import USER_INDEX_NAME, Session

    for user in range(20):
        store = SessionStore()
        store[SESSION_KEY] = str(user)
        store.save()
    connection = connections[alias]
    query = Session.objects.active().filter(user_id="7")
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # A 20-row table is cheaper to scan; the point is that the index
            # serves the query when it matters.
            cursor.execute("SET enable_seqscan = off")
        try:
            plan = query.explain()
        finally:
            if connection.vendor == "postgresql":
                cursor.execute("RESET enable_seqscan")
    assert USER_INDEX_NAME in plan
