from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from django_sql_sessions.backends.db import SessionStore
from django_sql_sessions.devices import (
    GUESSED_NAME_LENGTH,
    UNKNOWN_DEVICE,
    anonymize_ip,
    clean_user_agent,
    device_name,
)
from django_sql_sessions.models import Session
from django_sql_sessions.user_sessions import list_sessions
from tests.counting import count_statements
from tests.helpers import key, row_of, saved_session

# Each test runs on the db engine and on the cached engine (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("engine")

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0"
both_paths = pytest.mark.parametrize("prefix", ["", "/async"], ids=["sync", "async"])


@pytest.mark.parametrize(
    ("address", "v4", "v6", "stored"),
    [
        ("203.0.113.77", 24, 48, "203.0.113.0"),
        ("203.0.113.77", 16, 48, "203.0.0.0"),
        ("203.0.113.77", 32, 48, "203.0.113.77"),
        ("203.0.113.77", 0, 48, None),
        ("2001:db8:abcd:12:1:2:3:4", 24, 48, "2001:db8:abcd::"),
        ("2001:db8:abcd:12:1:2:3:4", 24, 64, "2001:db8:abcd:12::"),
        ("2001:db8:abcd:12:1:2:3:4", 24, 128, "2001:db8:abcd:12:1:2:3:4"),
        ("2001:db8:abcd:12:1:2:3:4", 24, 0, None),
        ("::ffff:198.51.100.9", 24, 128, "198.51.100.0"),  # an IPv4 client
        ("fe80::1%eth0", 24, 128, "fe80::1"),  # the zone is not stored
        (" 192.0.2.1 ", 24, 48, "192.0.2.0"),
        ("", 24, 48, None),
        ("unknown", 24, 48, None),
        ("192.0.2.1, 10.0.0.1", 24, 48, None),  # a forwarded-for list is not an address
        (None, 24, 48, None),
    ],
)
def test_anonymize_ip(
    settings: Any, address: object, v4: int, v6: int, stored: str | None
) -> None:
    settings.SQL_SESSIONS_IPV4_PREFIX = v4
    settings.SQL_SESSIONS_IPV6_PREFIX = v6
    assert anonymize_ip(address) == stored


@pytest.mark.parametrize(
    ("header", "stored"),
    [
        (FIREFOX, FIREFOX),
        ("  curl/8.0\t\n", "curl/8.0"),
        ("a\x00b\x1bc", "abc"),
        ("x" * 300, "x" * 255),
        ("", None),
        ("\x00\x01", None),
        (None, None),
    ],
)
def test_clean_user_agent(header: object, stored: str | None) -> None:
    assert clean_user_agent(header) == stored


class TestDeviceDetails:
    @both_paths
    def test_recorded_on_save_when_on(self, alias: str, settings: Any, prefix: str) -> None:
        settings.SQL_SESSIONS_DEVICE_DETAILS = True
        client = Client(REMOTE_ADDR="203.0.113.77", HTTP_USER_AGENT=FIREFOX)
        client.get(prefix + "/write/a/")
        row = row_of(client)
        assert (row.ip, row.user_agent) == ("203.0.113.0", FIREFOX)
        # The latest device wins on the next write.
        client.get(prefix + "/write/b/", REMOTE_ADDR="2001:db8:1:2::9", HTTP_USER_AGENT="curl/8")
        row = row_of(client)
        assert (row.ip, row.user_agent) == ("2001:db8:1::", "curl/8")

    @both_paths
    def test_nothing_recorded_by_default(self, alias: str, prefix: str) -> None:
        client = Client(REMOTE_ADDR="203.0.113.77", HTTP_USER_AGENT=FIREFOX)
        client.get(prefix + "/write/a/")
        row = row_of(client)
        assert (row.ip, row.user_agent) == (None, None)

    def test_a_save_outside_a_request_keeps_the_recorded_details(
        self, alias: str, settings: Any
    ) -> None:
        settings.SQL_SESSIONS_DEVICE_DETAILS = True
        client = Client(REMOTE_ADDR="203.0.113.77", HTTP_USER_AGENT=FIREFOX)
        client.get("/write/a/")
        store = SessionStore(client.cookies["sessionid"].value)
        store["value"] = "from a task"
        store.save()
        row = row_of(client)
        assert (row.ip, row.user_agent) == ("203.0.113.0", FIREFOX)
        assert row.get_decoded() == {"value": "from a task"}

    def test_listed_with_the_users_sessions(
        self, alias: str, settings: Any, make_user: Any
    ) -> None:
        settings.SQL_SESSIONS_DEVICE_DETAILS = True
        user = make_user()
        client = Client(REMOTE_ADDR="2001:db8:abcd:12::1", HTTP_USER_AGENT=FIREFOX)
        client.get(f"/login/{user.pk}/")
        [listed] = list_sessions(user)
        assert (listed.ip, listed.user_agent) == ("2001:db8:abcd::", FIREFOX)
        assert listed.device_name == device_name(FIREFOX)


