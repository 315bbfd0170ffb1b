"""
Prepared statements on PostgreSQL (psycopg 3): the engine prepares its
statements once per connection, outside transactions, unless
SQL_SESSIONS_PREPARE = False; a statement the server session lost (as behind
PgBouncer in transaction mode, simulated here by deallocating it behind
psycopg's back) is sent again unprepared, and preparing stops for the alias.
PgBouncer itself: tests/test_pgbouncer.py.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import DatabaseError, connections, transaction
from django.test.utils import CaptureQueriesContext

from django_sql_sessions import cursors
from django_sql_sessions.backends.db import SessionStore
from django_sql_sessions.checks import check_settings
from django_sql_sessions.dialects import DIALECTS, dialect
from django_sql_sessions.exceptions import SessionPreparedStatementLost
from django_sql_sessions.sql import Statement
from tests.conftest import _use_alias, required

POSTGRESQL = "postgresql"
POOL = "postgresql_pool"
# psycopg names statements _pg3_<n>; the engine starts n at random (see
# cursors._new_postgresql_cursor()), far above psycopg's 0, 1, 2...
RANDOM_NAMES = 2**20


def _skip_unless(alias: str, settings: Any) -> None:
    if alias not in settings.DATABASES:
        reason = f"{alias} not configured: POSTGRES_HOST is not set"
        if alias == POOL and POSTGRESQL in settings.DATABASES:
            reason = "psycopg_pool is not installed (pip install 'psycopg[pool]')"
        if required("postgresql"):
            pytest.fail(f"{reason}, and SQL_SESSIONS_TEST_REQUIRE requires postgresql.")
        pytest.skip(reason)


@pytest.fixture
def pg(django_db_setup: None, django_db_blocker: Any, settings: Any) -> Iterator[str]:
    """The PostgreSQL alias as SQL_SESSIONS_DB_ALIAS, on a new connection each test."""
    _skip_unless(POSTGRESQL, settings)
    connections[POSTGRESQL].close()
    cursors.unprepared.discard(POSTGRESQL)
    yield from _use_alias(POSTGRESQL, django_db_blocker, settings)
    cursors.unprepared.discard(POSTGRESQL)
    connections[POSTGRESQL].close()


@pytest.fixture
def pooled(django_db_setup: None, django_db_blocker: Any, settings: Any) -> Iterator[str]:
    """The PostgreSQL test database through Django's psycopg pool (tests/settings.py)."""
    _skip_unless(POOL, settings)
    cursors.unprepared.discard(POOL)
    yield from _use_alias(POOL, django_db_blocker, settings)
    cursors.unprepared.discard(POOL)
    connections[POOL].close()
    connections[POOL].close_pool()  # type: ignore[attr-defined]


@pytest.fixture
def warnings(caplog: pytest.LogCaptureFixture) -> Iterator[Callable[[], list[str]]]:
    with caplog.at_level(logging.WARNING, logger="django_sql_sessions"):
        yield lambda: [r.getMessage() for r in caplog.records if r.name == "django_sql_sessions"]


def prepared(alias: str) -> dict[str, str]:
    """The prepared statements of the alias's server session, by name."""
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT name, statement FROM pg_prepared_statements")
        return dict(cursor.fetchall())


def ours(alias: str) -> dict[str, str]:
    """Those of the session table."""
    from tests.settings import SQL_SESSIONS_TABLE

    return {name: sql for name, sql in prepared(alias).items() if SQL_SESSIONS_TABLE in sql}


def deallocate_behind_psycopgs_back(alias: str) -> list[str]:
    """
    What a pooler in transaction mode does to a client: its next statement
    reaches a server session without its prepared statements. ("DEALLOCATE
    name", unlike "DEALLOCATE ALL", leaves psycopg's record of them.)
    """
    names = list(ours(alias))
    with connections[alias].cursor() as cursor:
        for name in names:
            cursor.execute(f'DEALLOCATE "{name}"')
    return names


def a_session(**data: Any) -> str:
    store = SessionStore()
    store.update(data)
    store.save()
    assert store.session_key is not None
    return store.session_key


def increment(session_key: str) -> None:
    store = SessionStore(session_key)
    store["n"] += 1
    store.save()


