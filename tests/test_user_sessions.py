from __future__ import annotations

import datetime
import uuid
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth import SESSION_KEY
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.backends.base import UpdateError
from django.utils import timezone

from django_sql_sessions import user_sessions
from django_sql_sessions.backends.db import SessionStore
from django_sql_sessions.models import Session
from django_sql_sessions.storage import user_id_from_session
from django_sql_sessions.user_sessions import (
    UserSession,
    list_sessions,
    revoke_all_sessions,
    revoke_session,
    user_id,
)
from tests.counting import count_statements
from tests.helpers import key, logged_in_client, row_of, saved_session

# Each test runs on the db engine and on the cached engine (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("engine")

sync_and_async = pytest.mark.parametrize("run", ["sync", "async"])


def api(run: str, name: str, *args: Any) -> Any:
    """Call a public function, or its async twin through the event loop."""
    if run == "sync":
        return getattr(user_sessions, name)(*args)
    return async_to_sync(getattr(user_sessions, "a" + name))(*args)


class TestUserIndex:
    @pytest.mark.parametrize("prefix", ["", "/async"])
    def test_login_records_the_user_and_logout_removes_the_row(
        self, alias: str, make_user: Any, prefix: str
    ) -> None:
        user = make_user()
        client = logged_in_client(user, prefix + "/login/{}/")
        row = row_of(client)
        assert row.user_id == str(user.pk)
        assert client.get(prefix + "/whoami/").content == str(user.pk).encode()
        client.get(prefix + "/logout/")
        assert not Session.objects.filter(user_id=str(user.pk)).exists()
        assert Session.objects.count() == 0

    @sync_and_async
    def test_every_save_follows_the_session_data(self, alias: str, run: str) -> None:
        store = SessionStore()
        store[SESSION_KEY] = "42"
        call = store.save if run == "sync" else async_to_sync(store.asave)
        call()
        assert Session.objects.get().user_id == "42"
        store["cart"] = [1]
        del store[SESSION_KEY]
        call()
        row = Session.objects.get()
        assert row.user_id is None
        assert row.get_decoded() == {"cart": [1]}

    def test_a_merged_save_records_the_user_of_the_merged_data(self, alias: str) -> None:
        first = saved_session(visits=1)
        second = SessionStore(first.session_key)
        assert second.get("visits") == 1  # read before the login below
        first[SESSION_KEY] = "7"
        first.save()
        second["visits"] = 2
        with count_statements(alias) as counted:
            second.save()  # conflicts, merges the login in, records it
        assert counted.count > 1  # the conflict really happened
        row = Session.objects.get()
        assert row.user_id == "7"
        assert row.get_decoded() == {"visits": 2, SESSION_KEY: "7"}

    @pytest.mark.parametrize(
        ("stored", "indexed"),
        [
            ("9", "9"),
            (9, "9"),
            ("", None),
            (True, None),
            (None, None),
            ({"id": 9}, None),
            ("x" * 255, "x" * 255),
            ("x" * 256, None),
        ],
    )
    def test_malformed_user_ids_are_not_indexed_and_the_session_still_works(
        self, alias: str, stored: object, indexed: str | None
    ) -> None:
        store = saved_session(**{SESSION_KEY: stored, "other": 1})
        assert Session.objects.get().user_id == indexed
        assert SessionStore(store.session_key).load() == {SESSION_KEY: stored, "other": 1}

    def test_user_id_from_session_reads_logins_key(self) -> None:
        assert user_id_from_session({SESSION_KEY: "5"}) == "5"
        assert user_id_from_session({}) is None


class TestListSessions:
    @sync_and_async
    def test_live_sessions_of_the_user_most_recent_first(
        self, alias: str, make_user: Any, run: str
    ) -> None:
        alice, bob = make_user("alice"), make_user("bob")
        older = saved_session(**{SESSION_KEY: str(alice.pk)})
        newer = saved_session(**{SESSION_KEY: str(alice.pk)})
        Session.objects.for_key(key(older)).update(
            updated_at=timezone.now() - datetime.timedelta(hours=1)
        )
        expired = saved_session(**{SESSION_KEY: str(alice.pk)})
        Session.objects.for_key(key(expired)).update(
            expire_date=timezone.now() - datetime.timedelta(seconds=1)
        )
        saved_session(**{SESSION_KEY: str(bob.pk)})
        saved_session(anonymous=True)

        listed = api(run, "list_sessions", alice, newer)
        assert [s.id for s in listed] == [
            Session.objects.for_key(key(store)).get().key_hash for store in (newer, older)
        ]
        assert [s.current for s in listed] == [True, False]
        first = listed[0]
        assert isinstance(first, UserSession)
        row = Session.objects.for_key(key(newer)).get()
        assert (first.created_at, first.last_activity, first.expire_date) == (
            row.created_at,
            row.updated_at,
            row.expire_date,
        )
        assert (first.ip, first.user_agent) == (None, None)
        assert key(newer) not in repr(listed)
        assert len(api(run, "list_sessions", bob)) == 1

    def test_sync_and_async_agree(self, alias: str, make_user: Any) -> None:
        user = make_user()
        current = saved_session(**{SESSION_KEY: str(user.pk)})
        saved_session(**{SESSION_KEY: str(user.pk)})
        assert api("sync", "list_sessions", user, current) == api(
            "async", "list_sessions", user, current
        )

    def test_by_primary_key_value(self, alias: str, make_user: Any) -> None:
        user = make_user()
        saved_session(**{SESSION_KEY: str(user.pk)})
        assert len(list_sessions(user.pk)) == len(list_sessions(str(user.pk))) == 1


