"""
Defects of issue 20 ("One door to the session table"), each at the level a
user meets it: the absolute lifetime that a key rotation restarts (3), a
cache entry the engine cannot read (6), and two sites on one Redis (7).
Public APIs only (the engine, Django's login() through the test client,
the model's manager), so that the tests hold across the storage redesign.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator
from importlib import import_module
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings as django_settings
from django.core.cache import caches
from django.db import connections
from django.test import Client

from django_sql_sessions import caching
from django_sql_sessions.backends.db import SessionStore
from django_sql_sessions.models import Session
from django_sql_sessions.storage import hash_key, session_table
from tests.conftest import CACHED_ENGINE, clear_session_cache, ping_redis

LIFETIME = 3600
REDIS = "sessions_redis"
NO_REDIS = "redis not configured: REDIS_URL is not set"  # as tests/conftest.py says it
needs_redis = pytest.mark.skipif(REDIS not in django_settings.CACHES, reason=NO_REDIS)


def cookie(client: Client) -> str:
    return client.cookies["sessionid"].value


def whoami(client: Client) -> bytes:
    return client.get("/whoami/").content


# ------------------------------------------------------------------ defect 3


@pytest.mark.usefixtures("engine")
class TestAbsoluteLifetimeFromLogin:
    """
    SQL_SESSIONS_ABSOLUTE_LIFETIME counts from login (Django's login(), which
    sends user_logged_in), or from creation for an anonymous session. A new
    key alone (cycle_key(), as OWASP advises to rotate keys) is not a login
    and does not give the session a new lifetime.
    """

    @pytest.mark.parametrize("flavour", ["sync", "async"])
    def test_rotating_a_logged_in_sessions_key_keeps_its_lifetime(
        self,
        alias: str,
        settings: Any,
        clock: Callable[[float], None],
        make_user: Any,
        flavour: str,
    ) -> None:
        settings.SQL_SESSIONS_ABSOLUTE_LIFETIME = LIFETIME
        user = make_user()
        client = Client()
        assert client.get(f"/login/{user.pk}/").status_code == 200  # at t0
        clock(3000)
        # The site rotates the key of the logged-in session.
        store = SessionStore(cookie(client))
        if flavour == "sync":
            store.cycle_key()
            store.save()
        else:
            async_to_sync(store.acycle_key)()
            async_to_sync(store.asave)()
        assert store.session_key is not None
        client.cookies["sessionid"] = store.session_key
        clock(LIFETIME - 1)
        assert whoami(client) == str(user.pk).encode()
        clock(LIFETIME + 1)
        assert whoami(client) == b"anonymous", (
            "cycle_key() at t0+3000 s restarted the lifetime of a session logged in at t0: "
            f"it still loads at t0+{LIFETIME + 1} s with SQL_SESSIONS_ABSOLUTE_LIFETIME = "
            f"{LIFETIME}"
        )

    def test_an_anonymous_sessions_lifetime_counts_from_its_creation(
        self, alias: str, settings: Any, clock: Callable[[float], None]
    ) -> None:
        settings.SQL_SESSIONS_ABSOLUTE_LIFETIME = LIFETIME
        client = Client()
        client.get("/write/cart/")  # created at t0
        clock(3000)
        store = SessionStore(cookie(client))
        store.cycle_key()
        store.save()
        assert store.session_key is not None
        client.cookies["sessionid"] = store.session_key
        clock(LIFETIME - 1)
        assert client.get("/read/").content == b"cart"
        clock(LIFETIME + 1)
        assert client.get("/read/").content == b"None", (
            "cycle_key() at t0+3000 s restarted the lifetime of an anonymous session created "
            f"at t0: it still loads at t0+{LIFETIME + 1} s"
        )

    @pytest.mark.parametrize("prefix", ["", "/async"])
    def test_a_login_restarts_the_lifetime(
        self,
        alias: str,
        settings: Any,
        clock: Callable[[float], None],
        make_user: Any,
        prefix: str,
    ) -> None:
        settings.SQL_SESSIONS_ABSOLUTE_LIFETIME = LIFETIME
        user = make_user()
        client = Client()
        client.get(prefix + "/write/cart/")  # anonymous, at t0
        clock(3000)
        assert client.get(f"{prefix}/login/{user.pk}/").status_code == 200
        clock(3000 + LIFETIME - 1)
        assert whoami(client) == str(user.pk).encode()
        clock(3000 + LIFETIME + 1)
        assert whoami(client) == b"anonymous"

    def test_logging_in_again_restarts_the_lifetime(
        self, alias: str, settings: Any, clock: Callable[[float], None], make_user: Any
    ) -> None:
        # The same user logging in again. Django's login() keeps the key of a
        # session that already holds this user (it cycles only a session
        # without one), but sends user_logged_in: it is a login.
        settings.SQL_SESSIONS_ABSOLUTE_LIFETIME = LIFETIME
        user = make_user()
        client = Client()
        assert client.get(f"/login/{user.pk}/").status_code == 200
        clock(3000)
        assert client.get(f"/login/{user.pk}/").status_code == 200
        clock(3000 + LIFETIME - 1)
        assert whoami(client) == str(user.pk).encode(), (
            f"logged in again at t0+3000 s, logged out at t0+{3000 + LIFETIME - 1} s: the "
            "second login did not restart SQL_SESSIONS_ABSOLUTE_LIFETIME"
        )


# ------------------------------------------------------------------ defect 6


def use_cached_engine(settings: Any, cache_alias: str) -> None:
    settings.SESSION_ENGINE = CACHED_ENGINE
    settings.SESSION_CACHE_ALIAS = cache_alias
    if cache_alias == REDIS:
        ping_redis()


@pytest.fixture(
    params=[
        pytest.param(REDIS, id="redis", marks=needs_redis),
        pytest.param("sessions_locmem", id="locmem"),
    ]
)
def cache_alias(request: pytest.FixtureRequest, alias: str, settings: Any) -> Iterator[str]:
    """The cached engine, in front of Redis or of a process-local cache."""
    use_cached_engine(settings, request.param)
    caching.reset()
    yield request.param
    clear_session_cache(request.param)
    caching.reset()


def redis_keys_of(session_key: str) -> list[bytes]:
    """The run's Redis keys that the cached engine keeps the session under."""
    cache = caches[REDIS]
    client = cache._cache.get_client(write=True)  # type: ignore[attr-defined]
    pattern = f"{cache.key_prefix}:*{hash_key(session_key)}*"
    return list(client.scan_iter(match=pattern, count=1000))