WINDOWS_FIREFOX = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:140.0) Gecko/20100101 Firefox/140.0"
)
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
# What the example's browser tests run (Debian's chromium, headless).
HEADLESS_CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "HeadlessChrome/156.0.0.0 Safari/537.36"
)
ANDROID_CHROME = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Mobile Safari/537.36"
)
EDGE = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0"
)
MAC_SAFARI = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Safari/605.1.15"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
LONG_UNKNOWN = "PhoneBrowser/1.0 " + "(some build details) " * 5


@pytest.mark.parametrize(
    ("agent", "parsed", "guessed"),
    [
        (WINDOWS_FIREFOX, "Firefox 140 on Windows", "Firefox 140 on Windows"),
        (FIREFOX, "Firefox 140 on Linux", "Firefox 140 on Linux"),
        (IPHONE, "Mobile Safari 17 on iOS", "Mobile Safari 17 on iOS"),
        (HEADLESS_CHROME, "HeadlessChrome 156 on Linux", "HeadlessChrome 156 on Linux"),
        (ANDROID_CHROME, "Chrome Mobile 126 on Android", "Chrome Mobile 126 on Android"),
        (EDGE, "Edge 126 on Windows", "Edge 126 on Windows"),
        (MAC_SAFARI, "Safari 17 on Mac OS X", "Safari 17 on Mac OS X"),
        ("curl/8.4.0", "curl 8", "curl 8"),
        ("curl/7.88.1", "curl 7", "curl 7"),
        ("python-requests/2.31.0", "Python Requests 2", "python-requests 2"),
        (GOOGLEBOT, "Googlebot 2", "Googlebot 2"),
        ("Mozilla/5.0 (X11; Linux x86_64)", "Unknown browser on Linux", None),
        # Not recognised by ua-parser either: the guess, whichever is there.
        ("PhoneBrowser/1.0", "PhoneBrowser 1", None),
        (LONG_UNKNOWN, "PhoneBrowser 1", None),
        ("x" * 300, "x" * (GUESSED_NAME_LENGTH - 1) + "…", None),
        ("   ", UNKNOWN_DEVICE, None),
        (None, UNKNOWN_DEVICE, None),
        ("", UNKNOWN_DEVICE, None),
    ],
)
def test_device_name(
    user_agent_parser: bool, agent: str | None, parsed: str, guessed: str | None
) -> None:
    name = device_name(agent)
    assert name == (parsed if user_agent_parser else guessed or parsed)
    # A name, never the user agent itself when that is long.
    assert len(name) <= GUESSED_NAME_LENGTH


@pytest.mark.parametrize(
    ("agent", "parsed", "guessed"),
    [
        (WINDOWS_FIREFOX, "Firefox on Windows", "Firefox on Windows"),
        (HEADLESS_CHROME, "HeadlessChrome on Linux", "HeadlessChrome on Linux"),
        ("curl/7.88.1", "curl", "curl"),
        ("PhoneBrowser/1.0", "PhoneBrowser", "PhoneBrowser"),
    ],
)
def test_device_name_without_versions(
    user_agent_parser: bool, agent: str, parsed: str, guessed: str
) -> None:
    assert device_name(agent, versions=False) == (parsed if user_agent_parser else guessed)


