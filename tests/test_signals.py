"""
The signals of signals.py and their log records, on every path that sends
them, sync and async, on each engine; and not sent where nothing happened.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.backends.base import UpdateError
from django.core.management import call_command
from django.db import DatabaseError, connections
from django.dispatch import Signal
from django.test import Client
from django.utils import timezone
from django.utils.crypto import get_random_string

from django_sql_sessions import signals, user_sessions
from django_sql_sessions.backends.db import SessionStore
from django_sql_sessions.base_session import SessionQuerySet
from django_sql_sessions.cleanup import GarbageCollector, delete_expired
from django_sql_sessions.exceptions import SessionTooLarge
from django_sql_sessions.models import Session
from django_sql_sessions.storage import IN_LIST_SIZE, hash_key
from tests.helpers import key, logged_in_client, row_of, saved_session

# Each test runs on the db engine and on the cached engine (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("engine")

sync_and_async = pytest.mark.parametrize("run", ["sync", "async"])

SIGNALS = {
    "session_revoked": signals.session_revoked,
    "sessions_purged": signals.sessions_purged,
    "session_save_merged": signals.session_save_merged,
    "session_save_refused": signals.session_save_refused,
    "session_too_large": signals.session_too_large,
}


@dataclasses.dataclass
class Event:
    signal: str
    sender: Any
    kwargs: dict[str, Any]


class Events:
    """What a sync and an async receiver, connected to every signal, received."""

    def __init__(self) -> None:
        self.sync: list[Event] = []
        self.async_: list[Event] = []

    def one(self, signal: str) -> Event:
        """The only event received, which both receivers got, of `signal`."""
        assert [e.signal for e in self.sync] == [signal]
        assert self.async_ == self.sync
        return self.sync[0]

    def none(self) -> None:
        assert self.sync == []
        assert self.async_ == []

    def clear(self) -> None:
        self.sync.clear()
        self.async_.clear()


@pytest.fixture
def events() -> Iterator[Events]:
    received = Events()
    receivers: list[tuple[Signal, Any]] = []
    for name, signal in SIGNALS.items():

        def sync_receiver(sender: Any, name: str = name, **kwargs: Any) -> None:
            kwargs.pop("signal")
            received.sync.append(Event(name, sender, kwargs))

        async def async_receiver(sender: Any, name: str = name, **kwargs: Any) -> None:
            kwargs.pop("signal")
            received.async_.append(Event(name, sender, kwargs))

        for receiver in (sync_receiver, async_receiver):
            signal.connect(receiver, weak=False)
            receivers.append((signal, receiver))
    yield received
    for signal, receiver in receivers:
        signal.disconnect(receiver)


def no_raw_key(event: Event, *keys: str | None) -> None:
    text = repr(event.kwargs)
    for raw in keys:
        assert raw is not None
        assert raw not in text


def api(run: str, name: str, *args: Any, **kwargs: Any) -> Any:
    if run == "sync":
        return getattr(user_sessions, name)(*args, **kwargs)
    return async_to_sync(getattr(user_sessions, "a" + name))(*args, **kwargs)


def call(run: str, store: SessionStore, method: str, *args: Any) -> Any:
    if run == "sync":
        return getattr(store, method)(*args)
    return async_to_sync(getattr(store, "a" + method))(*args)


def logged(caplog: pytest.LogCaptureFixture, logger: str) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == logger]


def fail_the_second_delete(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the second SessionQuerySet.delete() fail, as a lost connection would."""
    delete = SessionQuerySet.delete
    calls: list[int] = []

    def fail_second(queryset: SessionQuerySet[Session]) -> tuple[int, dict[str, int]]:
        calls.append(1)
        if len(calls) == 2:
            raise DatabaseError("lost the connection")
        return delete(queryset)

    monkeypatch.setattr(SessionQuerySet, "delete", fail_second)


