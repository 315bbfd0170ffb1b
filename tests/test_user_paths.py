"""
Bugs found by using the package as a site does: through the middleware, the
test client and the model's manager. Each test failed before its fix.
"""

from __future__ import annotations

import datetime
import zoneinfo
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import connections
from django.test import Client, override_settings
from django.utils import timezone

from django_sql_sessions.backends.db import SessionStore
from django_sql_sessions.models import Session
from django_sql_sessions.storage import hash_key
from tests.helpers import key, logged_in_client, row_of, saved_session

# Each test runs on the db engine and on the cached engine (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("engine")

CHICAGO = zoneinfo.ZoneInfo("America/Chicago")


def stored_expiry(client: Client) -> datetime.datetime:
    return row_of(client).expire_date


class TestTouchAfterWithAShortExpiry:
    def test_an_active_user_is_never_logged_out(
        self, alias: str, settings: Any, clock: Callable[[float], None]
    ) -> None:
        settings.SESSION_SAVE_EVERY_REQUEST = True
        settings.SQL_SESSIONS_TOUCH_AFTER = 300
        client = Client()
        client.get("/expire-in/120/")
        # A request every 50 s keeps a 120-second session alive, as it does
        # without SQL_SESSIONS_TOUCH_AFTER.
        for step in range(1, 13):
            clock(step * 50)
            assert client.get("/read/").content == b"short", f"logged out at {step * 50}s"

    def test_long_sessions_still_skip_writes(
        self, alias: str, settings: Any, clock: Callable[[float], None]
    ) -> None:
        settings.SESSION_SAVE_EVERY_REQUEST = True
        settings.SQL_SESSIONS_TOUCH_AFTER = 300
        client = Client()
        client.get("/write/x/")
        first = stored_expiry(client)
        clock(200)
        client.get("/read/")
        assert stored_expiry(client) == first  # skipped: within 300 s
        clock(400)
        client.get("/read/")
        assert stored_expiry(client) > first


class TestCycleKeyAfterRevocation:
    @pytest.mark.parametrize("prefix", ["", "/async"])
    def test_a_revoked_login_stays_revoked(self, alias: str, make_user: Any, prefix: str) -> None:
        user = make_user()
        client = logged_in_client(user)
        assert client.get("/whoami/").content == str(user.pk).encode()
        response = client.get(prefix + "/revoked-then-password-changed/")
        assert response.status_code == 200
        assert client.get("/whoami/").content == b"anonymous"
        assert not Session.objects.filter(user_id=str(user.pk)).exists()


@pytest.fixture
def with_time_zones(alias: str) -> Iterator[None]:
    """USE_TZ = True, also when the suite runs without (SQL_SESSIONS_TEST_USE_TZ=0)."""
    # A connection keeps the time zone handling it was opened with: close it
    # on the way in and out.
    connections[alias].close()
    with override_settings(USE_TZ=True):
        yield
    connections[alias].close()


class TestNaiveExpiry:
    @pytest.mark.usefixtures("with_time_zones")
    def test_read_in_time_zone_as_djangos_datetime_field_does(
        self, alias: str, settings: Any
    ) -> None:
        settings.SQL_SESSIONS_TOUCH_AFTER = 60
        settings.SESSION_SAVE_EVERY_REQUEST = True
        naive = (timezone.now() + datetime.timedelta(days=2)).astimezone(CHICAGO)
        naive = naive.replace(tzinfo=None, microsecond=0)
        client = Client()
        with pytest.warns(RuntimeWarning, match="naive datetime"):
            assert client.get(f"/expire-at-naive/{naive.isoformat()}/").status_code == 200
        assert stored_expiry(client) == naive.replace(tzinfo=CHICAGO)
        # Later requests, which compare the stored expiry with this one when
        # SQL_SESSIONS_TOUCH_AFTER is set, neither crash nor move it.
        with pytest.warns(RuntimeWarning, match="naive datetime"):
            assert client.get("/read/").content == b"naive"
        assert stored_expiry(client) == naive.replace(tzinfo=CHICAGO)

    def test_a_stored_expiry_that_is_not_a_date_falls_back_to_the_cookie_age(
        self, alias: str, settings: Any
    ) -> None:
        store = saved_session(value="v", _session_expiry="next tuesday")
        client = Client()
        client.cookies["sessionid"] = key(store)
        assert client.get("/read/").content == b"v"
        client.get("/write/w/")
        expected = timezone.now() + datetime.timedelta(seconds=settings.SESSION_COOKIE_AGE)
        assert abs((stored_expiry(client) - expected).total_seconds()) < 60