def age_activity(client: Client, seconds: int) -> datetime.datetime:
    then = timezone.now() - datetime.timedelta(seconds=seconds)
    Session.objects.for_key(client.cookies["sessionid"].value).update(updated_at=then)
    return then


class TestLastActivity:
    @both_paths
    def test_a_read_records_activity_once_the_interval_has_passed(
        self, alias: str, settings: Any, prefix: str
    ) -> None:
        settings.SQL_SESSIONS_DEVICE_DETAILS = True
        client = Client(REMOTE_ADDR="203.0.113.77", HTTP_USER_AGENT="old")
        client.get(prefix + "/write/a/")
        then = age_activity(client, 301)
        before = row_of(client)
        with count_statements(alias) as counted:
            client.get(prefix + "/read/", HTTP_USER_AGENT="new")
        assert counted.count == 2  # the load, and the activity UPDATE
        row = row_of(client)
        assert row.updated_at > then + datetime.timedelta(seconds=300)
        assert row.user_agent == "new"
        # Nothing else moved: not the data or the expiry. The version moves
        # on, as with every change.
        assert (row.data, row.expire_date, row.version) == (
            before.data,
            before.expire_date,
            before.version + 1,
        )

    @both_paths
    def test_within_the_interval_a_read_writes_nothing(self, alias: str, prefix: str) -> None:
        client = Client()
        client.get(prefix + "/write/a/")
        then = age_activity(client, 299)
        with count_statements(alias) as counted:
            assert client.get(prefix + "/read/").content == b"a"
        assert counted.count == 1
        assert row_of(client).updated_at == then

    def test_zero_turns_the_extra_write_off(self, alias: str, settings: Any) -> None:
        settings.SQL_SESSIONS_ACTIVITY_INTERVAL = 0
        client = Client()
        client.get("/write/a/")
        then = age_activity(client, 10**6)
        with count_statements(alias) as counted:
            client.get("/read/")
        assert counted.count == 1
        assert row_of(client).updated_at == then

    def test_a_request_that_writes_needs_no_second_update(self, alias: str) -> None:
        client = Client()
        client.get("/write/a/")
        age_activity(client, 3600)
        with count_statements(alias) as counted:
            client.get("/write/b/")
        assert counted.count == 2  # load and save
        assert row_of(client).updated_at > timezone.now() - datetime.timedelta(seconds=60)

    def test_a_request_that_never_reads_the_session_costs_nothing(self, alias: str) -> None:
        client = Client()
        client.get("/write/a/")
        then = age_activity(client, 3600)
        with count_statements(alias) as counted:
            client.get("/plain/")
        assert counted.count == 0
        assert row_of(client).updated_at == then


@pytest.mark.parametrize("run", ["sync", "async"])
def test_record_activity_and_its_async_twin(alias: str, settings: Any, run: str) -> None:
    from asgiref.sync import async_to_sync

    from django_sql_sessions.devices import Device

    store = saved_session(value=1)
    then = timezone.now() - datetime.timedelta(hours=1)
    Session.objects.for_key(key(store)).update(updated_at=then)  # which moves the version on
    version = Session.objects.for_key(key(store)).get().version
    loaded = SessionStore(key(store))
    assert loaded["value"] == 1
    loaded.device = Device("192.0.2.0", "agent")
    record = loaded.record_activity if run == "sync" else async_to_sync(loaded.arecord_activity)
    record()
    row = Session.objects.for_key(key(store)).get()
    assert row.updated_at > then + datetime.timedelta(minutes=59)
    # Like every change, it moves the version on.
    assert (row.ip, row.user_agent, row.version) == ("192.0.2.0", "agent", version + 1)
    # Once per interval: a second call in the same request sends nothing.
    with count_statements(alias) as counted:
        record()
    assert counted.count == 0
    # Recording activity is not a save: an unchanged session's save can still
    # be skipped (SQL_SESSIONS_TOUCH_AFTER), since its stored expiry is as read.
    settings.SQL_SESSIONS_TOUCH_AFTER = 60
    with count_statements(alias) as counted:
        loaded.save()
    assert counted.count == 0
