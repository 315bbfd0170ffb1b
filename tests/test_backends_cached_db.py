"""
The cached engine's own promises, beyond the contract tests it shares with
the db engine (those run on it through the engine fixture): hits need no
SQL, every path that deletes or changes a row leaves no servable copy, the
races between a reader filling the cache and a writer or a revocation end
with the newer state, and a cache that dies or hangs costs the site
nothing but speed. Each runs on Redis and on a process-local cache (the
path of caches without compare-and-set), on every configured database.
"""

from __future__ import annotations

import datetime
import io
import logging
import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.backends.base import UpdateError
from django.core.cache import caches
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connections, transaction
from django.test import AsyncClient, Client
from django.utils import timezone

from django_sql_sessions import caching, encryption, storage, user_sessions
from django_sql_sessions.backends.cached_db import SessionStore
from django_sql_sessions.models import Session
from django_sql_sessions.storage import Row, hash_key
from tests.conftest import CACHED_ENGINE, clear_session_cache, ping_redis, required
from tests.counting import count_statements
from tests.helpers import key
from tests.servers import REDIS_SERVER, RedisServer

CACHES = [
    pytest.param(
        "sessions_redis",
        id="redis",
        marks=pytest.mark.skipif(
            not os.environ.get("REDIS_URL"), reason="redis not configured: REDIS_URL is not set"
        ),
    ),
    pytest.param("sessions_locmem", id="locmem"),
]


@pytest.fixture(params=CACHES)
def cache_alias(
    request: pytest.FixtureRequest, alias: str, settings: Any, clock: FakeClock
) -> Iterator[str]:
    """The cached engine in front of Redis, or of a cache without compare-and-set."""
    settings.SESSION_ENGINE = CACHED_ENGINE
    settings.SESSION_CACHE_ALIAS = request.param
    if request.param == "sessions_redis":
        ping_redis()
    caching.reset()
    yield request.param
    clear_session_cache(request.param)
    caching.reset()


class FakeClock:
    """caching.clock, moved by hand: the freshness and retry rules without waiting."""

    def __init__(self) -> None:
        self.now = time.monotonic()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(caching, "clock", fake)
    return fake


def saved(**data: Any) -> SessionStore:
    store = SessionStore()
    store.update(data)
    store.save()
    return store


def cached(session_key: str) -> Row | None:
    """What the cache holds for the session, if it is a live entry (no tombstone)."""
    return caching.cached_table()._read(hash_key(session_key))


def entry(session_key: str) -> str | None:
    """The raw value the cache holds for the session, as anyone who can read the cache sees it."""
    table = caching.cached_table()
    store = table._cache()
    assert store is not None
    return store.get(table.key(hash_key(session_key)))


def plant(cache_alias: str, session_key: str, value: str) -> None:
    """Put `value` in the session's cache entry, as anyone who can write to the cache can."""
    table = caching.cached_table()
    store = table._cache()
    assert store is not None
    caches[cache_alias].delete(table.key(hash_key(session_key)))
    store.offer(table.key(hash_key(session_key)), 1, value, 3600)
    assert entry(session_key) == value


def tombstoned(session_key: str) -> bool:
    return entry(session_key) == caching.TOMBSTONE


def load_statements(alias: str, session_key: str) -> tuple[dict[str, Any], int]:
    """A fresh store's load of the session, and the statements it sent."""
    with count_statements(alias) as statements:
        data = SessionStore(session_key).load()
    return data, statements.count


def before(
    monkeypatch: pytest.MonkeyPatch, name: str, other: Callable[[], None]
) -> list[tuple[Any, ...]]:
    """
    Pause the first call of CachedSessionTable._<name> (offer or replace): run `other`
    (another process's steps) between this process's SQL statement and its
    cache write, then let the call go on. Return the calls made.
    """
    real = getattr(caching.CachedSessionTable, f"_{name}")
    calls: list[tuple[Any, ...]] = []

    def paused(*args: Any, **kwargs: Any) -> None:
        calls.append(args)
        if len(calls) == 1:
            other()
        real(*args, **kwargs)

    monkeypatch.setattr(caching.CachedSessionTable, f"_{name}", paused)
    return calls