def test_an_entry_written_under_the_other_use_tz_is_a_miss(
    cache_alias: str, alias: str, settings: Any
) -> None:
    # Another deployment of the site (or this one before USE_TZ changed)
    # filled the cache: its datetimes are naive where ours are aware, or
    # the other way round.
    project_use_tz = settings.USE_TZ
    client = Client(raise_request_exception=False)
    settings.USE_TZ = not project_use_tz
    client.get("/write/kept/")
    assert client.get("/read/").content == b"kept"
    settings.USE_TZ = project_use_tz
    response = client.get("/read/")
    assert (response.status_code, response.content) == (200, b"kept"), (
        f"a cache entry written with USE_TZ = {not project_use_tz} is read with "
        f"USE_TZ = {project_use_tz}: {response.status_code} {response.content[:80]!r}"
    )


GARBAGE = {
    "bytes": b"\xff\xfe\x00\x80 not an entry \xc3",
    "empty": b"",
    "pickle": pickle.dumps({"value": "forged"}),
    # Fields where an entry has them, none of them readable.
    "fields": b"7|not a date|2030-01-01|x|y",
    # Readable dates (naive, as under USE_TZ = False) around data that is
    # not a signed session.
    "bad-data": b"7|2099-01-01T00:00:00|2000-01-01T00:00:00|2000-01-01T00:00:00|forged",
    "bad-data-aware": (
        b"7|2099-01-01T00:00:00+00:00|2000-01-01T00:00:00+00:00|2000-01-01T00:00:00+00:00|forged"
    ),
}


@needs_redis
@pytest.mark.parametrize("garbage", GARBAGE.values(), ids=GARBAGE.keys())
def test_garbage_under_the_sessions_cache_key_is_a_miss(
    alias: str, settings: Any, garbage: bytes
) -> None:
    use_cached_engine(settings, REDIS)
    caching.reset()
    try:
        client = Client(raise_request_exception=False)
        client.get("/write/kept/")
        assert client.get("/read/").content == b"kept"  # a hit, or a miss that fills the cache
        keys = redis_keys_of(cookie(client))
        assert keys, "the cached engine keeps no Redis key with the session's key hash in it"
        raw = caches[REDIS]._cache.get_client(write=True)  # type: ignore[attr-defined]
        for redis_key in keys:
            raw.set(redis_key, garbage)
        response = client.get("/read/")
        assert (response.status_code, response.content) == (200, b"kept"), (
            f"with {garbage!r} under the session's cache key: "
            f"{response.status_code} {response.content[:80]!r}"
        )
    finally:
        clear_session_cache(REDIS)
        caching.reset()


# ------------------------------------------------------------------ defect 7

SITE_B = "secondary"


@pytest.fixture
def site_b(alias: str, django_db_blocker: Any) -> Iterator[str]:
    """A second site's session database (never one the alias fixture gives), emptied afterwards."""
    yield SITE_B
    connection = connections[SITE_B]
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {connection.ops.quote_name(session_table())}")


@needs_redis
def test_two_sites_on_one_redis_never_serve_each_others_sessions(
    alias: str, site_b: str, settings: Any
) -> None:
    # One SECRET_KEY and one Redis, two session databases:
    # SQL_SESSIONS_DB_ALIAS is the only difference between the sites.
    use_cached_engine(settings, REDIS)
    caching.reset()
    try:
        client = Client()
        client.get("/write/site-a/")
        assert client.get("/read/").content == b"site-a"
        session_key = cookie(client)

        settings.SQL_SESSIONS_DB_ALIAS = site_b
        assert not Session.objects.for_key(session_key).exists()
        loaded = import_module(settings.SESSION_ENGINE).SessionStore(session_key).load()
        on_b = Client()
        on_b.cookies["sessionid"] = session_key
        served = on_b.get("/read/").content
        settings.SQL_SESSIONS_DB_ALIAS = alias
        assert (loaded, served) == ({}, b"None"), (
            f"site B ({site_b!r}) has no such session, but loads {loaded!r} and serves "
            f"{served!r}: site A's ({alias!r}) cache entry"
        )
        assert client.get("/read/").content == b"site-a"
    finally:
        clear_session_cache(REDIS)
        caching.reset()