def test_the_engines_statements_are_prepared_once_per_connection(pg: str) -> None:
    session_key = a_session(n=0)
    for _ in range(3):
        increment(session_key)
    assert SessionStore(session_key).load() == {"n": 3}
    statements = ours(pg)
    texts = sorted(statements.values())
    # The insert, the load and the update, each prepared once.
    assert len(texts) == len(set(texts)) == 3, texts
    assert any(text.startswith("INSERT") for text in texts)
    assert any("SELECT data, expire_date, version, updated_at" in text for text in texts)
    assert any(text.startswith("UPDATE") for text in texts)
    assert all(int(name.rsplit("_", 1)[1]) > RANDOM_NAMES for name in statements), statements
    # Django's own queries stay unprepared (client-side binding).
    assert SessionStore().exists(session_key)
    count_before = len(prepared(pg))
    with connections[pg].cursor() as cursor:
        cursor.execute("SELECT 1 + %s", [1])
    assert len(prepared(pg)) == count_before


def test_each_connection_names_its_statements_apart(pg: str) -> None:
    # Two server sessions never share a name for different statements: a
    # pooler that swaps them makes a statement fail, never run another.
    a_session(n=0)
    first = set(ours(pg))
    connections[pg].close()
    a_session(n=0)
    second = set(ours(pg))
    assert first
    assert second
    assert not first & second


def test_the_setting_turns_it_off(pg: str, settings: Any) -> None:
    settings.SQL_SESSIONS_PREPARE = False
    session_key = a_session(n=0)
    increment(session_key)
    assert SessionStore(session_key).load() == {"n": 1}
    assert ours(pg) == {}
    _raw, (_cursor, prepares) = getattr(connections[pg], cursors._KEPT_CURSOR)
    assert not prepares
    assert connections[pg].connection.prepare_threshold is None  # Django's default, untouched


def test_the_setting_is_read_when_a_connection_is_made(pg: str, settings: Any) -> None:
    settings.SQL_SESSIONS_PREPARE = False
    a_session(n=0)
    assert ours(pg) == {}
    settings.SQL_SESSIONS_PREPARE = True
    connections[pg].close()
    a_session(n=0)
    assert ours(pg)


def test_an_invalid_setting_is_check_e019(settings: Any) -> None:
    settings.SQL_SESSIONS_PREPARE = "yes"
    found = [m for m in check_settings(None) if m.id == "django_sql_sessions.E019"]
    assert len(found) == 1
    assert "SQL_SESSIONS_PREPARE is 'yes'" in found[0].msg
    assert found[0].hint is not None
    assert "False" in found[0].hint


def test_statements_inside_a_transaction_are_not_prepared(pg: str, warnings: Any) -> None:
    session_key = a_session(n=0)
    with transaction.atomic(using=pg):
        increment(session_key)
        assert SessionStore(session_key).load() == {"n": 1}
    assert not any(text.startswith("SELECT") for text in ours(pg).values())
    # Prepared outside, then lost: inside a transaction nothing uses the
    # prepared statement, so nothing fails and the transaction is intact.
    assert SessionStore(session_key).load() == {"n": 1}
    assert deallocate_behind_psycopgs_back(pg)
    with transaction.atomic(using=pg):
        increment(session_key)
        assert SessionStore(session_key).load() == {"n": 2}
    assert warnings() == []
    assert pg not in cursors.unprepared


def test_a_lost_statement_is_sent_again_unprepared_and_preparing_stops(
    pg: str, warnings: Any
) -> None:
    session_key = a_session(n=0)
    increment(session_key)
    lost = deallocate_behind_psycopgs_back(pg)
    assert lost
    # The load, then the save: each statement psycopg believes prepared fails
    # on the server, and is sent again, once, unprepared.
    increment(session_key)
    assert SessionStore(session_key).load() == {"n": 2}
    assert pg in cursors.unprepared
    (message,) = warnings()
    assert repr(pg) in message
    assert "PgBouncer" in message
    assert "SQL_SESSIONS_PREPARE = False" in message
    assert "does not exist" in message
    # Nothing is prepared from now on, on this connection or a new one.
    increment(session_key)
    connections[pg].close()
    increment(session_key)
    a_session(n=0)
    assert ours(pg) == {}
    assert SessionStore(session_key).load() == {"n": 4}
    assert len(warnings()) == 1


def test_a_reconnect_prepares_again(pg: str) -> None:
    session_key = a_session(n=0)
    first = ours(pg)
    connections[pg].close()
    increment(session_key)
    assert SessionStore(session_key).load() == {"n": 1}
    again = ours(pg)
    assert again
    assert not set(first) & set(again)