class TestHits:
    def test_a_hit_sends_no_sql(self, cache_alias: str, alias: str) -> None:
        store = saved(cart=[1])
        data, count = load_statements(alias, key(store))
        assert (data, count) == ({"cart": [1]}, 0)

    @pytest.mark.parametrize("run", ["sync", "async"])
    def test_a_hit_opens_no_database_connection(
        self, cache_alias: str, threaded_alias: str, run: str
    ) -> None:
        store = saved(cart=[1])
        connection = connections[threaded_alias]
        connection.close()
        loaded = SessionStore(key(store))
        if run == "sync":
            assert loaded.load() == {"cart": [1]}
        else:
            assert async_to_sync(loaded.aload)() == {"cart": [1]}
        assert connection.connection is None

    def test_entries_are_keyed_by_hash_and_never_hold_the_key(
        self, cache_alias: str, alias: str
    ) -> None:
        store = saved(cart=[1])
        session_key = key(store)
        cache = caches[cache_alias]
        if cache_alias == "sessions_redis":
            client = cache._cache.get_client(write=True)  # type: ignore[attr-defined]
            stored = {k: client.get(k) for k in client.scan_iter(match=f"{cache.key_prefix}:*")}
            everything = b"".join(k + v for k, v in stored.items()).decode()
        else:
            everything = repr(vars(cache)["_cache"])  # LocMemCache's dict of pickles
            everything += "".join(str(k) for k in vars(cache)["_cache"])
        assert hash_key(session_key) in everything
        assert session_key not in everything
        entry = cached(session_key)
        assert entry is not None
        assert entry.version == 1
        assert SessionStore().decode(entry.data) == {"cart": [1]}

    def test_a_miss_reads_once_and_fills_the_cache(self, cache_alias: str, alias: str) -> None:
        store = saved(cart=[1])
        clear_session_cache(cache_alias)
        assert load_statements(alias, key(store)) == ({"cart": [1]}, 1)
        assert load_statements(alias, key(store)) == ({"cart": [1]}, 0)

    def test_a_write_is_one_statement_and_the_next_read_none_on_redis(
        self, cache_alias: str, alias: str
    ) -> None:
        store = saved(cart=[1])
        loaded = SessionStore(key(store))
        loaded["cart"] = [1, 2]
        with count_statements(alias) as write:
            loaded.save()
        assert write.count == 1
        data, count = load_statements(alias, key(store))
        assert data == {"cart": [1, 2]}
        # Redis takes the new version (write-through); a cache without
        # compare-and-set takes a tombstone, and the next read refills it.
        assert count == (0 if cache_alias == "sessions_redis" else 1)


