from __future__ import annotations

import datetime
import hashlib
import logging
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.backends.base import CreateError, UpdateError
from django.contrib.sessions.backends.db import SessionStore as DjangoSessionStore
from django.contrib.sessions.exceptions import SessionInterrupted
from django.contrib.sessions.middleware import SessionMiddleware
from django.db import DatabaseError, connections, transaction
from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory
from django.utils import timezone
from django.utils.crypto import get_random_string

from django_sql_sessions import cursors, storage
from django_sql_sessions.backends.db import KEY_ATTEMPTS, SessionStore
from django_sql_sessions.dialects import dialect
from django_sql_sessions.models import Session
from django_sql_sessions.storage import session_table
from tests.counting import count_statements
from tests.helpers import cached_engine, saved_session, wrote_raw_sql

# Each test runs on the db engine and on the cached engine (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("engine")

# A sync test body and its async twin run against the same expectations.
sync_and_async = pytest.mark.parametrize("run", ["sync", "async"])


def call(run: str, store: SessionStore, method: str, *args: Any) -> Any:
    if run == "sync":
        return getattr(store, method)(*args)
    return async_to_sync(getattr(store, "a" + method))(*args)


def rows(alias: str) -> list[tuple[str, str, datetime.datetime]]:
    connection = connections[alias]
    table = connection.ops.quote_name(session_table())
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT key_hash, data, expire_date FROM {table} ORDER BY key_hash")
        return [tuple(row) for row in cursor.fetchall()]


