"""
Behind an ASGI server: requests through Django's own ASGIHandler (not the
test AsyncClient, whose handler has neither ASGIHandler's per-request thread
nor its sender), in this process.

- The cached engine serves a session read with no database connection at
  all, where the db engine opens one per request (CONN_MAX_AGE = 0), and
  with no new connection to Redis.
- Persistent connections on the sessions alias under ASGI are warned about,
  once per process; not under WSGI, and not with CONN_MAX_AGE = 0.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from http.cookies import SimpleCookie
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.core.signals import request_finished
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created
from django.db.backends.sqlite3.base import DatabaseWrapper as SQLiteWrapper
from django.test import Client

from django_sql_sessions import caching, deployment
from tests.conftest import CACHED_ENGINE, _use_alias, clear_session_cache, ping_redis, required


async def _asgi_get(handler: ASGIHandler, path: str, cookie: str) -> tuple[int, bytes, str]:
    """One GET through the handler: its status, body and sessionid cookie (if set)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"cookie", f"sessionid={cookie}".encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    sent: list[Mapping[str, Any]] = []
    done = asyncio.Event()
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await done.wait()  # the client stays connected until the response is sent
        return {"type": "http.disconnect"}

    async def send(message: Mapping[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            done.set()

    await handler(scope, receive, send)
    [start] = [m for m in sent if m["type"] == "http.response.start"]
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    cookies = SimpleCookie()
    for name, value in start["headers"]:
        if name.lower() == b"set-cookie":
            cookies.load(value.decode())
    new_cookie = cookies["sessionid"].value if "sessionid" in cookies else ""
    return start["status"], body, new_cookie


def asgi_get(path: str, cookie: str = "") -> tuple[int, bytes, str]:
    return asyncio.run(_asgi_get(ASGIHandler(), path, cookie))


@pytest.fixture(autouse=True)
def close_request_threads_in_memory_sqlite() -> Iterator[None]:
    """
    Close, at the end of each request, the connections a request's own thread
    opened to the in-memory SQLite test database. Django never closes those
    (it would drop the database), so every ASGI request would leave one
    behind, which Python 3.13 reports as a ResourceWarning when it is
    collected. The database lives on in the test's own connection.
    """

    def close(**kwargs: Any) -> None:
        if threading.current_thread() is threading.main_thread():
            return
        for connection in connections.all(initialized_only=True):
            if isinstance(connection, SQLiteWrapper) and connection.is_in_memory_db():
                BaseDatabaseWrapper.close(connection)

    request_finished.connect(close, weak=False)
    yield
    request_finished.disconnect(close)


@pytest.fixture
def opened(alias: str) -> Iterator[list[str]]:
    """The alias of every database connection opened, in any thread, while the test runs."""
    aliases: list[str] = []

    def record(sender: Any, connection: Any, **kwargs: Any) -> None:
        aliases.append(connection.alias)

    connection_created.connect(record, weak=False)
    yield aliases
    connection_created.disconnect(record)


@pytest.fixture
def redis_engine(settings: Any) -> Iterator[None]:
    settings.SESSION_ENGINE = CACHED_ENGINE
    settings.SESSION_CACHE_ALIAS = "sessions_redis"
    if "sessions_redis" not in settings.CACHES:
        pytest.skip("redis not configured: REDIS_URL is not set")
    ping_redis()
    caching.reset()
    yield
    clear_session_cache("sessions_redis")
    caching.reset()


READS = 5


def session_reads(alias: str, opened: list[str]) -> list[str]:
    """
    Create a session with one ASGI request, read it with READS more through an
    async view (request.session.aget()), and return the aliases of the
    connections those reads opened.
    """
    status, body, key = asgi_get("/async/write/hello/")
    assert (status, body) == (200, b"ok")
    assert key
    del opened[:]
    for _ in range(READS):
        assert asgi_get("/async/read/", key)[:2] == (200, b"hello")
    return [used for used in opened if used == alias]


def test_the_cached_engine_reads_with_no_database_connection(
    alias: str, redis_engine: None, opened: list[str]
) -> None:
    assert session_reads(alias, opened) == []


def test_the_cached_engine_reads_with_no_new_redis_connection(
    alias: str, redis_engine: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each request in a context of its own, as a server such as uvicorn
    # runs it: Django then makes a cache object per request, each with a
    # connection pool of its own, and the engine must not connect through it.
    import redis.connection

    connects: list[object] = []
    connect: Any = redis.connection.Connection._connect

    def counted(self: Any) -> Any:
        connects.append(self)
        return connect(self)

    monkeypatch.setattr(redis.connection.Connection, "_connect", counted)

    def in_new_context(path: str, cookie: str = "") -> tuple[int, bytes, str]:
        return contextvars.Context().run(asgi_get, path, cookie)

    status, _body, key = in_new_context("/async/write/hello/")
    assert status == 200
    in_new_context("/async/read/", key)
    del connects[:]
    for _ in range(READS):
        assert in_new_context("/async/read/", key)[:2] == (200, b"hello")
    assert connects == []


def test_the_db_engine_opens_a_connection_per_request(alias: str, opened: list[str]) -> None:
    # The control: the same requests on the db engine each open (and, with
    # CONN_MAX_AGE = 0, close) a connection in the request's own thread.
    assert connections[alias].settings_dict["CONN_MAX_AGE"] == 0
    assert session_reads(alias, opened) == [alias] * READS


def test_the_cached_engine_records_due_activity_through_the_database(
    alias: str, redis_engine: None, opened: list[str], settings: Any
) -> None:
    # The one read that needs the database: the activity UPDATE, once due.
    status, _body, key = asgi_get("/async/write/hello/")
    assert status == 200
    settings.SQL_SESSIONS_ACTIVITY_INTERVAL = 1
    time.sleep(1.1)
    del opened[:]
    assert asgi_get("/async/read/", key)[:2] == (200, b"hello")
    assert asgi_get("/async/read/", key)[:2] == (200, b"hello")
    assert [used for used in opened if used == alias] == [alias]


class Logged:
    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self.caplog = caplog

    @property
    def warnings(self) -> list[str]:
        return [r.getMessage() for r in self.caplog.records if r.name == "django_sql_sessions"]


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture) -> Iterator[Logged]:
    deployment.reset()
    with caplog.at_level(logging.WARNING, logger="django_sql_sessions"):
        yield Logged(caplog)
    deployment.reset()


def set_conn_max_age(monkeypatch: pytest.MonkeyPatch, alias: str, value: int | None) -> None:
    # The settings every connection object of the alias, in every thread, reads.
    monkeypatch.setitem(connections.settings[alias], "CONN_MAX_AGE", value)


@pytest.mark.parametrize("max_age", [60, None])
def test_persistent_connections_under_asgi_are_warned_about_once(
    alias: str,
    monkeypatch: pytest.MonkeyPatch,
    logged: Logged,
    max_age: int | None,
) -> None:
    set_conn_max_age(monkeypatch, alias, max_age)
    # A view that touches no database: no connection is left behind.
    for _ in range(3):
        assert asgi_get("/plain/")[:2] == (200, b"ok")
    [warning] = logged.warnings
    assert f"The sessions alias {alias!r} (SQL_SESSIONS_DB_ALIAS) has CONN_MAX_AGE = " in warning
    assert f"CONN_MAX_AGE = {max_age!r}, and this process serves requests through ASGI" in warning
    assert "opens a new connection" in warning
    assert "OPTIONS['pool']" in warning
    assert "Set CONN_MAX_AGE = 0" in warning


def test_no_warning_under_wsgi(
    alias: str, monkeypatch: pytest.MonkeyPatch, logged: Logged
) -> None:
    set_conn_max_age(monkeypatch, alias, 60)
    assert Client().get("/plain/").status_code == 200
    assert logged.warnings == []
    # The WSGI request did not use up the check: ASGI still warns.
    asgi_get("/plain/")
    assert len(logged.warnings) == 1


def test_no_warning_without_persistent_connections(alias: str, logged: Logged) -> None:
    assert connections.settings[alias]["CONN_MAX_AGE"] == 0
    asgi_get("/plain/")
    assert logged.warnings == []


# The PostgreSQL alias behind Django's psycopg pool (tests/settings.py): the
# engine keeps values per driver connection (cursors.kept) and sends statements
# on the driver connection itself, and a pooled alias hands out a different
# driver connection each time it is opened.
POOL = "postgresql_pool"


@pytest.fixture
def pooled_alias(django_db_setup: None, django_db_blocker: Any, settings: Any) -> Iterator[str]:
    if POOL not in settings.DATABASES:
        reason = "postgresql not configured: POSTGRES_HOST is not set"
        if "postgresql" in settings.DATABASES:
            reason = "psycopg_pool is not installed (pip install 'psycopg[pool]')"
        if required("postgresql"):
            pytest.fail(f"{reason}, and SQL_SESSIONS_TEST_REQUIRE requires postgresql.")
        pytest.skip(reason)
    yield from _use_alias(POOL, django_db_blocker, settings)
    # Pooled connections would keep the test database from being dropped.
    connections[POOL].close()
    pooled().close_pool()


def pooled() -> Any:
    """The pooled alias's connection: a PostgreSQL DatabaseWrapper, with its pool."""
    return connections[POOL]


def back_to_the_pool() -> None:
    connections[POOL].close()


def test_the_engine_on_pooled_connections(pooled_alias: str, engine: type[Any]) -> None:
    store = engine()
    store["a"] = 1
    store.save()
    key = store.session_key
    back_to_the_pool()
    loaded = engine(key)
    assert loaded["a"] == 1
    loaded["b"] = 2
    loaded.save()
    back_to_the_pool()
    loaded.cycle_key()
    loaded.save()
    new_key = loaded.session_key
    assert new_key != key
    back_to_the_pool()
    assert engine(new_key).load() == {"a": 1, "b": 2}
    assert not engine().exists(key)
    back_to_the_pool()
    engine().delete(new_key)
    assert engine(new_key).load() == {}
    assert pooled().pool.get_stats()["pool_size"] <= 4


def test_the_async_api_on_pooled_connections(pooled_alias: str, engine: type[Any]) -> None:
    async def contract() -> None:
        store = engine()
        await store.aset("a", 1)
        await store.asave()
        key = store.session_key
        await sync_to_async(back_to_the_pool)()
        loaded = engine(key)
        assert await loaded.aget("a") == 1
        await loaded.aset("b", 2)
        await loaded.asave()
        await loaded.acycle_key()
        await loaded.asave()
        new_key = loaded.session_key
        assert new_key != key
        await sync_to_async(back_to_the_pool)()
        assert await engine(new_key).aload() == {"a": 1, "b": 2}
        assert not await engine().aexists(key)
        await engine().adelete(new_key)
        assert await engine(new_key).aload() == {}

    async_to_sync(contract)()


def test_asgi_requests_share_the_pool(pooled_alias: str) -> None:
    # Each request's thread takes a connection from the pool and gives it
    # back when the request finishes: the pool does not grow with requests.
    status, _body, key = asgi_get("/async/write/hello/")
    assert status == 200
    for _ in range(20):
        assert asgi_get("/async/read/", key)[:2] == (200, b"hello")
    stats = pooled().pool.get_stats()
    assert stats["pool_size"] <= 4
    assert stats.get("connections_num", 0) <= 4