class TestRevoke:
    @sync_and_async
    def test_revoke_one_logs_that_device_out(self, alias: str, make_user: Any, run: str) -> None:
        user = make_user()
        phone, laptop = logged_in_client(user), logged_in_client(user)
        phone_id = row_of(phone).key_hash
        assert api(run, "revoke_session", user, phone_id) is True
        assert phone.get("/whoami/").content == b"anonymous"
        assert laptop.get("/whoami/").content == str(user.pk).encode()
        assert api(run, "revoke_session", user, phone_id) is False  # already gone

    @sync_and_async
    def test_another_users_session_is_never_revoked(
        self, alias: str, make_user: Any, run: str
    ) -> None:
        alice, mallory = make_user("alice"), make_user("mallory")
        client = logged_in_client(alice)
        assert api(run, "revoke_session", mallory, row_of(client).key_hash) is False
        assert client.get("/whoami/").content == str(alice.pk).encode()

    @pytest.mark.parametrize(
        "session_id", ["", "x", "A" * 64, "0" * 63, "0" * 65, "' OR 1=1 --", None, 5]
    )
    def test_malformed_ids_revoke_nothing_and_send_no_query(
        self, alias: str, make_user: Any, session_id: Any
    ) -> None:
        user = make_user()
        client = logged_in_client(user)
        with count_statements(alias) as counted:
            assert revoke_session(user, session_id) is False
        assert counted.count == 0
        assert client.get("/whoami/").content == str(user.pk).encode()

    @sync_and_async
    def test_log_out_other_devices(self, alias: str, make_user: Any, run: str) -> None:
        alice, bob = make_user("alice"), make_user("bob")
        here, phone, tablet = (logged_in_client(alice) for _ in range(3))
        elsewhere = logged_in_client(bob)
        current = SessionStore(here.cookies["sessionid"].value)
        assert api(run, "revoke_all_sessions", alice, current) == 2
        assert here.get("/whoami/").content == str(alice.pk).encode()
        for client in (phone, tablet):
            assert client.get("/whoami/").content == b"anonymous"
        assert elsewhere.get("/whoami/").content == str(bob.pk).encode()

    @sync_and_async
    def test_revoke_all(self, alias: str, make_user: Any, run: str) -> None:
        user = make_user()
        clients = [logged_in_client(user) for _ in range(2)]
        assert api(run, "revoke_all_sessions", user) == 2
        assert all(c.get("/whoami/").content == b"anonymous" for c in clients)
        assert api(run, "revoke_all_sessions", user) == 0

    def test_a_request_under_way_cannot_write_a_revoked_session_back(
        self, alias: str, make_user: Any
    ) -> None:
        user = make_user()
        store = saved_session(**{SESSION_KEY: str(user.pk)})
        in_flight = SessionStore(store.session_key)
        assert in_flight.get(SESSION_KEY) == str(user.pk)  # the request read it
        revoke_all_sessions(user)
        in_flight["cart"] = ["book"]
        with pytest.raises(UpdateError):
            in_flight.save()
        assert Session.objects.count() == 0


class TestUserIds:
    def test_anonymous_and_unsaved_users_are_refused(self, alias: str) -> None:
        from django.contrib.auth import get_user_model

        with pytest.raises(ValueError, match="anonymous"):
            list_sessions(AnonymousUser())
        with pytest.raises(ValueError, match="not saved"):
            revoke_all_sessions(get_user_model()(username="ghost"))
        with pytest.raises(ValueError, match="is not a"):
            list_sessions(Session(key_hash="0" * 64))

    @pytest.mark.parametrize("value", ["abc", "", None, "1.5", [1]])
    def test_malformed_primary_keys_are_refused(self, alias: str, value: object) -> None:
        with pytest.raises(ValueError, match="not a valid primary key"):
            revoke_all_sessions(value)

    def test_an_unknown_user_has_no_sessions(self, alias: str) -> None:
        assert list_sessions(987654) == []
        assert revoke_all_sessions(987654) == 0

    def test_uuid_primary_keys(self, alias: str, settings: Any, make_user: Any) -> None:
        settings.AUTH_USER_MODEL = "accounts.UUIDUser"
        user = make_user()
        client = logged_in_client(user, "/async/login/{}/")
        assert row_of(client).user_id == str(user.pk)
        # The same user however the key is written.
        assert user_id(user) == user_id(user.pk.hex) == user_id(str(user.pk).upper())
        assert len(list_sessions(user.pk.hex)) == 1
        with pytest.raises(ValueError, match="not a valid primary key"):
            list_sessions("not-a-uuid")
        assert revoke_all_sessions(uuid.uuid4()) == 0
        assert revoke_all_sessions(user) == 1

    def test_string_primary_keys(self, alias: str, settings: Any, make_user: Any) -> None:
        settings.AUTH_USER_MODEL = "accounts.EmailUser"
        user = make_user(email_key="alice@example.com")
        client = logged_in_client(user)
        assert row_of(client).user_id == "alice@example.com"
        assert [s.current for s in list_sessions("alice@example.com")] == [False]
        assert revoke_session(user, row_of(client).key_hash) is True
        with pytest.raises(ValueError, match="255"):
            list_sessions("x" * 256)
