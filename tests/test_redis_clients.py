"""
The cached engine's Redis client (caching._RedisStore): one per process and
cache configuration, shared by the cache objects Django makes per thread,
and made anew when CACHES changes.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from django_sql_sessions import caching
from tests.conftest import ping_redis, required


@pytest.fixture
def redis(settings: Any) -> Iterator[None]:
    if "sessions_redis" not in settings.CACHES:
        if required("redis"):
            pytest.fail("SQL_SESSIONS_TEST_REQUIRE requires redis, but REDIS_URL is not set.")
        pytest.skip("redis not configured: REDIS_URL is not set")
    ping_redis()
    settings.SESSION_CACHE_ALIAS = "sessions_redis"
    caching.reset()
    yield
    caching.reset()


def store_in_a_thread() -> Any:
    found: list[Any] = []
    thread = threading.Thread(target=lambda: found.append(caching.cached_table()._cache()))
    thread.start()
    thread.join()
    return found[0]


def test_threads_share_one_client(redis: None) -> None:
    stores = [store_in_a_thread() for _ in range(3)]
    # Django made a cache object per thread; the engine made one client.
    assert len({id(store.cache) for store in stores}) == 3
    assert len({id(store.client) for store in stores}) == 1
    assert stores[0].client.ping()


def redis_store() -> caching._RedisStore:
    store = caching.cached_table()._cache()
    assert isinstance(store, caching._RedisStore)
    return store


def test_a_new_client_when_caches_changes(redis: None, settings: Any) -> None:
    before = redis_store()
    db = before.client.connection_pool.connection_kwargs.get("db", 0)
    other = 15 if db != 15 else 14
    changed = copy.deepcopy(settings.CACHES)
    location = urlsplit(changed["sessions_redis"]["LOCATION"])
    changed["sessions_redis"]["LOCATION"] = urlunsplit(location._replace(path=f"/{other}"))
    settings.CACHES = changed
    after = redis_store()
    assert after.client is not before.client
    assert after.client.connection_pool.connection_kwargs["db"] == other
    # Another setting keeps the client.
    settings.SQL_SESSIONS_TOUCH_AFTER = 1
    assert redis_store().client is after.client