class TestExpiry:
    def test_an_expired_entry_is_never_served(
        self, cache_alias: str, alias: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        t0 = timezone.now()
        store = SessionStore()
        store["x"] = 1
        store.set_expiry(60)
        store.save()
        assert cached(key(store)) is not None
        # The cache still holds the entry (its own clock has not moved), but
        # the entry carries the session's expiry, checked on every read.
        monkeypatch.setattr(timezone, "now", lambda: t0 + datetime.timedelta(seconds=61))
        assert cached(key(store)) is not None
        assert SessionStore(key(store)).load() == {}

    @pytest.mark.parametrize("encrypt", [False, True], ids=["clear", "sealed"])
    @pytest.mark.parametrize(
        "change",
        [
            # Later expiry, so that a revoked or expired session lives on.
            lambda v: v.replace("|20", "|21", 1),
            # Another version, so that an older copy passes for the newest.
            lambda v: "9" + v,
            # A byte of the session part.
            lambda v: v[:-8] + ("A" if v[-8] != "A" else "B") + v[-7:],
            # Cut short.
            lambda v: v[: len(v) // 2],
        ],
        ids=["expiry", "version", "data", "truncated"],
    )
    def test_a_changed_entry_is_a_miss(
        self, cache_alias: str, alias: str, settings: Any, encrypt: bool, change: Any
    ) -> None:
        """The MAC, or under SQL_SESSIONS_ENCRYPT the cipher, covers the whole entry."""
        if encrypt:
            pytest.importorskip("cryptography")
        settings.SQL_SESSIONS_ENCRYPT = encrypt
        session_key = key(saved(n=1))
        assert cached(session_key) is not None
        value = entry(session_key)
        assert value is not None
        assert (encryption.PREFIX in value) == encrypt
        changed = change(value)
        assert changed != value
        plant(cache_alias, session_key, changed)
        assert cached(session_key) is None
        # The load reads the row instead, and gets the session right.
        assert load_statements(alias, session_key) == ({"n": 1}, 1)

    @pytest.mark.parametrize("encrypt", [False, True], ids=["clear", "sealed"])
    def test_an_entry_copied_to_another_sessions_key_is_a_miss(
        self, cache_alias: str, alias: str, settings: Any, encrypt: bool
    ) -> None:
        """Whoever can write to the cache cannot give their session another user's entry."""
        if encrypt:
            pytest.importorskip("cryptography")
        settings.SQL_SESSIONS_ENCRYPT = encrypt
        admin, mine = key(saved(user="admin")), key(saved(user="me"))
        value = entry(admin)
        assert value is not None
        plant(cache_alias, mine, value)
        assert cached(mine) is None
        assert SessionStore(mine).load() == {"user": "me"}

    def test_an_entry_under_another_secret_key_is_a_miss(
        self, cache_alias: str, alias: str, settings: Any
    ) -> None:
        session_key = key(saved(n=1))
        assert cached(session_key) is not None
        settings.SECRET_KEY = "another deployment's"
        assert cached(session_key) is None

    @pytest.mark.parametrize("filled_by", ["create", "miss", "cycle_key"])
    def test_the_absolute_lifetime_applies_to_hits(
        self,
        cache_alias: str,
        alias: str,
        settings: Any,
        monkeypatch: pytest.MonkeyPatch,
        filled_by: str,
    ) -> None:
        if filled_by == "cycle_key" and cache_alias != "sessions_redis":
            pytest.skip("a save fills only a cache that compares versions")
        settings.SQL_SESSIONS_ABSOLUTE_LIFETIME = 60
        t0 = timezone.now()
        monkeypatch.setattr(timezone, "now", lambda: t0)
        store = saved(n=1)
        if filled_by == "miss":
            clear_session_cache(cache_alias)
            assert SessionStore(key(store)).load() == {"n": 1}
        elif filled_by == "cycle_key":
            monkeypatch.setattr(timezone, "now", lambda: t0 - datetime.timedelta(seconds=30))
            store = saved(n=1)  # created earlier, logged in at t0
            monkeypatch.setattr(timezone, "now", lambda: t0)
            store.cycle_key()
            store.restart_lifetime()  # what Django's user_logged_in does
            store.save()
        monkeypatch.setattr(timezone, "now", lambda: t0 + datetime.timedelta(seconds=59))
        assert load_statements(alias, key(store)) == ({"n": 1}, 0)
        monkeypatch.setattr(timezone, "now", lambda: t0 + datetime.timedelta(seconds=61))
        assert cached(key(store)) is not None  # still in the cache, never served
        assert SessionStore(key(store)).load() == {}

    def test_cleanup_needs_no_invalidation(
        self, cache_alias: str, alias: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # The cleanup deletes by expiry range and knows no key hashes; a
        # copy of a row it deletes has expired too, so it is never served.
        t0 = timezone.now()
        expiring, live = SessionStore(), saved(n=2)
        expiring["n"] = 1
        expiring.set_expiry(60)
        expiring.save()
        monkeypatch.setattr(timezone, "now", lambda: t0 + datetime.timedelta(seconds=61))
        SessionStore.clear_expired()
        assert Session.objects.count() == 1
        assert SessionStore(key(expiring)).load() == {}
        assert SessionStore(key(live)).load() == {"n": 2}

    def test_the_cache_ttl_never_outlives_the_session_or_the_caches_timeout(
        self, cache_alias: str, alias: str, settings: Any
    ) -> None:
        short, long = SessionStore(), SessionStore()
        short.set_expiry(30)
        long.set_expiry(3600)
        short.save()
        long.save()
        cache = caches[cache_alias]
        assert cache.default_timeout == 300
        for store, most in ((short, 30), (long, 300)):
            made = cache.make_key(caching.cached_table().key(hash_key(key(store))))
            if cache_alias == "sessions_redis":
                client = cache._cache.get_client(write=True)  # type: ignore[attr-defined]
                ttl = client.pttl(made) / 1000
            else:
                ttl = vars(cache)["_expire_info"][made] - time.time()
            assert most - 5 < ttl <= most

    def test_touch_after_and_activity_work_from_the_cache(
        self, cache_alias: str, alias: str, settings: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        settings.SESSION_SAVE_EVERY_REQUEST = True
        settings.SQL_SESSIONS_TOUCH_AFTER = 60
        settings.SQL_SESSIONS_ACTIVITY_INTERVAL = 300
        t0 = timezone.now().replace(microsecond=0)
        monkeypatch.setattr(timezone, "now", lambda: t0)
        session_key = key(saved(cart=[1]))
        client = Client()
        client.cookies["sessionid"] = session_key

        def visit(seconds: int) -> int:
            monkeypatch.setattr(timezone, "now", lambda: t0 + datetime.timedelta(seconds=seconds))
            with count_statements(alias) as statements:
                assert client.get("/read/").status_code == 200
            return statements.count

        # Within TOUCH_AFTER: neither the save nor the activity is due.
        assert visit(30) == 0
        # Past the activity interval but within TOUCH_AFTER of the expiry?
        # No: past TOUCH_AFTER the save rewrites the expiry, which records
        # the activity too; then both wait again.
        assert visit(61) == 1
        assert visit(100) == (0 if cache_alias == "sessions_redis" else 1)
        row = Session.objects.for_key(session_key).get()
        assert row.updated_at == t0 + datetime.timedelta(seconds=61)

    def test_activity_recorded_from_a_hit_is_not_recorded_again(
        self, cache_alias: str, alias: str, settings: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        settings.SQL_SESSIONS_ACTIVITY_INTERVAL = 300
        t0 = timezone.now().replace(microsecond=0)
        monkeypatch.setattr(timezone, "now", lambda: t0)
        session_key = key(saved(cart=[1]))

        def read(seconds: int) -> int:
            monkeypatch.setattr(timezone, "now", lambda: t0 + datetime.timedelta(seconds=seconds))
            store = SessionStore(session_key)
            with count_statements(alias) as statements:
                assert store["cart"] == [1]
                store.record_activity()
            return statements.count

        assert read(100) == 0
        assert read(301) == 1  # the activity UPDATE, after a hit
        assert Session.objects.for_key(session_key).get().updated_at == (
            t0 + datetime.timedelta(seconds=301)
        )
        # The entry took the new activity (Redis), or was tombstoned and the
        # session is read from the table meanwhile: no second UPDATE.
        reads = 0 if cache_alias == "sessions_redis" else 1
        assert read(302) == reads
        assert read(303) == reads
        assert Session.objects.for_key(session_key).get().updated_at == (
            t0 + datetime.timedelta(seconds=301)
        )


class TestChangesOutsideTheEngine:
    """Each path that deletes or changes a row, after the session was served from the cache."""

    def warm(self, alias: str, **data: Any) -> str:
        session_key = key(saved(**data))
        assert load_statements(alias, session_key) == (data, 0)
        return session_key

    def test_logout_through_the_middleware(
        self, cache_alias: str, alias: str, make_user: Any
    ) -> None:
        user = make_user()
        client = Client()
        client.force_login(user)
        session_key = client.cookies["sessionid"].value
        assert SessionStore(session_key).load()[SESSION_KEY] == str(user.pk)
        client.post("/logout/")
        assert SessionStore(session_key).load() == {}

    def test_flush_delete_and_cycle_key(self, cache_alias: str, alias: str) -> None:
        flushed, deleted, cycled = (self.warm(alias, n=n) for n in range(3))
        SessionStore(flushed).flush()
        store = SessionStore(deleted)
        store.delete()
        moved = SessionStore(cycled)
        moved.cycle_key()
        moved.save()
        assert SessionStore(flushed).load() == {}
        assert SessionStore(deleted).load() == {}
        assert SessionStore(cycled).load() == {}
        assert SessionStore(key(moved)).load() == {"n": 2}

    @pytest.mark.parametrize("run", ["sync", "async"])
    def test_revoke_session_and_revoke_all_sessions(
        self, cache_alias: str, alias: str, make_user: Any, run: str
    ) -> None:
        user = make_user()
        one, other, kept = (
            self.warm(alias, **{SESSION_KEY: str(user.pk), "n": n}) for n in range(3)
        )
        if run == "sync":
            assert user_sessions.revoke_session(user, hash_key(one))
            assert user_sessions.revoke_all_sessions(user, keep=SessionStore(kept)) == 1
        else:
            assert async_to_sync(user_sessions.arevoke_session)(user, hash_key(one))
            revoke_all = async_to_sync(user_sessions.arevoke_all_sessions)
            assert revoke_all(user, keep=SessionStore(kept)) == 1
        assert SessionStore(one).load() == {}
        assert SessionStore(other).load() == {}
        assert SessionStore(kept).load()["n"] == 2

    def test_the_revokesessions_command(
        self, cache_alias: str, alias: str, make_user: Any
    ) -> None:
        user = make_user()
        session_key = self.warm(alias, **{SESSION_KEY: str(user.pk)})
        call_command("revokesessions", "--user-id", str(user.pk), stdout=io.StringIO())
        assert SessionStore(session_key).load() == {}

    def test_the_admins_revoke_action(self, cache_alias: str, alias: str, make_user: Any) -> None:
        admin = make_user("admin", is_staff=True, is_superuser=True)
        client = Client()
        client.force_login(admin)
        victim = self.warm(alias, **{SESSION_KEY: "77"})
        response = client.post(
            "/admin/django_sql_sessions/session/",
            {"action": "revoke", "_selected_action": [hash_key(victim)]},
        )
        assert response.status_code == 302
        assert SessionStore(victim).load() == {}

    def test_the_model_layer(self, cache_alias: str, alias: str) -> None:
        updated, saved_row, deleted_row, filtered = (self.warm(alias, n=n) for n in range(4))
        later = timezone.now() + datetime.timedelta(days=1)
        Session.objects.save(updated, {"n": "manager"}, later)
        row = Session.objects.for_key(saved_row).get()
        row.data = SessionStore().encode({"n": "row"})
        row.save()
        Session.objects.for_key(deleted_row).get().delete()
        Session.objects.for_key(filtered).update(data=SessionStore().encode({"n": "update"}))
        assert SessionStore(updated).load() == {"n": "manager"}
        assert SessionStore(saved_row).load() == {"n": "row"}
        assert SessionStore(deleted_row).load() == {}
        assert SessionStore(filtered).load() == {"n": "update"}

    def test_a_delete_leaves_rows_that_began_to_match_after_the_select(
        self, cache_alias: str, alias: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # The cache forgets the rows the delete selected; a row that matches
        # only by the time the DELETE runs must not go without its tombstone.
        first = self.warm(alias, **{SESSION_KEY: "7"})
        late = self.warm(alias, n=1)
        real = Session.objects.get_queryset().__class__.values_list

        def select_then_login(self: Any, *args: Any, **kwargs: Any) -> Any:
            selected = list(real(self, *args, **kwargs))
            store = SessionStore(late)
            store[SESSION_KEY] = "7"
            store.save()  # user 7 logs in on another device meanwhile
            return selected

        monkeypatch.setattr(
            Session.objects.get_queryset().__class__, "values_list", select_then_login
        )
        assert Session.objects.filter(user_id="7").delete()[0] == 1
        monkeypatch.undo()
        assert SessionStore(first).load() == {}
        assert SessionStore(late).load() == {SESSION_KEY: "7", "n": 1}

    def test_a_row_deleted_by_raw_sql_is_forgotten_at_the_next_save(
        self, cache_alias: str, alias: str
    ) -> None:
        session_key = self.warm(alias, n=1)
        connection = connections[alias]
        with connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {connection.ops.quote_name(Session._meta.db_table)}")
        store = SessionStore(session_key)
        store["n"] = 2  # served from the cache: raw SQL is not seen...
        with pytest.raises(UpdateError):
            store.save()  # ...until the save finds no row, and drops the copy
        assert SessionStore(session_key).load() == {}


class TestRaces:
    """Two processes' steps, interleaved deterministically."""

    def test_a_fill_read_before_a_revocation_never_lands(
        self, cache_alias: str, alias: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        session_key = key(saved(**{SESSION_KEY: "7"}))
        clear_session_cache(cache_alias)

        def revoke() -> None:
            assert user_sessions.revoke_all_sessions("7") == 1

        calls = before(monkeypatch, "offer", revoke)
        # This reader read the row, then the revocation deleted it and
        # tombstoned its key, then the reader offers what it read.
        assert SessionStore(session_key).load() == {SESSION_KEY: "7"}
        assert len(calls) == 1
        assert cached(session_key) is None
        assert load_statements(alias, session_key) == ({}, 1)

    def test_a_fill_read_before_a_write_never_replaces_it(
        self, cache_alias: str, alias: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        session_key = key(saved(step=1))
        clear_session_cache(cache_alias)

        def write() -> None:
            store = SessionStore(session_key)
            store["step"] = 2
            store.save()

        before(monkeypatch, "offer", write)
        assert SessionStore(session_key).load() == {"step": 1}  # read before the write
        monkeypatch.undo()
        assert SessionStore(session_key).load() == {"step": 2}
        entry = cached(session_key)
        if cache_alias == "sessions_redis":
            assert entry is not None
            assert entry.version == 2
        else:
            assert entry is None

    def test_writes_that_reach_the_cache_out_of_order_keep_the_newer(
        self, cache_alias: str, alias: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        session_key = key(saved(cart=[1]))
        first = SessionStore(session_key)
        first["cart"] = [1, 2]

        def second_request() -> None:
            # Loads version 1 from the cache (the first write has not
            # reached it), saves on a conflict: merged, version 3.
            second = SessionStore(session_key)
            second["theme"] = "dark"
            second.save()

        before(monkeypatch, "replace", second_request)
        first.save()  # version 2 in SQL; its cache write comes last
        monkeypatch.undo()
        expected = {"cart": [1, 2], "theme": "dark"}
        data, _count = load_statements(alias, session_key)
        assert data == expected
        if cache_alias == "sessions_redis":
            # The merged version 3, or (where the merge ran in a transaction
            # of its own, on databases with row locks) a tombstone: never 2.
            entry = cached(session_key)
            assert entry is None or entry.version == 3

    def test_a_conflict_refreshes_a_stale_entry(
        self, cache_alias: str, alias: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        session_key = key(saved(cart=[1]))
        # A write whose cache update was lost: the cache keeps version 1.
        monkeypatch.setattr(caching.CachedSessionTable, "_replace", lambda *args, **kwargs: None)
        lost = SessionStore(session_key)
        lost["cart"] = [1, 2]
        lost.save()
        monkeypatch.undo()
        stale = SessionStore(session_key)
        assert stale["cart"] == [1]  # served from the stale entry
        stale["theme"] = "dark"
        stale.save()  # refused at version 1, merged onto version 2
        assert SessionStore(session_key).load() == {"cart": [1, 2], "theme": "dark"}
        if cache_alias == "sessions_redis":
            # Version 3, or a tombstone where the merge ran in a transaction.
            entry = cached(session_key)
            assert entry is None or entry.version == 3
            assert SessionStore(session_key).load() == {"cart": [1, 2], "theme": "dark"}

    def test_a_fill_older_than_the_tombstones_life_is_dropped(
        self, cache_alias: str, alias: str, monkeypatch: pytest.MonkeyPatch, clock: FakeClock
    ) -> None:
        session_key = key(saved(n=1))
        clear_session_cache(cache_alias)

        def delete_and_wait() -> None:
            SessionStore(session_key).delete()
            assert tombstoned(session_key)
            # The reader stalls until the tombstone is gone.
            clock.advance(caching.TOMBSTONE_SECONDS)
            clear_session_cache(cache_alias)

        before(monkeypatch, "offer", delete_and_wait)
        assert SessionStore(session_key).load() == {"n": 1}
        assert cached(session_key) is None
        assert SessionStore(session_key).load() == {}

    def test_a_write_that_reaches_the_cache_late_leaves_a_tombstone(
        self, cache_alias: str, alias: str, monkeypatch: pytest.MonkeyPatch, clock: FakeClock
    ) -> None:
        session_key = key(saved(n=1))
        before(monkeypatch, "replace", lambda: clock.advance(caching.FRESH_SECONDS + 1))
        store = SessionStore(session_key)
        store["n"] = 2
        store.save()
        assert tombstoned(session_key)
        assert SessionStore(session_key).load() == {"n": 2}

    def test_a_failed_sql_write_leaves_no_entry(
        self, cache_alias: str, alias: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        session_key = key(saved(n=1))

        def refuse(*args: Any, **kwargs: Any) -> int:
            raise DatabaseError("the database refused the write")

        monkeypatch.setattr(storage, "send", refuse)
        monkeypatch.setattr(storage, "execute", refuse)
        store = SessionStore(session_key)
        store["n"] = 2
        with pytest.raises(DatabaseError):
            store.save()
        new = SessionStore()
        new["n"] = 3
        with pytest.raises(DatabaseError):
            new.save()
        monkeypatch.undo()
        entry = cached(session_key)
        assert entry is not None
        assert entry.version == 1
        assert load_statements(alias, session_key) == ({"n": 1}, 0)
        assert new.session_key is None or cached(key(new)) is None

    def test_a_rolled_back_write_never_reaches_the_cache(
        self, cache_alias: str, alias: str
    ) -> None:
        session_key = key(saved(n=1))
        store = SessionStore(session_key)
        store["n"] = 2

        def save_then_fail() -> None:
            with transaction.atomic(using=alias):
                store.save()
                raise ZeroDivisionError

        with pytest.raises(ZeroDivisionError):
            save_then_fail()
        # Tombstoned before the UPDATE was sent, so one read from the database.
        assert load_statements(alias, session_key) == ({"n": 1}, 1)

    def test_a_write_in_a_transaction_reaches_the_cache_at_commit(
        self, cache_alias: str, alias: str
    ) -> None:
        session_key = key(saved(n=1))
        store = SessionStore(session_key)
        store["n"] = 2
        with transaction.atomic(using=alias):
            store.save()
            # Tombstoned before the UPDATE: others read the database, which
            # serves version 1 until the commit.
            assert cached(session_key) is None
        assert tombstoned(session_key)
        assert SessionStore(session_key).load() == {"n": 2}

    def test_a_copy_filled_while_a_delete_commits_is_tombstoned_after(
        self, cache_alias: str, alias: str
    ) -> None:
        session_key = key(saved(n=1))
        clear_session_cache(cache_alias)
        with transaction.atomic(using=alias):
            SessionStore(session_key).delete()
            # Tombstoned before the DELETE is sent: the commit may come after
            # another process's copy, and an earlier on_commit callback of the
            # project's may raise.
            assert tombstoned(session_key)
            # Another process reads the row (its delete not committed yet)
            # and offers it to the cache: refused.
            table = caching.cached_table()
            store = table._cache()
            assert store is not None
            row = Row(
                hash_key(session_key),
                SessionStore().encode({"n": 1}),
                1,
                timezone.now() + datetime.timedelta(hours=1),
                timezone.now(),
                timezone.now(),
            )
            store.offer(
                table.key(hash_key(session_key)), 1, table._pack(hash_key(session_key), row), 3600
            )
            assert cached(session_key) is None
        assert tombstoned(session_key)
        assert SessionStore(session_key).load() == {}

    def test_reads_in_a_transaction_fill_nothing(self, cache_alias: str, alias: str) -> None:
        # Under REPEATABLE READ a read in a transaction may be older than
        # the last commit; only autocommit reads are current.
        session_key = key(saved(n=1))
        clear_session_cache(cache_alias)
        with transaction.atomic(using=alias):
            assert SessionStore(session_key).load() == {"n": 1}
        assert cached(session_key) is None


# The Redis-down tests run their own redis-server, so that killing or
# pausing it touches nobody else's.
TIMEOUT = 0.2  # socket_timeout and socket_connect_timeout, seconds


class OwnRedis(RedisServer):
    def __init__(self) -> None:
        super().__init__()
        self.errors_before = caching.cache_errors["own_redis"]

    def errors(self) -> int:
        """Cache errors counted since the test began."""
        return caching.cache_errors["own_redis"] - self.errors_before


@pytest.fixture
def own_redis(alias: str, settings: Any, clock: FakeClock) -> Iterator[OwnRedis]:
    """The cached engine in front of a redis-server of this test's own."""
    try:
        import redis  # noqa: F401
    except ImportError:
        reason = "redis-py is not installed"
    else:
        reason = "" if REDIS_SERVER else "redis-server is not on PATH"
    if reason:
        if required("redis"):
            pytest.fail(f"{reason}, and SQL_SESSIONS_TEST_REQUIRE requires redis.")
        pytest.skip(reason)
    server = OwnRedis()
    server.start()
    settings.CACHES = {
        **settings.CACHES,
        "own_redis": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": server.url,
            "OPTIONS": {"socket_timeout": TIMEOUT, "socket_connect_timeout": TIMEOUT},
        },
    }
    settings.SESSION_ENGINE = CACHED_ENGINE
    settings.SESSION_CACHE_ALIAS = "own_redis"
    caching.reset()
    try:
        yield server
    finally:
        server.stop()
        caching.reset()


class TestCacheDown:
    def test_killed_then_restarted(
        self, own_redis: OwnRedis, alias: str, clock: FakeClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        session_key = key(saved(cart=[1]))
        assert load_statements(alias, session_key) == ({"cart": [1]}, 0)

        own_redis.kill()
        with caplog.at_level(logging.WARNING, logger="django_sql_sessions"):
            # Reads and writes go to the database.
            assert load_statements(alias, session_key) == ({"cart": [1]}, 1)
            store = SessionStore(session_key)
            store["cart"] = [1, 2]
            store.save()
            new = saved(n=1)
            for _ in range(5):
                assert SessionStore(session_key).load() == {"cart": [1, 2]}
        assert own_redis.errors() == 1  # then the cache was left alone
        assert len(caplog.records) == 1
        assert "read from and written to the database alone" in caplog.text

        own_redis.start()  # empty: --save ''
        clock.advance(caching.RETRY_AFTER)
        # Repopulated on use: a miss fills it, the next read is a hit. (The
        # session written meanwhile was tombstoned first, as the cache could
        # have kept its old copy, so it waits for the tombstone to end.)
        assert load_statements(alias, key(new)) == ({"n": 1}, 1)
        assert load_statements(alias, key(new)) == ({"n": 1}, 0)
        assert tombstoned(session_key)
        assert load_statements(alias, session_key) == ({"cart": [1, 2]}, 1)
        assert own_redis.errors() == 1

    def test_a_hung_redis_costs_one_timeout_per_interval(
        self, own_redis: OwnRedis, alias: str, clock: FakeClock
    ) -> None:
        session_key = key(saved(cart=[1]))
        own_redis.signal(signal.SIGSTOP)
        try:
            started = time.perf_counter()
            assert SessionStore(session_key).load() == {"cart": [1]}
            first = time.perf_counter() - started
            assert own_redis.errors() == 1
            started = time.perf_counter()
            for _ in range(20):
                assert SessionStore(session_key).load() == {"cart": [1]}
            assert own_redis.errors() == 1  # not tried again within RETRY_AFTER
            clock.advance(caching.RETRY_AFTER)
            assert SessionStore(session_key).load() == {"cart": [1]}
            assert own_redis.errors() == 2  # tried once more, failed once more
        finally:
            own_redis.signal(signal.SIGCONT)
        # The timeout bounds the wait (with room for a busy machine).
        assert first < TIMEOUT + 1

    def test_a_revocation_while_redis_hangs_reaches_it_when_it_answers(
        self,
        own_redis: OwnRedis,
        alias: str,
        clock: FakeClock,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        session_key = key(saved(**{SESSION_KEY: "7"}))
        other = key(saved(**{SESSION_KEY: "8"}))
        assert load_statements(alias, session_key)[1] == 0
        own_redis.signal(signal.SIGSTOP)  # it keeps its memory, the entry included
        try:
            assert user_sessions.revoke_all_sessions("7") == 1
            store = SessionStore(other)
            store["n"] = 1
            store.save()
        finally:
            own_redis.signal(signal.SIGCONT)
        assert own_redis.errors() == 1
        clock.advance(caching.RETRY_AFTER)
        # The first use of the cache sends the tombstones that waited.
        with caplog.at_level(logging.INFO, logger="django_sql_sessions"):
            assert SessionStore(session_key).load() == {}
        assert SessionStore(other).load() == {SESSION_KEY: "8", "n": 1}
        assert caching.cached_table().undelivered == 0
        # The revoked session's and the saved one's.
        assert [m for r in caplog.records if "answers again;" in (m := r.getMessage())] == [
            "Session cache 'own_redis' answers again; 2 tombstones sent."
        ]

    def test_a_revocation_the_cache_missed_is_never_reported_as_done(
        self,
        own_redis: OwnRedis,
        alias: str,
        clock: FakeClock,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        # Issue 20, defect 4: the API warns, the command exits with status 3.
        session_key = key(saved(**{SESSION_KEY: "7"}))
        key(saved(**{SESSION_KEY: "9"}))
        assert load_statements(alias, session_key)[1] == 0
        own_redis.kill()
        with caplog.at_level(logging.WARNING, logger="django_sql_sessions.revocations"):
            assert user_sessions.revoke_all_sessions("7") == 1
        assert "Revoked 1 session, but the session cache did not answer" in caplog.text
        out, err = io.StringIO(), io.StringIO()
        with pytest.raises(CommandError) as raised:
            call_command("revokesessions", "--user-id", "9", stdout=out, stderr=err)
        assert raised.value.returncode == 3
        assert out.getvalue() == "Revoked 1 session of user id 9 (no such user).\n"
        assert "may still be served from it" in str(raised.value)
        own_redis.start()
        clock.advance(caching.RETRY_AFTER)
        assert SessionStore(session_key).load() == {}
        assert caching.cached_table().undelivered == 0

    def test_a_revocation_the_cache_took_is_reported_plainly(
        self, own_redis: OwnRedis, alias: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        key(saved(**{SESSION_KEY: "9"}))
        out = io.StringIO()
        with caplog.at_level(logging.WARNING, logger="django_sql_sessions.revocations"):
            call_command("revokesessions", "--user-id", "9", stdout=out)
            assert user_sessions.revoke_all_sessions("9") == 0
        assert out.getvalue() == "Revoked 1 session of user id 9 (no such user).\n"
        assert caplog.records == []

    def test_errors_are_logged_once_per_interval_and_counted(
        self, own_redis: OwnRedis, alias: str, clock: FakeClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        session_key = key(saved(n=1))
        own_redis.kill()
        with caplog.at_level(logging.WARNING, logger="django_sql_sessions"):
            for _ in range(5):
                clock.advance(caching.RETRY_AFTER)
                assert SessionStore(session_key).load() == {"n": 1}
            assert len(caplog.records) == 1
            clock.advance(caching.LOG_EVERY)
            assert SessionStore(session_key).load() == {"n": 1}
        assert own_redis.errors() == 6
        assert len(caplog.records) == 2
        assert "(1 error since the last report)" in caplog.records[0].getMessage()
        assert "(5 errors since the last report)" in caplog.records[1].getMessage()

    @pytest.mark.parametrize("prefix", ["", "/async"], ids=["wsgi", "asgi"])
    def test_through_the_middleware_while_redis_is_dead(
        self, own_redis: OwnRedis, alias: str, prefix: str
    ) -> None:
        client = Client() if not prefix else AsyncClient()

        def get(path: str) -> bytes:
            if isinstance(client, AsyncClient):
                response: Any = async_to_sync(client.get)(prefix + path)
            else:
                response = client.get(path)
            assert response.status_code == 200
            return bytes(response.content)

        get("/write/1/")
        own_redis.kill()
        get("/write/2/")
        assert get("/read/") == b"2"
        assert own_redis.errors() == 1
        row = Session.objects.for_key(client.cookies["sessionid"].value).get()
        assert row.get_decoded() == {"value": "2"}


def test_one_waiting_tombstone_is_one_in_the_log(
    settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.SESSION_CACHE_ALIAS = "sessions_locmem"
    caching.reset()
    table = caching.cached_table()
    table._pending["a" * 64] = None
    try:
        with caplog.at_level(logging.INFO, logger="django_sql_sessions"):
            assert table._deliver(caching._Store("sessions_locmem", caches["sessions_locmem"]))
    finally:
        caching.reset()
        caches["sessions_locmem"].clear()
    assert [record.getMessage() for record in caplog.records] == [
        "Session cache 'sessions_locmem' answers again; 1 tombstone sent."
    ]