def sha256(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_of(store: SessionStore) -> str | None:
    # A function call, so that type checkers do not carry an earlier
    # narrowing of store.session_key past the operation that changed it.
    return store.session_key


@pytest.fixture
def frozen_now(monkeypatch: pytest.MonkeyPatch) -> Callable[[datetime.datetime], None]:
    """Set the engine's clock (and the expiry SessionBase computes from it)."""

    def freeze(value: datetime.datetime) -> None:
        monkeypatch.setattr(timezone, "now", lambda: value)

    return freeze


class TestStorage:
    @sync_and_async
    def test_create_stores_the_key_hash_never_the_key(self, alias: str, run: str) -> None:
        store = SessionStore()
        store["cart"] = [1, 2]
        call(run, store, "save")

        [(key_hash, data, _expiry)] = rows(alias)
        assert store.session_key is not None
        assert key_hash.strip() == sha256(store.session_key)
        assert store.session_key not in key_hash + data
        assert SessionStore().decode(data) == {"cart": [1, 2]}

    @sync_and_async
    def test_load_returns_the_saved_data(self, alias: str, run: str) -> None:
        key = saved_session(cart=[1, 2], user="ada").session_key

        store = SessionStore(key)
        assert call(run, store, "load") == {"cart": [1, 2], "user": "ada"}
        assert store.session_key == key

    @sync_and_async
    def test_save_updates_the_row(self, alias: str, run: str) -> None:
        key = saved_session(step=1).session_key
        store = SessionStore(key)
        store["step"] = 2
        call(run, store, "save")

        assert SessionStore(key).load() == {"step": 2}
        assert len(rows(alias)) == 1

    @sync_and_async
    def test_unknown_key_is_not_adopted(self, alias: str, run: str) -> None:
        planted = "a" * 32
        store = SessionStore(planted)
        assert call(run, store, "load") == {}
        assert key_of(store) is None

        store["x"] = 1
        call(run, store, "save")
        new_key = key_of(store)
        assert new_key not in (None, planted)
        assert [row[0].strip() for row in rows(alias)] == [sha256(str(new_key))]

    @sync_and_async
    def test_expired_session_loads_empty(self, alias: str, run: str) -> None:
        store = SessionStore()
        store["x"] = 1
        store.set_expiry(timezone.now() - datetime.timedelta(seconds=1))
        store.save()

        loaded = SessionStore(store.session_key)
        assert call(run, loaded, "load") == {}
        assert loaded.session_key is None

    @sync_and_async
    def test_session_expiring_now_is_expired(
        self, alias: str, run: str, frozen_now: Callable[[datetime.datetime], None]
    ) -> None:
        now = timezone.now().replace(microsecond=0)
        frozen_now(now - datetime.timedelta(seconds=60))
        store = SessionStore()
        store["x"] = 1
        store.set_expiry(60)
        store.save()

        frozen_now(now - datetime.timedelta(microseconds=1))
        assert SessionStore(store.session_key).load() == {"x": 1, "_session_expiry": 60}
        frozen_now(now)
        assert call(run, SessionStore(store.session_key), "load") == {}

    @sync_and_async
    def test_save_after_delete_raises_update_error_and_inserts_nothing(
        self, alias: str, run: str
    ) -> None:
        key = saved_session(x=1).session_key
        slow_request = SessionStore(key)
        assert slow_request["x"] == 1
        SessionStore(key).delete()  # a logout in a concurrent request

        slow_request["x"] = 2
        with pytest.raises(UpdateError):
            call(run, slow_request, "save")
        assert rows(alias) == []

    @sync_and_async
    def test_must_create_on_a_taken_key_raises_create_error(self, alias: str, run: str) -> None:
        key = saved_session(owner="first").session_key
        intruder = SessionStore()
        intruder._session_key = key
        intruder["owner"] = "second"

        with pytest.raises(CreateError):
            call(run, intruder, "save", True)
        assert SessionStore(key).load() == {"owner": "first"}

    @sync_and_async
    def test_create_retries_with_a_new_key_on_collision(
        self, alias: str, run: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        taken = saved_session(owner="first").session_key
        fresh = "b" * 32
        keys = iter([taken, fresh])
        monkeypatch.setattr(SessionStore, "_get_new_session_key", lambda self: next(keys))
        store = SessionStore()
        store["owner"] = "second"

        call(run, store, "create")
        assert store.session_key == fresh
        assert store.modified
        assert SessionStore(taken).load() == {"owner": "first"}
        assert SessionStore(fresh).load() == {"owner": "second"}

    @sync_and_async
    def test_create_gives_up_after_bounded_attempts(
        self, alias: str, run: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        taken = str(saved_session(owner="first").session_key)
        attempts = []

        def always_taken(self: SessionStore) -> str:
            attempts.append(taken)
            return taken

        monkeypatch.setattr(SessionStore, "_get_new_session_key", always_taken)
        with pytest.raises(CreateError, match="attempts"):
            call(run, SessionStore(), "create")
        assert len(attempts) == KEY_ATTEMPTS

    @sync_and_async
    def test_exists(self, alias: str, run: str) -> None:
        key = saved_session(x=1).session_key
        store = SessionStore()
        assert call(run, store, "exists", key) is True
        assert call(run, store, "exists", "c" * 32) is False
        assert call(run, store, "exists", "not a key") is False

    @sync_and_async
    def test_delete_own_and_other_key(self, alias: str, run: str) -> None:
        first = saved_session(n=1)
        second = saved_session(n=2)
        assert second.session_key is not None

        call(run, first, "delete")
        assert len(rows(alias)) == 1
        call(run, SessionStore(), "delete", second.session_key)
        assert rows(alias) == []
        call(run, SessionStore(), "delete")  # no key: nothing to do

    @sync_and_async
    def test_flush_removes_the_row_and_the_key(self, alias: str, run: str) -> None:
        store = saved_session(x=1)
        if run == "sync":
            store.flush()
        else:
            async_to_sync(store.aflush)()
        assert store.session_key is None
        assert rows(alias) == []

    @sync_and_async
    def test_cycle_key_moves_the_data_to_a_new_key(self, alias: str, run: str) -> None:
        store = saved_session(user="ada")
        old_key = store.session_key

        call(run, store, "cycle_key")
        assert store.session_key not in (None, old_key)
        assert store.modified
        assert SessionStore(old_key).load() == {}
        assert SessionStore(store.session_key).load() == {"user": "ada"}
        assert len(rows(alias)) == 1

    @sync_and_async
    def test_cycle_key_without_a_key_creates_one(self, alias: str, run: str) -> None:
        store = SessionStore()
        store["user"] = "ada"
        call(run, store, "cycle_key")
        assert SessionStore(store.session_key).load() == {"user": "ada"}

    @sync_and_async
    def test_cycle_key_after_a_concurrent_delete_drops_a_login(self, alias: str, run: str) -> None:
        # A logout or revocation elsewhere deleted the row: its login must not
        # come back under the new key.
        key = saved_session(**{SESSION_KEY: "7", "cart": [1]}).session_key
        store = SessionStore(key)
        assert store[SESSION_KEY] == "7"
        SessionStore(key).delete()

        call(run, store, "cycle_key")
        assert store.session_key != key
        assert dict(store.items()) == {}
        assert SessionStore(store.session_key).load() == {}
        store["after"] = 1
        call(run, store, "save")
        assert SessionStore(store.session_key).load() == {"after": 1}
        assert SessionStore(key).load() == {}
        assert len(rows(alias)) == 1

    @sync_and_async
    def test_cycle_key_after_a_parallel_cycle_keeps_anonymous_data(
        self, alias: str, run: str
    ) -> None:
        # A double-clicked login button: the first request moved the row, the
        # second finds it gone. An anonymous session's cart survives.
        key = saved_session(cart=[1]).session_key
        first, second = SessionStore(key), SessionStore(key)
        assert first["cart"] == second["cart"] == [1]
        call(run, first, "cycle_key")

        call(run, second, "cycle_key")
        assert second.session_key not in (key, first.session_key)
        second[SESSION_KEY] = "7"
        call(run, second, "save")
        assert SessionStore(second.session_key).load() == {"cart": [1], SESSION_KEY: "7"}

    @sync_and_async
    def test_cycle_key_collision_leaves_the_other_session_alone(
        self, alias: str, run: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        other = saved_session(owner="other").session_key
        store = saved_session(owner="me")
        old_key = store.session_key
        fresh = "d" * 32
        keys = iter([other, fresh])
        monkeypatch.setattr(SessionStore, "_get_new_session_key", lambda self: next(keys))

        call(run, store, "cycle_key")
        assert store.session_key == fresh
        assert SessionStore(other).load() == {"owner": "other"}
        assert SessionStore(fresh).load() == {"owner": "me"}
        assert SessionStore(old_key).load() == {}

    @sync_and_async
    def test_clear_expired_deletes_only_expired_rows(self, alias: str, run: str) -> None:
        live = saved_session(x=1)
        expired = SessionStore()
        expired["x"] = 2
        expired.set_expiry(timezone.now() - datetime.timedelta(days=1))
        expired.save()

        if run == "sync":
            SessionStore.clear_expired()
        else:
            async_to_sync(SessionStore.aclear_expired)()
        assert [row[0].strip() for row in rows(alias)] == [sha256(str(live.session_key))]

    @sync_and_async
    def test_a_subclass_clear_expired_is_used_by_both_twins(self, alias: str, run: str) -> None:
        calls: list[str] = []

        class Store(SessionStore):
            @classmethod
            def clear_expired(cls) -> None:
                calls.append(cls.__name__)

        if run == "sync":
            Store.clear_expired()
        else:
            async_to_sync(Store.aclear_expired)()
        assert calls == ["Store"]

    def test_fast_path_and_get_decoded_read_the_same_data(self, alias: str) -> None:
        store = saved_session(cart=[1], name="Zoë")
        assert Session.objects.for_key(str(store.session_key)).get().get_decoded() == {
            "cart": [1],
            "name": "Zoë",
        }


class TestBadInput:
    @pytest.mark.parametrize(
        "cookie",
        [
            "",
            "short",
            "x" * 4097,
            "ключключключключ",
            "abcdefgh' OR '1'='1",
            "abcdefgh; DROP TABLE x; --",
            "abcdefgh\x00ijklmnop",
            "ABCDEFGHIJKLMNOP",
            "%" * 32,
        ],
        ids=["empty", "short", "long", "non-ascii", "quote", "semicolon", "nul", "upper", "pct"],
    )
    @sync_and_async
    def test_malformed_cookie_loads_empty_without_a_query(
        self, alias: str, run: str, cookie: str
    ) -> None:
        saved_session(x=1)
        store = SessionStore(cookie)
        with count_statements(alias) as statements:
            assert call(run, store, "load") == {}
            assert call(run, store, "exists", cookie) is False
            call(run, store, "delete", cookie)
        assert statements.count == 0
        assert store.session_key is None
        assert len(rows(alias)) == 1

    @sync_and_async
    def test_tampered_data_loads_empty_and_is_logged(
        self, alias: str, run: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        store = saved_session(user="ada")
        connection = connections[alias]
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {connection.ops.quote_name(session_table())} SET data = %s",
                ["eyJ1c2VyIjoiZXZlIn0:1xWjhd:forgedsignature"],
            )
        wrote_raw_sql(str(store.session_key))

        with caplog.at_level(logging.WARNING, logger="django.security.SuspiciousSession"):
            loaded = SessionStore(store.session_key)
            assert call(run, loaded, "load") == {}
        assert [r.getMessage() for r in caplog.records] == ["Session data corrupted"]

    @sync_and_async
    def test_database_errors_are_not_disguised(
        self, alias: str, run: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        store = saved_session(x=1)
        connection = connections[alias]
        # The statements the table keeps on the connection, for a missing table.
        monkeypatch.setitem(
            connection.__dict__,
            SessionStore.table()._kept,
            dialect(connection).compile(connection.ops.quote_name("no_such_session_table")),
        )
        store["x"] = 2
        with pytest.raises(DatabaseError) as raised:
            call(run, store, "save")
        assert not isinstance(raised.value, UpdateError)


class TestStatementCounts:
    """One statement per operation in autocommit, transaction control included."""

    def test_each_operation_is_one_statement(self, alias: str) -> None:
        store = SessionStore()
        store["x"] = 1
        with count_statements(alias) as create:
            store.save()
        loaded = SessionStore(store.session_key)
        with count_statements(alias) as load:
            loaded.load()
        loaded["x"] = 2
        with count_statements(alias) as save:
            loaded.save()
        with count_statements(alias) as cycle:
            loaded.cycle_key()
        with count_statements(alias) as exists:
            loaded.exists(str(loaded.session_key))
        with count_statements(alias) as delete:
            loaded.delete()

        counts = {
            "create": create.count,
            "load": load.count,
            "save": save.count,
            "cycle_key": cycle.count,
            "exists": exists.count,
            "delete": delete.count,
        }
        expected = dict.fromkeys(counts, 1)
        if cached_engine():
            expected["load"] = 0  # served from the cache the create filled
        assert counts == expected
        for sql in create.sql + save.sql + cycle.sql + delete.sql:
            assert not sql.strip('"').upper().startswith(("BEGIN", "COMMIT", "SAVEPOINT"))

    def test_djangos_engine_needs_more_for_the_same_work(self, alias: str, settings: Any) -> None:
        # Also shows that the counter sees transaction control: Django's save
        # is BEGIN, UPDATE, COMMIT.
        settings.DATABASE_ROUTERS = [FixedRouter(alias)]
        store = DjangoSessionStore()
        store["x"] = 1
        with count_statements(alias) as create:
            store.save()
        store["x"] = 2
        with count_statements(alias) as save:
            store.save()
        assert create.count >= 4
        assert save.count >= 3

    def test_a_whole_request_cycle_through_the_middleware(self, alias: str) -> None:
        def login_view(request: HttpRequest) -> HttpResponse:
            request.session.cycle_key()
            request.session["user"] = "ada"
            return HttpResponse()

        factory = RequestFactory()
        new = run_middleware(factory.get("/"), lambda r: set_and_respond(r, "visits", 1))
        key = new.cookies["sessionid"].value
        request = factory.get("/", HTTP_COOKIE=f"sessionid={key}")
        with count_statements(alias) as login:
            response = run_middleware(request, login_view)
        # The load (from the cache on the cached engine), the move to a new
        # key, the save.
        assert login.count == (2 if cached_engine() else 3)
        assert response.cookies["sessionid"].value != key

    @pytest.mark.parametrize(
        ("workload", "expected", "cached"),
        [
            ("read", 1, 0),
            ("miss", 1, 1),
            ("write", 2, 1),
            ("new", 1, 1),
            ("cycle", 3, 2),
            ("touch", 1, 0),
        ],
    )
    def test_statements_per_request(
        self, alias: str, settings: Any, workload: str, expected: int, cached: int
    ) -> None:
        """
        The benchmark's workloads, through the middleware, as issue 3 counts
        them; on the cached engine, the load of a saved session is a hit.
        """
        if workload == "touch":
            settings.SESSION_SAVE_EVERY_REQUEST = True
            settings.SQL_SESSIONS_TOUCH_AFTER = 60
        key = saved_session(cart=[1]).session_key
        cookie = {
            "miss": "sessionid=" + "f" * 32,
            "new": "",
        }.get(workload, f"sessionid={key}")

        def view(request: HttpRequest) -> HttpResponse:
            if workload in ("write", "new"):
                request.session["counter"] = 1
            elif workload == "cycle":
                request.session.cycle_key()
                request.session["_auth_user_id"] = "42"
            else:
                request.session.get("cart")
            return HttpResponse()

        request = RequestFactory().get("/", HTTP_COOKIE=cookie)
        with count_statements(alias) as statements:
            run_middleware(request, view)
        assert statements.count == (cached if cached_engine() else expected)

    @pytest.mark.parametrize("method", ["save", "cycle_key"])
    def test_collisions_inside_atomic_leave_the_transaction_usable(
        self, alias: str, method: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        taken = saved_session(owner="first").session_key
        store = saved_session(owner="second") if method == "cycle_key" else SessionStore()
        keys = iter([taken, "e" * 32])
        monkeypatch.setattr(SessionStore, "_get_new_session_key", lambda self: next(keys))

        with transaction.atomic(using=alias):
            getattr(store, method)()
            # A poisoned PostgreSQL transaction would fail this query.
            assert SessionStore(taken).load() == {"owner": "first"}
        assert store.session_key == "e" * 32


class TestMiddleware:
    def test_new_then_returning_visitor(self, alias: str) -> None:
        factory = RequestFactory()
        first = run_middleware(factory.get("/"), lambda r: set_and_respond(r, "visits", 1))
        key = first.cookies["sessionid"].value

        second = run_middleware(
            factory.get("/", HTTP_COOKIE=f"sessionid={key}"),
            lambda r: set_and_respond(r, "visits", r.session["visits"] + 1),
        )
        assert SessionStore(second.cookies["sessionid"].value).load() == {"visits": 2}

    def test_logout_elsewhere_is_a_400_not_a_resurrection(self, alias: str) -> None:
        key = saved_session(visits=1).session_key

        def view(request: HttpRequest) -> HttpResponse:
            visits = request.session["visits"]
            SessionStore(key).delete()  # the user logs out in another tab meanwhile
            return set_and_respond(request, "visits", visits + 1)

        with pytest.raises(SessionInterrupted):
            run_middleware(RequestFactory().get("/", HTTP_COOKIE=f"sessionid={key}"), view)
        assert rows(alias) == []


class FixedRouter:
    def __init__(self, alias: str) -> None:
        self.alias = alias

    def db_for_read(self, model: Any, **hints: Any) -> str:
        return self.alias

    def db_for_write(self, model: Any, **hints: Any) -> str:
        return self.alias


def set_and_respond(request: HttpRequest, key: str, value: Any) -> HttpResponse:
    request.session[key] = value
    return HttpResponse()


def run_middleware(
    request: HttpRequest, view: Callable[[HttpRequest], HttpResponse]
) -> HttpResponse:
    middleware = SessionMiddleware(view)
    response = middleware(request)
    assert isinstance(response, HttpResponse)
    return response


class TestTouchAfter:
    """SQL_SESSIONS_TOUCH_AFTER skips saves that would only extend the expiry."""

    @pytest.fixture
    def touching(self, settings: Any, alias: str) -> str:
        settings.SESSION_SAVE_EVERY_REQUEST = True
        settings.SESSION_COOKIE_AGE = 3600
        settings.SQL_SESSIONS_TOUCH_AFTER = 60
        return alias

    def visit(self, key: str, view: Callable[[HttpRequest], HttpResponse] | None = None) -> int:
        """The statements a request sends, not counting the load: the writes."""

        def read(request: HttpRequest) -> HttpResponse:
            request.session.get("cart")
            return HttpResponse()

        request = RequestFactory().get("/", HTTP_COOKIE=f"sessionid={key}")
        with count_statements(self.alias) as statements:
            run_middleware(request, view or read)
        # The cached engine loads these sessions from the cache.
        return statements.count - (0 if cached_engine() else 1)

    def stored_expiry(self) -> datetime.datetime:
        (row,) = rows(self.alias)
        return Session.objects.get(key_hash=row[0]).expire_date

    def start(self, touching: str, frozen: Callable[[datetime.datetime], None]) -> str:
        self.alias = touching
        self.t0 = timezone.now().replace(microsecond=0)
        frozen(self.t0)
        return str(saved_session(cart=[1]).session_key)

    def test_unchanged_session_is_not_rewritten_within_the_window(
        self, touching: str, frozen_now: Callable[[datetime.datetime], None]
    ) -> None:
        key = self.start(touching, frozen_now)
        first_expiry = self.stored_expiry()
        frozen_now(self.t0 + datetime.timedelta(seconds=30))
        assert self.visit(key) == 0
        frozen_now(self.t0 + datetime.timedelta(seconds=60))
        assert self.visit(key) == 0  # exactly at the boundary: still skipped
        assert self.stored_expiry() == first_expiry

    def test_rewritten_once_the_expiry_lags_by_more(
        self, touching: str, frozen_now: Callable[[datetime.datetime], None]
    ) -> None:
        key = self.start(touching, frozen_now)
        later = self.t0 + datetime.timedelta(seconds=60, microseconds=1)
        frozen_now(later)
        assert self.visit(key) == 1
        assert self.stored_expiry() == later + datetime.timedelta(seconds=3600)

    def test_changed_sessions_are_always_written(
        self, touching: str, frozen_now: Callable[[datetime.datetime], None]
    ) -> None:
        key = self.start(touching, frozen_now)
        frozen_now(self.t0 + datetime.timedelta(seconds=1))
        assert self.visit(key, lambda r: set_and_respond(r, "cart", [1, 2])) == 1
        assert SessionStore(key).load() == {"cart": [1, 2]}

    def test_changes_made_in_place_are_written(
        self, touching: str, frozen_now: Callable[[datetime.datetime], None]
    ) -> None:
        key = self.start(touching, frozen_now)

        def append(request: HttpRequest) -> HttpResponse:
            request.session["cart"].append(2)  # no modified = True
            return HttpResponse()

        frozen_now(self.t0 + datetime.timedelta(seconds=1))
        assert self.visit(key, append) == 1
        assert SessionStore(key).load() == {"cart": [1, 2]}

    def test_zero_keeps_djangos_behaviour(
        self, touching: str, settings: Any, frozen_now: Callable[[datetime.datetime], None]
    ) -> None:
        settings.SQL_SESSIONS_TOUCH_AFTER = 0
        key = self.start(touching, frozen_now)
        frozen_now(self.t0 + datetime.timedelta(seconds=1))
        assert self.visit(key) == 1
        assert self.stored_expiry() == self.t0 + datetime.timedelta(seconds=3601)

    @sync_and_async
    def test_save_skips_the_same_way_sync_and_async(
        self, touching: str, run: str, frozen_now: Callable[[datetime.datetime], None]
    ) -> None:
        key = self.start(touching, frozen_now)
        frozen_now(self.t0 + datetime.timedelta(seconds=10))
        store = SessionStore(key)
        assert store["cart"] == [1]
        with count_statements(touching) as skipped:
            call(run, store, "save")
        frozen_now(self.t0 + datetime.timedelta(seconds=61))
        store = SessionStore(key)
        assert store["cart"] == [1]
        with count_statements(touching) as written:
            call(run, store, "save")
        assert (skipped.count, written.count) == (0, 1)


class TestObservability:
    def test_execute_wrappers_see_every_statement(self, alias: str) -> None:
        seen: list[str] = []

        def spy(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
            seen.append(sql)
            return execute(sql, params, many, context)

        with connections[alias].execute_wrapper(spy):
            store = saved_session(x=1)
            SessionStore(store.session_key).load()
        # MariaDB's reads carry a per-statement setting (SET STATEMENT ... FOR).
        verbs = [sql.split(" FOR ", 1)[-1] if sql.startswith("SET ") else sql for sql in seen]
        # The cached engine serves the load from the cache.
        loads = [] if cached_engine() else ["SELECT"]
        assert [verb.split()[0] for verb in verbs] == ["INSERT", *loads]

    def test_debug_query_log(self, alias: str) -> None:
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connections[alias]) as queries:
            saved_session(x=1)
        assert len(queries) == 1
        assert queries[0]["sql"].startswith("INSERT INTO")


class TestParallelRequests:
    """Two stores on one key stand for two requests of one user in parallel."""

    def two_requests(self, **data: Any) -> tuple[SessionStore, SessionStore]:
        key = saved_session(**data).session_key
        first, second = SessionStore(key), SessionStore(key)
        # Both read the same version before either saves.
        assert first.items()
        assert second.items()
        return first, second

    @sync_and_async
    def test_changes_to_different_keys_both_survive(self, alias: str, run: str) -> None:
        first, second = self.two_requests(cart=[1])
        first["cart"] = [1, 2]
        call(run, first, "save")
        second["theme"] = "dark"
        with count_statements(alias) as statements:
            call(run, second, "save")

        assert SessionStore(first.session_key).load() == {"cart": [1, 2], "theme": "dark"}
        # The refused update, then the re-read and the update; on servers
        # these run in a transaction that locks the row.
        vendor = connections[alias].vendor
        assert statements.count == {"sqlite": 3, "postgresql": 5, "mysql": 6}[vendor]
        assert second["cart"] == [1, 2]  # the request sees the merged session

    @sync_and_async
    def test_the_same_key_goes_to_the_later_save(self, alias: str, run: str) -> None:
        first, second = self.two_requests(step=1)
        first["step"] = 2
        call(run, first, "save")
        second["step"] = 3
        call(run, second, "save")
        assert SessionStore(first.session_key).load() == {"step": 3}

    def test_a_deleted_key_stays_deleted(self, alias: str) -> None:
        first, second = self.two_requests(coupon="SAVE10", cart=[1])
        del first["coupon"]
        first.save()
        second["cart"] = [1, 2]
        second.save()
        assert SessionStore(first.session_key).load() == {"cart": [1, 2]}

    def test_a_later_deletion_wins_over_an_earlier_change(self, alias: str) -> None:
        first, second = self.two_requests(coupon="SAVE10")
        first["coupon"] = "SAVE20"
        first.save()
        second.pop("coupon")
        second.save()
        assert SessionStore(first.session_key).load() == {}

    def test_a_change_made_in_place_replaces_that_key_only(self, alias: str) -> None:
        first, second = self.two_requests(cart=[1], theme="light")
        first["theme"] = "dark"
        first["cart"] = [1, 5]
        first.save()
        second["cart"].append(2)  # in place, then flagged by hand
        second.modified = True
        second.save()
        # The mutated key is this request's whole value; the other key keeps
        # the newer save's value.
        assert SessionStore(first.session_key).load() == {"cart": [1, 2], "theme": "dark"}

    def test_clear_replaces_the_whole_session(self, alias: str) -> None:
        first, second = self.two_requests(cart=[1])
        first["theme"] = "dark"
        first.save()
        second.clear()
        second["fresh"] = True
        second.save()
        assert SessionStore(first.session_key).load() == {"fresh": True}

    @sync_and_async
    def test_a_session_deleted_meanwhile_is_not_resurrected_by_a_merge(
        self, alias: str, run: str
    ) -> None:
        first, second = self.two_requests(cart=[1])
        first["cart"] = [1, 2]
        first.save()  # the version moves on, so second's update is refused...
        SessionStore(first.session_key).delete()  # ...and then the row goes
        second["theme"] = "dark"
        with pytest.raises(UpdateError):
            call(run, second, "save")
        assert rows(alias) == []

    def test_cycle_key_does_not_overwrite_a_concurrent_change(self, alias: str) -> None:
        first, second = self.two_requests(cart=[1])
        first["cart"] = [1, 2]
        first.save()
        second.cycle_key()  # login in the slower request
        second["user"] = "ada"
        second.save()
        assert SessionStore(second.session_key).load() == {"cart": [1, 2], "user": "ada"}
        assert SessionStore(first.session_key).load() == {}

    def test_expiry_never_moves_backwards(
        self, alias: str, frozen_now: Callable[[datetime.datetime], None]
    ) -> None:
        t0 = timezone.now().replace(microsecond=0)
        frozen_now(t0)
        first, second = self.two_requests(cart=[1])
        frozen_now(t0 + datetime.timedelta(seconds=100))  # a server with a later clock
        first["cart"] = [1, 2]
        first.save()
        frozen_now(t0 + datetime.timedelta(seconds=50))
        second["theme"] = "dark"
        second.save()
        stored = Session.objects.for_key(str(first.session_key)).get().expire_date
        assert stored == t0 + datetime.timedelta(seconds=100 + settings_age())

    def test_an_explicit_shorter_expiry_is_kept(self, alias: str) -> None:
        store = saved_session(cart=[1])
        store.set_expiry(60)
        store.save()
        stored = Session.objects.for_key(str(store.session_key)).get().expire_date
        assert stored <= timezone.now() + datetime.timedelta(seconds=60)

    def test_a_flood_of_conflicts_on_sqlite_gives_up_with_a_clear_error(
        self, alias: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from django_sql_sessions import sql
        from django_sql_sessions.exceptions import SessionSaveConflict

        if connections[alias].vendor != "sqlite":
            pytest.skip("servers lock the row for the retry, so it cannot be overtaken")
        store = saved_session(n=0)
        loaded = SessionStore(store.session_key)
        loaded["n"] = 1
        real_send = cursors.send
        table = connections[alias].ops.quote_name(session_table())

        def another_request_saves_first(
            connection: Any, statement: sql.Statement, values: Any, result: int = 0
        ) -> Any:
            if "version" in statement.names and statement.sql.startswith("UPDATE"):
                with connection.cursor() as cursor:
                    cursor.execute(f"UPDATE {table} SET version = version + 1")
            return real_send(connection, statement, values, result)

        monkeypatch.setattr(storage, "send", another_request_saves_first)
        with pytest.raises(SessionSaveConflict, match="kept saving"):
            loaded.save()
        monkeypatch.undo()
        assert SessionStore(store.session_key).load() == {"n": 0}


class TestThreads:
    def test_parallel_writers_lose_nothing(self, threaded_alias: str) -> None:
        import threading

        key = str(saved_session(start=True).session_key)
        writers, saves = 4, 15
        errors: list[BaseException] = []

        def writer(name: str) -> None:
            try:
                for _ in range(saves):
                    store = SessionStore(key)
                    store[name] = store.get(name, 0) + 1
                    store.save()
            except BaseException as exc:  # reported below, in the test's thread
                errors.append(exc)
            finally:
                connections.close_all()

        threads = [threading.Thread(target=writer, args=(f"w{i}",)) for i in range(writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        expected = {"start": True, **{f"w{i}": saves for i in range(writers)}}
        assert SessionStore(key).load() == expected


class TestSizeLimit:
    @sync_and_async
    def test_an_oversized_save_writes_nothing(self, alias: str, run: str, settings: Any) -> None:
        from django_sql_sessions.exceptions import SessionTooLarge

        store = saved_session(note="short")
        settings.SQL_SESSIONS_MAX_SIZE = 200
        store["note"] = get_random_string(300)  # incompressible, unlike "x" * 300
        with pytest.raises(
            SessionTooLarge, match=r"is \d+ bytes encoded, more than .*\(200 bytes\)"
        ):
            call(run, store, "save")
        assert SessionStore(store.session_key).load() == {"note": "short"}

        new = SessionStore()
        new["note"] = get_random_string(300)
        with pytest.raises(SessionTooLarge):
            call(run, new, "save")
        assert len(rows(alias)) == 1


def settings_age() -> int:
    from django.conf import settings

    return int(settings.SESSION_COOKIE_AGE)


@pytest.mark.parametrize(
    ("stored", "age"),
    [
        (None, 1209600),  # SESSION_COOKIE_AGE
        (60, 60),
        ("garbage", 1209600),  # not a date: the cookie age, as the sync method
        ("2100-01-01T00:00:00+00:00", None),  # an aware ISO string: that moment
    ],
)
def test_async_expiry_twins_read_the_stored_expiry_as_the_sync_ones(
    alias: str, stored: object, age: int | None, settings: Any
) -> None:
    store = saved_session(x=1)
    if stored is not None:
        store["_session_expiry"] = stored
        store.save()
    now = timezone.now()
    sync_store, async_store = SessionStore(store.session_key), SessionStore(store.session_key)
    sync_date = sync_store.get_expiry_date(modification=now)
    async_date = async_to_sync(async_store.aget_expiry_date)(modification=now)
    assert async_date == sync_date
    assert async_to_sync(async_store.aget_expiry_age)(modification=now) == (
        sync_store.get_expiry_age(modification=now)
    )
    if age is not None:
        assert sync_store.get_expiry_age(modification=now) == age
    else:
        moment = datetime.datetime(2100, 1, 1, tzinfo=datetime.timezone.utc)
        # In the project's time: naive in TIME_ZONE without USE_TZ.
        assert sync_date == (moment if settings.USE_TZ else timezone.make_naive(moment))


def test_a_store_has_the_attributes_sessionbase_gives_it(settings: Any) -> None:
    # SessionStore.__init__ repeats SessionBase's (without its import per
    # store): a Django version that sets more would show here.
    from django.contrib.sessions.backends.base import SessionBase

    ours = SessionStore("abcdefgh12345678")
    theirs = SessionStore.__new__(SessionStore)
    SessionBase.__init__(theirs, "abcdefgh12345678")
    assert vars(ours) == vars(theirs)
    # Each store takes the serializer SESSION_SERIALIZER names now.
    settings.SESSION_SERIALIZER = "tests.test_backends_db.ReprSerializer"
    assert SessionStore().serializer is ReprSerializer


class ReprSerializer:
    def dumps(self, obj: Any) -> bytes:
        return repr(obj).encode()

    def loads(self, data: bytes) -> Any:
        raise NotImplementedError