class Counted:
    """cursors._send_once, counting its calls."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        original = cursors._send_once

        def send_once(*args: Any) -> Any:
            self.calls += 1
            return original(*args)

        monkeypatch.setattr(cursors, "_send_once", send_once)


# A real "prepared statement ... does not exist" (26000) from the server.
MISSING = Statement.of("EXECUTE no_such_prepared_statement")


def test_a_statement_that_fails_again_is_retried_once(
    pg: str, monkeypatch: pytest.MonkeyPatch, warnings: Any
) -> None:
    counted = Counted(monkeypatch)
    with pytest.raises(DatabaseError, match="does not exist") as raised:
        cursors.execute(connections[pg], MISSING)
    assert counted.calls == 2
    assert not isinstance(raised.value, SessionPreparedStatementLost)
    assert pg in cursors.unprepared
    assert len(warnings()) == 1


def test_inside_a_transaction_the_error_names_the_cause_and_the_fix(
    pg: str, monkeypatch: pytest.MonkeyPatch, warnings: Any
) -> None:
    counted = Counted(monkeypatch)
    with transaction.atomic(using=pg):
        with pytest.raises(SessionPreparedStatementLost) as raised:
            cursors.execute(connections[pg], MISSING)
        assert connections[pg].needs_rollback or connections[pg].in_atomic_block
        transaction.set_rollback(True, using=pg)
    assert counted.calls == 1  # PostgreSQL aborted the transaction: no retry
    message = str(raised.value)
    assert repr(pg) in message
    assert "PgBouncer" in message
    assert "SQL_SESSIONS_PREPARE = False" in message
    assert "max_prepared_statements" in message
    assert dialect(connections[pg]).lost_prepared_statement(raised.value.__cause__)  # type: ignore[arg-type]
    # The connection works on after the rollback, unprepared.
    session_key = a_session(n=0)
    assert SessionStore(session_key).load() == {"n": 0}
    assert ours(pg) == {}


def test_the_dialect_tells_a_lost_prepared_statement(pg: str) -> None:
    chosen = dialect(connections[pg])
    with connections[pg].cursor() as cursor:
        cursor.execute("PREPARE twice AS SELECT 1")
        with pytest.raises(DatabaseError) as already:
            cursor.execute("PREPARE twice AS SELECT 1")
        cursor.execute("DEALLOCATE twice")
        with pytest.raises(DatabaseError) as missing:
            cursor.execute("EXECUTE twice")
        with pytest.raises(DatabaseError) as other:
            cursor.execute("SELECT * FROM no_such_table_here")
    assert chosen.lost_prepared_statement(already.value)
    assert chosen.lost_prepared_statement(missing.value)
    assert not chosen.lost_prepared_statement(other.value)
    for vendor in ("sqlite", "mysql", "microsoft"):
        assert not DIALECTS[vendor].lost_prepared_statement(missing.value)


def test_queries_stay_observable_through_djangos_cursor(pg: str) -> None:
    seen: list[str] = []

    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        seen.append(sql)
        return execute(sql, params, many, context)

    connection = connections[pg]
    with connection.execute_wrapper(wrapper):
        session_key = a_session(n=0)
        increment(session_key)
    assert [sql.split()[0] for sql in seen] == ["INSERT", "SELECT", "UPDATE"]
    with CaptureQueriesContext(connection) as queries:
        assert SessionStore(session_key).load() == {"n": 1}
    (query,) = queries.captured_queries
    assert query["sql"].startswith("SELECT data, expire_date")


def test_the_async_api_prepares_too(pg: str) -> None:
    async def contract() -> str:
        store = SessionStore()
        await store.aset("n", 1)
        await store.asave()
        loaded = SessionStore(store.session_key)
        assert await loaded.aget("n") == 1
        await loaded.aset("n", 2)
        await loaded.asave()
        assert await SessionStore(store.session_key).aload() == {"n": 2}
        assert store.session_key is not None
        return store.session_key

    async_to_sync(contract)()
    texts = ours(pg).values()
    assert any(text.startswith("INSERT") for text in texts)
    assert any(text.startswith("UPDATE") for text in texts)


def test_djangos_pool(pooled: str) -> None:
    session_key = a_session(n=0)
    for _ in range(5):
        connections[pooled].close()  # back to the pool
        increment(session_key)
    assert SessionStore(session_key).load() == {"n": 5}
    # Another thread's connection object takes pooled driver connections,
    # whose server sessions already hold statements prepared through the
    # first: psycopg knows them, so none is prepared twice.
    errors: list[BaseException] = []

    def in_another_thread() -> None:
        try:
            for _ in range(5):
                increment(session_key)
                connections[pooled].close()
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=in_another_thread)
    thread.start()
    thread.join()
    assert errors == []
    assert SessionStore(session_key).load() == {"n": 10}
    assert ours(pooled)
    assert pooled not in cursors.unprepared