class TestRevoked:
    @sync_and_async
    def test_revoke_one(
        self,
        alias: str,
        make_user: Any,
        run: str,
        events: Events,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        alice, staff = make_user("alice"), make_user("staff")
        phone, laptop = logged_in_client(alice), logged_in_client(alice)
        phone_id = row_of(phone).key_hash
        caplog.set_level(logging.INFO, logger="django_sql_sessions.revocations")
        assert api(run, "revoke_session", alice, phone_id, actor=staff) is True
        event = events.one("session_revoked")
        assert event.sender is Session
        assert event.kwargs == {
            "key_hashes": [phone_id],
            "user_id": str(alice.pk),
            "via": "api",
            "actor": staff,
            "using": alias,
        }
        raw = phone.cookies["sessionid"].value
        no_raw_key(event, raw)
        [record] = logged(caplog, "django_sql_sessions.revocations")
        assert record.levelno == logging.INFO
        message = record.getMessage()
        assert phone_id[:12] in message
        assert phone_id not in message  # a prefix only
        assert raw not in message
        assert "via api" in message
        assert f"user {staff.pk}" in message

        events.clear()
        assert api(run, "revoke_session", alice, phone_id) is False  # already gone
        laptop_id = row_of(laptop).key_hash
        assert api(run, "revoke_session", staff, laptop_id) is False  # not staff's
        assert api(run, "revoke_session", alice, "x") is False
        events.none()

    @sync_and_async
    def test_revoke_all(self, alias: str, make_user: Any, run: str, events: Events) -> None:
        alice, bob = make_user("alice"), make_user("bob")
        here, phone, tablet = (logged_in_client(alice) for _ in range(3))
        logged_in_client(bob)
        current = SessionStore(here.cookies["sessionid"].value)
        others = sorted(row_of(client).key_hash for client in (phone, tablet))
        assert api(run, "revoke_all_sessions", alice, current) == 2
        event = events.one("session_revoked")
        assert sorted(event.kwargs["key_hashes"]) == others
        assert event.kwargs["user_id"] == str(alice.pk)
        assert (event.kwargs["via"], event.kwargs["actor"], event.kwargs["using"]) == (
            "api",
            None,
            alias,
        )
        no_raw_key(event, *(c.cookies["sessionid"].value for c in (here, phone, tablet)))

        events.clear()
        assert api(run, "revoke_all_sessions", alice, current) == 0
        events.none()

    def test_revoke_all_revokes_a_session_moved_to_a_new_key_meanwhile(
        self, alias: str, make_user: Any, monkeypatch: pytest.MonkeyPatch, events: Events
    ) -> None:
        alice = make_user("alice")
        phone, tablet = logged_in_client(alice), logged_in_client(alice)
        tablet_store = SessionStore(tablet.cookies["sessionid"].value)
        tablet_store.load()
        phone_hash = row_of(phone).key_hash
        delete = SessionQuerySet.delete
        moved: list[str] = []

        def cycle_first(queryset: SessionQuerySet[Session]) -> tuple[int, dict[str, int]]:
            # The tablet logs in again (cycle_key()) after the revocation's
            # select and before its delete.
            if not moved:
                tablet_store.cycle_key()
                moved.append(hash_key(key(tablet_store)))
            return delete(queryset)

        monkeypatch.setattr(SessionQuerySet, "delete", cycle_first)
        assert user_sessions.revoke_all_sessions(alice) == 2
        assert not Session.objects.filter(user_id=str(alice.pk)).exists()
        hashes = events.one("session_revoked").kwargs["key_hashes"]
        assert phone_hash in hashes
        assert moved[0] in hashes

    def test_a_revocation_that_fails_part_way_reports_what_it_revoked(
        self, alias: str, make_user: Any, monkeypatch: pytest.MonkeyPatch, events: Events
    ) -> None:
        alice = make_user("alice")
        Session.objects.bulk_create(
            Session(
                key_hash=f"{i:064x}",
                data="e30:x",
                expire_date=timezone.now() + datetime.timedelta(hours=1),
                user_id=str(alice.pk),
            )
            for i in range(IN_LIST_SIZE + 1)
        )
        fail_the_second_delete(monkeypatch)
        with pytest.raises(DatabaseError):
            user_sessions.revoke_all_sessions(alice)
        event = events.one("session_revoked")
        assert len(event.kwargs["key_hashes"]) == IN_LIST_SIZE
        left = set(
            Session.objects.filter(user_id=str(alice.pk)).values_list("key_hash", flat=True)
        )
        assert left.isdisjoint(event.kwargs["key_hashes"])
        assert len(left) == 1

    def test_admin_action(
        self, alias: str, make_user: Any, events: Events, caplog: pytest.LogCaptureFixture
    ) -> None:
        admin = make_user("admin", is_staff=True, is_superuser=True)
        client = Client()
        client.force_login(admin)
        victims = [saved_session(**{SESSION_KEY: "77"}) for _ in range(2)]
        saved_session(**{SESSION_KEY: "78"})
        hashes = sorted(hash_key(key(v)) for v in victims)
        events.clear()  # the admin's login
        caplog.set_level(logging.INFO, logger="django_sql_sessions.revocations")
        response = client.post(
            "/admin/django_sql_sessions/session/",
            {"action": "revoke", "_selected_action": hashes},
        )
        assert response.status_code == 302
        event = events.one("session_revoked")
        assert event.sender is Session
        assert sorted(event.kwargs["key_hashes"]) == hashes
        assert event.kwargs["user_id"] is None
        assert event.kwargs["via"] == "admin"
        assert event.kwargs["actor"].pk == admin.pk
        assert event.kwargs["using"] == alias
        no_raw_key(event, *(key(v) for v in victims))
        [record] = logged(caplog, "django_sql_sessions.revocations")
        assert "via admin" in record.getMessage()

        # Selected rows that are gone by the time of the POST: nothing revoked.
        events.clear()
        client.post(
            "/admin/django_sql_sessions/session/",
            {"action": "revoke", "_selected_action": hashes},
        )
        events.none()

    def test_an_admin_action_that_fails_part_way_reports_what_it_revoked(
        self, alias: str, make_user: Any, monkeypatch: pytest.MonkeyPatch, events: Events
    ) -> None:
        admin = make_user("admin", is_staff=True, is_superuser=True)
        client = Client()
        client.force_login(admin)
        hashes = [f"{i:064x}" for i in range(IN_LIST_SIZE + 1)]
        Session.objects.bulk_create(
            Session(
                key_hash=key_hash,
                data="e30:x",
                expire_date=timezone.now() + datetime.timedelta(hours=1),
                user_id="77",
            )
            for key_hash in hashes
        )
        events.clear()  # the admin's login
        fail_the_second_delete(monkeypatch)
        with pytest.raises(DatabaseError):
            client.post(
                "/admin/django_sql_sessions/session/",
                {"action": "revoke", "_selected_action": hashes},
            )
        revoked = events.one("session_revoked").kwargs["key_hashes"]
        assert len(revoked) == IN_LIST_SIZE
        assert not Session.objects.filter(key_hash__in=revoked).exists()

    def test_revokesessions_command(
        self, alias: str, make_user: Any, events: Events, caplog: pytest.LogCaptureFixture
    ) -> None:
        alice = make_user("alice")
        clients = [logged_in_client(alice) for _ in range(2)]
        hashes = sorted(row_of(c).key_hash for c in clients)
        caplog.set_level(logging.INFO, logger="django_sql_sessions.revocations")
        call_command("revokesessions", "--username", "alice", stdout=StringIO())
        event = events.one("session_revoked")
        assert sorted(event.kwargs.pop("key_hashes")) == hashes
        assert event.kwargs == {
            "user_id": str(alice.pk),
            "via": "command",
            "actor": None,
            "using": alias,
        }
        no_raw_key(event, *(c.cookies["sessionid"].value for c in clients))
        [record] = logged(caplog, "django_sql_sessions.revocations")
        assert "by no known user" in record.getMessage()

        events.clear()
        call_command("revokesessions", "--user-id", str(alice.pk), stdout=StringIO())
        events.none()

    def test_logout_and_flush_are_not_revocations(self, alias: str, events: Events) -> None:
        store = saved_session(x=1)
        store.flush()
        SessionStore(key(saved_session(y=1))).delete()
        events.none()

    def test_a_failing_receiver_changes_nothing(
        self, alias: str, make_user: Any, caplog: pytest.LogCaptureFixture
    ) -> None:
        def broken(sender: Any, **kwargs: Any) -> None:
            raise RuntimeError("receiver down")

        alice = make_user("alice")
        client = logged_in_client(alice)
        signals.session_revoked.connect(broken)
        try:
            assert user_sessions.revoke_all_sessions(alice) == 1
        finally:
            signals.session_revoked.disconnect(broken)
        assert client.get("/whoami/").content == b"anonymous"
        errors = logged(caplog, "django.dispatch")
        assert "receiver down" in str(errors[0].exc_info)


def expire(count: int) -> None:
    start = Session.objects.count()
    Session.objects.bulk_create(
        Session(
            key_hash=f"{start + i:064x}",
            data="e30:x",
            expire_date=timezone.now() - datetime.timedelta(minutes=1),
        )
        for i in range(count)
    )


class TestPurged:
    def assert_purged(self, events: Events, alias: str, count: int, via: str) -> None:
        event = events.one("sessions_purged")
        assert event.sender is Session
        seconds = event.kwargs.pop("seconds")
        assert isinstance(seconds, float)
        assert seconds >= 0
        assert event.kwargs == {"count": count, "via": via, "using": alias}

    @sync_and_async
    def test_clear_expired(
        self,
        alias: str,
        run: str,
        engine: type[SessionStore],
        events: Events,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        saved_session(x=1)
        expire(3)
        events.clear()
        caplog.set_level(logging.INFO, logger="django_sql_sessions.cleanup")
        clear = engine.clear_expired if run == "sync" else async_to_sync(engine.aclear_expired)
        clear()
        self.assert_purged(events, alias, 3, "clear_expired")
        [record] = logged(caplog, "django_sql_sessions.cleanup")
        assert record.levelno == logging.INFO
        assert record.getMessage().startswith(
            f"Purged 3 expired sessions from database '{alias}' in "
        )

        events.clear()
        clear()  # nothing left to purge
        events.none()

    def test_clearsessions(self, alias: str, events: Events) -> None:
        expire(2)
        call_command("clearsessions")
        self.assert_purged(events, alias, 2, "clear_expired")

    def test_purgesessions(self, alias: str, events: Events) -> None:
        expire(5)
        call_command("purgesessions", "--batch-size", "2", stdout=StringIO())
        self.assert_purged(events, alias, 5, "command")  # once for all batches
        events.clear()
        call_command("purgesessions", stdout=StringIO())
        call_command("purgesessions", "--dry-run", stdout=StringIO())
        events.none()

    def test_garbage_collection(self, alias: str, settings: Any, events: Events) -> None:
        settings.SQL_SESSIONS_GC_FREQUENCY = 10
        settings.SQL_SESSIONS_CLEANUP_BATCH_SIZE = 2
        expire(3)
        GarbageCollector(draw=lambda: 0.5)()  # not drawn
        events.none()
        GarbageCollector(draw=lambda: 0.0)()
        self.assert_purged(events, alias, 2, "garbage_collection")

    def test_delete_expired_called_directly(self, alias: str, events: Events) -> None:
        expire(1)
        delete_expired()
        self.assert_purged(events, alias, 1, "api")

    def test_a_run_that_fails_still_reports_what_it_deleted(
        self, alias: str, events: Events
    ) -> None:
        expire(3)

        def interrupt(deleted: int, batches: int, elapsed: float) -> None:
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            delete_expired(batch_size=2, progress=interrupt, via="command")
        self.assert_purged(events, alias, 2, "command")


class TestSaves:
    def two_requests(self, **data: Any) -> tuple[SessionStore, SessionStore]:
        session_key = saved_session(**data).session_key
        first, second = SessionStore(session_key), SessionStore(session_key)
        assert first.items()
        assert second.items()
        return first, second

    @sync_and_async
    def test_merged_after_a_conflict(
        self,
        alias: str,
        run: str,
        engine: type[SessionStore],
        events: Events,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        first, second = self.two_requests(cart=[1], coupon="SAVE10")
        first["cart"] = [1, 2]
        call(run, first, "save")
        events.none()  # no conflict for the first save
        second["theme"] = "dark"
        del second["coupon"]
        caplog.set_level(logging.DEBUG, logger="django_sql_sessions.saves")
        call(run, second, "save")
        event = events.one("session_save_merged")
        assert event.sender is engine
        assert event.kwargs == {
            "key_hash": hash_key(key(first)),
            "changed": ["coupon", "theme"],
            "attempts": 1,
            "using": alias,
        }
        no_raw_key(event, key(first))
        [record] = logged(caplog, "django_sql_sessions.saves")
        assert record.levelno == logging.DEBUG
        assert hash_key(key(first))[:12] in record.getMessage()
        assert key(first) not in record.getMessage()
        assert SessionStore(key(first)).load() == {"cart": [1, 2], "theme": "dark"}

    @sync_and_async
    def test_not_sent_without_a_conflict_or_when_replacing(
        self, alias: str, run: str, events: Events
    ) -> None:
        store = saved_session(x=1)
        store["x"] = 2
        call(run, store, "save")
        call(run, SessionStore(), "save")
        events.none()
        # After clear() the save replaces the newer data: nothing is merged.
        first, second = self.two_requests(cart=[1])
        first["theme"] = "dark"
        call(run, first, "save")
        second.clear()
        second["fresh"] = True
        call(run, second, "save")
        events.none()

    @sync_and_async
    def test_refused_because_the_row_is_gone(
        self,
        alias: str,
        run: str,
        engine: type[SessionStore],
        events: Events,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        slow_request = saved_session(x=1)
        SessionStore(key(slow_request)).delete()  # a logout elsewhere
        slow_request["x"] = 2
        caplog.set_level(logging.WARNING, logger="django_sql_sessions.saves")
        with pytest.raises(UpdateError):
            call(run, slow_request, "save")
        event = events.one("session_save_refused")
        assert event.sender is engine
        assert event.kwargs == {
            "key_hash": hash_key(key(slow_request)),
            "reason": "gone",
            "using": alias,
        }
        no_raw_key(event, key(slow_request))
        [record] = logged(caplog, "django_sql_sessions.saves")
        assert record.levelno == logging.WARNING
        assert key(slow_request) not in record.getMessage()

    @sync_and_async
    def test_refused_after_a_conflict_when_the_row_is_gone(
        self, alias: str, run: str, events: Events
    ) -> None:
        first, second = self.two_requests(cart=[1])
        first["cart"] = [1, 2]
        first.save()
        SessionStore(key(first)).delete()
        second["theme"] = "dark"
        with pytest.raises(UpdateError):
            call(run, second, "save")
        assert events.one("session_save_refused").kwargs["key_hash"] == hash_key(key(first))

    @sync_and_async
    def test_too_large(
        self,
        alias: str,
        run: str,
        settings: Any,
        engine: type[SessionStore],
        events: Events,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        store = saved_session(note="short")
        settings.SQL_SESSIONS_MAX_SIZE = 200
        store["note"] = get_random_string(300)
        caplog.set_level(logging.WARNING, logger="django_sql_sessions.saves")
        with pytest.raises(SessionTooLarge):
            call(run, store, "save")
        event = events.one("session_too_large")
        assert event.sender is engine
        size = event.kwargs.pop("size")
        assert size > 300
        assert event.kwargs == {"key_hash": hash_key(key(store)), "limit": 200, "using": alias}
        no_raw_key(event, key(store))
        [record] = logged(caplog, "django_sql_sessions.saves")
        assert record.levelno == logging.WARNING
        assert f"{size} bytes encoded" in record.getMessage()
        assert key(store) not in record.getMessage()

        # A new session has no row, so no key hash.
        events.clear()
        new = SessionStore()
        new["note"] = get_random_string(300)
        with pytest.raises(SessionTooLarge):
            call(run, new, "save")
        assert events.one("session_too_large").kwargs["key_hash"] is None

        # A session within the limit.
        events.clear()
        small = SessionStore()
        small["n"] = 1
        call(run, small, "save")
        events.none()

    @sync_and_async
    def test_too_large_after_a_merge_is_sent_outside_the_saves_transaction(
        self, alias: str, run: str, settings: Any, events: Events
    ) -> None:
        # After a conflict the merge is read and written in a transaction
        # with the row locked (PostgreSQL, MySQL); SessionTooLarge rolls it
        # back, and a receiver inside it would hold the lock and lose its
        # own writes.
        first, second = self.two_requests(note="short")
        first["a"] = get_random_string(200)
        second["b"] = get_random_string(200)
        merged = {"note": "short", "a": first["a"], "b": second["b"]}
        limit = max(
            len(first.encode(dict(first.items()))), len(second.encode(dict(second.items())))
        )
        assert len(first.encode(merged)) > limit
        settings.SQL_SESSIONS_MAX_SIZE = limit
        call(run, first, "save")
        in_transaction: list[bool] = []

        def receiver(sender: Any, using: str, **kwargs: Any) -> None:
            in_transaction.append(connections[using].in_atomic_block)

        signals.session_too_large.connect(receiver)
        try:
            with pytest.raises(SessionTooLarge):
                call(run, second, "save")
        finally:
            signals.session_too_large.disconnect(receiver)
        assert in_transaction == [False]
        event = events.one("session_too_large")
        assert event.kwargs["key_hash"] == hash_key(key(first))
        assert event.kwargs["limit"] == limit
        assert event.kwargs["size"] == len(first.encode(merged))

    def test_a_failing_receiver_leaves_the_error_the_caller_expects(
        self, alias: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        def broken(sender: Any, **kwargs: Any) -> None:
            raise RuntimeError("receiver down")

        slow_request = saved_session(x=1)
        SessionStore(key(slow_request)).delete()
        slow_request["x"] = 2
        signals.session_save_refused.connect(broken)
        try:
            with pytest.raises(UpdateError):
                slow_request.save()
        finally:
            signals.session_save_refused.disconnect(broken)
        assert "receiver down" in str(logged(caplog, "django.dispatch")[0].exc_info)


class TestInARequest:
    @pytest.mark.parametrize("prefix", ["", "/async"])
    def test_a_revocation_in_a_sync_or_async_view(
        self, alias: str, make_user: Any, prefix: str, events: Events
    ) -> None:
        user = make_user()
        client = logged_in_client(user, prefix + "/login/{}/")
        key_hash = row_of(client).key_hash
        events.clear()
        response = client.get(prefix + "/revoked-then-password-changed/")
        assert response.status_code == 200
        event = events.one("session_revoked")
        assert event.kwargs["key_hashes"] == [key_hash]
        assert event.kwargs["via"] == "api"
        no_raw_key(event, client.cookies["sessionid"].value)


def test_log_messages_count_in_words_that_agree(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="django_sql_sessions")
    for count in (1, 2):
        signals.send_revoked(
            Session, ["a" * 64] * count, user_id="7", via="api", actor=None, using="x"
        )
        signals.send_purged(Session, count=count, seconds=0.5, via="api", using="x")
        signals.send_save_merged(SessionStore, "b" * 64, changed=["n"], attempts=count, using="x")
    revoked = "via api, user id 7, by no known user: aaaaaaaaaaaa"
    merged = "Merged a save of session bbbbbbbbbbbb onto a newer save after"
    assert [record.getMessage() for record in caplog.records] == [
        f"Revoked 1 session {revoked}",
        "Purged 1 expired session from database 'x' in 0.500 s via api",
        f"{merged} 1 attempt; changed: n",
        f"Revoked 2 sessions {revoked}, aaaaaaaaaaaa",
        "Purged 2 expired sessions from database 'x' in 0.500 s via api",
        f"{merged} 2 attempts; changed: n",
    ]