class TestExpiryFollowsTheCookieAge:
    def test_a_lower_session_cookie_age_takes_effect_on_the_next_save(
        self, alias: str, settings: Any
    ) -> None:
        client = Client()
        client.get("/write/a/")
        settings.SESSION_COOKIE_AGE = 600
        client.get("/write/b/")
        remaining = (stored_expiry(client) - timezone.now()).total_seconds()
        assert 500 < remaining <= 600

    def test_get_session_cookie_age_overrides_are_honoured(
        self, alias: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        store = saved_session(n=1)
        monkeypatch.setattr(SessionStore, "get_session_cookie_age", lambda self: 60)
        loaded = SessionStore(key(store))
        loaded["n"] = 2
        loaded.save()
        remaining = Session.objects.for_key(key(store)).get().expire_date - timezone.now()
        assert 0 < remaining.total_seconds() <= 60


class TestManagerSave:
    def test_a_request_that_loaded_earlier_merges_instead_of_overwriting(self, alias: str) -> None:
        store = saved_session(cart=[1], theme="light")
        request = SessionStore(key(store))
        assert request["cart"] == [1]
        Session.objects.save(
            key(store),
            {"cart": [1], "theme": "dark"},
            timezone.now() + datetime.timedelta(days=1),
        )
        request["cart"] = [1, 2]
        request.save()
        assert SessionStore(key(store)).load() == {"cart": [1, 2], "theme": "dark"}

    def test_creates_and_updates_rows(self, alias: str) -> None:
        later = timezone.now() + datetime.timedelta(hours=1)
        row = Session.objects.save("a" * 32, {"n": 1}, later)
        assert (row.version, row.get_decoded()) == (1, {"n": 1})
        row = Session.objects.save("a" * 32, {"n": 2}, later)
        assert (row.version, row.get_decoded()) == (2, {"n": 2})
        Session.objects.save("a" * 32, {}, later)
        assert not Session.objects.for_key("a" * 32).exists()


def by(**lookups: Any) -> dict[str, Any]:
    # Lookups the type checker's Django plugin does not know: the manager
    # translates them.
    return lookups


class TestDjangoModelLookups:
    """Code written for Django's session model finds our rows by raw key."""

    def test_session_key_lookups(self, alias: str) -> None:
        store = saved_session(n=1)
        other = saved_session(n=2)
        assert Session.objects.get(**by(session_key=key(store))).get_decoded() == {"n": 1}
        assert Session.objects.filter(**by(session_key=key(store))).count() == 1
        assert Session.objects.exclude(**by(session_key=key(store))).get().get_decoded() == {
            "n": 2
        }
        found = Session.objects.filter(**by(session_key__in=[key(store), key(other), "!bad"]))
        assert found.count() == 2
        assert Session.objects.get(pk=key(store)).key_hash == hash_key(key(store))
        assert Session.objects.get(pk=hash_key(key(store))).get_decoded() == {"n": 1}
        assert Session.objects.filter(pk__in=[key(store), key(other)]).count() == 2
        assert Session.objects.filter(pk__in=[hash_key(key(store))]).count() == 1
        Session.objects.filter(**by(session_key=key(store))).delete()
        assert SessionStore(key(store)).load() == {}
        assert SessionStore(key(other)).load() == {"n": 2}

    def test_translated_lookups_add_conditions_never_replace_them(self, alias: str) -> None:
        first, second = saved_session(n=1), saved_session(n=2)
        second_hash = hash_key(key(second))
        # Each of these asks for both sessions at once: nothing matches.
        assert not Session.objects.filter(**by(session_key=key(first), pk=key(second))).exists()
        assert not Session.objects.filter(
            **by(session_key=key(first), key_hash=second_hash)
        ).exists()
        assert not Session.objects.filter(
            **by(key_hash__in=[second_hash], session_key__in=[key(first)])
        ).exists()
        Session.objects.filter(**by(session_key=key(first), pk=key(second))).delete()
        assert SessionStore(key(second)).load() == {"n": 2}

    @pytest.mark.parametrize("value", ["", "short", "UPPER" * 4, "x" * 65, "ключ" * 4, None])
    def test_values_that_are_not_keys_match_nothing(self, alias: str, value: object) -> None:
        saved_session(n=1)
        assert not Session.objects.filter(**by(session_key=value)).exists()
        assert not Session.objects.filter(**by(session_key__in=[value])).exists()


class TestDevicesOnSmallIpv6Addresses:
    @pytest.mark.parametrize(
        ("address", "stored"),
        [("::203.0.113.7", "::"), ("::1", "::"), ("2001:db8:1:2::1", "2001:db8::")],
    )
    def test_truncated_as_ipv6(self, alias: str, settings: Any, address: str, stored: str) -> None:
        settings.SQL_SESSIONS_DEVICE_DETAILS = True
        settings.SQL_SESSIONS_IPV6_PREFIX = 32
        client = Client(REMOTE_ADDR=address)
        client.get("/write/a/")
        assert row_of(client).ip == stored


class TestActivityAfterAServerError:
    def test_no_write_after_a_5xx(
        self, alias: str, settings: Any, clock: Callable[[float], None]
    ) -> None:
        settings.SQL_SESSIONS_ACTIVITY_INTERVAL = 60
        client = Client()
        client.get("/write/a/")
        before = row_of(client).updated_at
        clock(120)
        assert client.get("/read-then-fail/").status_code == 500
        assert row_of(client).updated_at == before
        client.get("/read/")
        assert row_of(client).updated_at > before


class TestModelInstanceSave:
    def test_moves_the_version_on_so_a_slower_request_merges(self, alias: str) -> None:
        store = saved_session(cart=[1])
        slower = SessionStore(key(store))
        assert slower["cart"] == [1]
        row = Session.objects.get(**by(session_key=key(store)))
        later = timezone.now() + datetime.timedelta(days=30)
        row.expire_date = later
        row.save(update_fields=["expire_date"])
        assert row.version == 2

        slower["flag"] = True
        slower.save()
        stored = Session.objects.for_key(key(store)).get()
        assert stored.get_decoded() == {"cart": [1], "flag": True}
        # The merge keeps the later expiry the instance save wrote.
        assert abs((stored.expire_date - later).total_seconds()) < 1
        assert stored.version == 3  # the instance save, then the merged write


class TestAbsoluteLifetime:
    """SQL_SESSIONS_ABSOLUTE_LIFETIME: from login, however active the session stays."""

    @pytest.mark.parametrize("prefix", ["", "/async"])
    def test_an_active_session_ends_at_its_boundary(
        self,
        alias: str,
        settings: Any,
        clock: Callable[[float], None],
        make_user: Any,
        prefix: str,
    ) -> None:
        settings.SQL_SESSIONS_ABSOLUTE_LIFETIME = 3600
        settings.SESSION_SAVE_EVERY_REQUEST = True
        user = make_user()
        client = Client()
        client.get(prefix + "/write/cart/")  # anonymous, at t0
        clock(3000)
        # Login, 50 minutes later, starts the clock: the anonymous start does
        # not cut the logged-in session short.
        assert client.get(f"{prefix}/login/{user.pk}/").status_code == 200
        for seconds in (3000 + 1200, 3000 + 2400, 3000 + 3599):
            # Active every 20 minutes: the idle timeout never bites.
            clock(seconds)
            assert client.get(prefix + "/whoami/").content == str(user.pk).encode()
        clock(3000 + 3601)
        assert client.get(prefix + "/whoami/").content == b"anonymous"
        # Its idle expiry is still ahead; the load statement refused it.
        assert Session.objects.filter(user_id=str(user.pk), expire_date__gt=timezone.now())

    def test_an_anonymous_session_counts_from_its_creation(
        self, alias: str, settings: Any, clock: Callable[[float], None]
    ) -> None:
        settings.SQL_SESSIONS_ABSOLUTE_LIFETIME = 600
        settings.SESSION_SAVE_EVERY_REQUEST = True
        client = Client()
        client.get("/write/cart/")
        clock(599)
        assert client.get("/read/").content == b"cart"
        clock(601)
        assert client.get("/read/").content == b"None"

    def test_off_by_default(
        self, alias: str, settings: Any, clock: Callable[[float], None]
    ) -> None:
        settings.SESSION_SAVE_EVERY_REQUEST = True
        client = Client()
        client.get("/write/cart/")
        for day in range(1, 30):  # a request a day for a month
            clock(day * 86400)
            assert client.get("/read/").content == b"cart"

    def test_rotating_the_key_keeps_the_clock(
        self, alias: str, clock: Callable[[float], None]
    ) -> None:
        # Issue 20, defect 3: cycle_key() (OWASP's id rotation, or
        # update_session_auth_hash()) must not extend the absolute lifetime.
        store = saved_session(value="x")
        created = row_of_key(store.session_key).created_at
        clock(90)
        store.cycle_key()
        store.save()
        assert row_of_key(store.session_key).created_at == created

    def test_logging_in_again_restarts_the_clock(
        self, alias: str, settings: Any, clock: Callable[[float], None], make_user: Any
    ) -> None:
        # Django's login() of the same user neither flushes nor moves the
        # key; its user_logged_in signal restarts the clock.
        settings.SQL_SESSIONS_ABSOLUTE_LIFETIME = 3600
        user = make_user()
        client = Client()
        assert client.get(f"/login/{user.pk}/").status_code == 200
        session_key = client.cookies["sessionid"].value
        created = row_of_key(session_key).created_at
        clock(90)
        assert client.get(f"/login/{user.pk}/").status_code == 200
        assert client.cookies["sessionid"].value == session_key
        assert row_of_key(session_key).created_at == created + datetime.timedelta(seconds=90)


def row_of_key(session_key: str | None) -> Session:
    assert session_key is not None
    return Session.objects.get(key_hash=hash_key(session_key))
