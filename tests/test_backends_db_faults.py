"""The engine against broken connections, locked databases and hostile input."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.sessions.middleware import SessionMiddleware
from django.core import signals
from django.core.signing import TimestampSigner
from django.db import OperationalError, connections
from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from django_sql_sessions.backends.db import SessionStore
from django_sql_sessions.storage import hash_key, session_table
from tests.counting import count_statements
from tests.helpers import wrote_raw_sql
from tests.servers import kill

# Each test runs on the db engine and on the cached engine (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("engine")

# Fixtures are set up once per test, not per example; every example below
# leaves the table as it found it.
examples = hypothesis_settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def request_cycle(cookie: str | None, value: int) -> HttpResponse:
    """One request as a server runs it: the signals that manage connections around it."""

    def view(request: HttpRequest) -> HttpResponse:
        request.session["visits"] = value
        return HttpResponse()

    headers: dict[str, Any] = {"HTTP_COOKIE": f"sessionid={cookie}"} if cookie else {}
    signals.request_started.send(sender=None)
    try:
        response = SessionMiddleware(view)(RequestFactory().get("/", **headers))
    finally:
        signals.request_finished.send(sender=None)
    assert isinstance(response, HttpResponse)
    return response


@pytest.fixture
def server_alias(alias: str) -> Iterator[str]:
    """PostgreSQL or MariaDB/MySQL with persistent, health-checked connections."""
    connection = connections[alias]
    if connection.vendor not in ("postgresql", "mysql"):
        pytest.skip("needs a database server")
    saved = dict(connection.settings_dict)
    connection.close()
    connection.settings_dict.update(CONN_MAX_AGE=None, CONN_HEALTH_CHECKS=True)
    yield alias
    connection.close()
    connection.settings_dict.clear()
    connection.settings_dict.update(saved)


class TestConnectionFaults:
    def test_a_connection_killed_between_requests(self, server_alias: str) -> None:
        key = request_cycle(None, 1).cookies["sessionid"].value
        kill(server_alias)
        time.sleep(0.2)  # let the server finish ending it

        response = request_cycle(key, 2)
        assert response.status_code == 200
        assert SessionStore(key).load() == {"visits": 2}

    def test_an_unreachable_database_fails_loudly_and_writes_nothing(
        self, server_alias: str
    ) -> None:
        key = request_cycle(None, 1).cookies["sessionid"].value
        connection = connections[server_alias]
        port = connection.settings_dict["PORT"]
        connection.close()
        connection.settings_dict["PORT"] = "1"  # nothing listens there
        try:
            with pytest.raises(OperationalError):
                request_cycle(key, 2)
        finally:
            connection.close()
            connection.settings_dict["PORT"] = port
        assert SessionStore(key).load() == {"visits": 1}


class TestSqliteLocking:
    """A writer holding SQLite's lock makes a save wait, up to OPTIONS["timeout"]."""

    @pytest.fixture
    def locked(self, threaded_alias: str) -> Iterator[tuple[str, threading.Event]]:
        import sqlite3

        connection = connections[threaded_alias]
        if connection.vendor != "sqlite":
            pytest.skip("SQLite only")
        held, release = threading.Event(), threading.Event()

        def hold_the_write_lock() -> None:
            other = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
            other.execute("BEGIN IMMEDIATE")
            held.set()
            release.wait(10)
            other.execute("COMMIT")
            other.close()

        holder = threading.Thread(target=hold_the_write_lock)
        store = SessionStore()
        store["n"] = 1
        store.save()
        self.key = str(store.session_key)
        holder.start()
        held.wait(10)
        yield threaded_alias, release
        release.set()
        holder.join()

    def test_a_save_waits_for_the_lock(self, locked: tuple[str, threading.Event]) -> None:
        _alias, release = locked
        threading.Timer(0.3, release.set).start()
        store = SessionStore(self.key)
        store["n"] = 2
        started = time.monotonic()
        store.save()
        assert time.monotonic() - started >= 0.25
        assert SessionStore(self.key).load() == {"n": 2}

    def test_past_the_timeout_the_error_is_a_database_error(
        self, locked: tuple[str, threading.Event]
    ) -> None:
        alias, _release = locked
        connection = connections[alias]
        connection.close()
        connection.settings_dict["OPTIONS"]["timeout"] = 0.05
        try:
            store = SessionStore(self.key)
            store["n"] = 2
            with pytest.raises(OperationalError, match="database is locked"):
                store.save()
        finally:
            connection.close()
            connection.settings_dict["OPTIONS"]["timeout"] = 20


class TestHostileInput:
    @examples
    @given(cookie=st.text(max_size=300))
    def test_any_cookie_loads_empty_or_its_own_session(self, alias: str, cookie: str) -> None:
        store = SessionStore()
        store["owner"] = "victim"
        store.save()
        try:
            loaded = SessionStore(cookie)
            with count_statements(alias) as statements:
                data = loaded.load()
            assert data == ({"owner": "victim"} if cookie == store.session_key else {})
            assert statements.count <= 1
            loaded["owner"] = "attacker"
            loaded.save()
            # A fresh key, never the victim's row.
            assert SessionStore(store.session_key).load() == {"owner": "victim"}
        finally:
            store.delete()
            SessionStore().delete(loaded.session_key)

    @examples
    @given(
        stored=st.one_of(
            st.text(max_size=2000),
            st.binary(max_size=200).map(lambda b: b.hex()),
            st.just(""),
            st.just("x" * 200_000),
        )
    )
    def test_any_stored_data_loads_as_a_session_or_empty(self, alias: str, stored: str) -> None:
        stored = stored.replace("\x00", "")  # PostgreSQL text cannot hold NUL
        store = SessionStore()
        store["owner"] = "ada"
        store.save()
        other = SessionStore()
        other["owner"] = "bob"
        other.save()
        try:
            write_raw(alias, str(store.session_key), stored)
            loaded = SessionStore(store.session_key).load()
            assert isinstance(loaded, dict)
            assert SessionStore(other.session_key).load() == {"owner": "bob"}
        finally:
            store.delete()
            other.delete()

    @pytest.mark.parametrize(
        "stored",
        [
            "truncated",
            "eyJvd25lciI6ImV2ZSJ9:1xWjhd:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "not json at all",
        ],
    )
    def test_damaged_rows_load_empty(self, alias: str, stored: str) -> None:
        store = SessionStore()
        store["owner"] = "ada"
        store.save()
        good = store.encode({"owner": "ada"})
        damaged = good[: len(good) // 2] if stored == "truncated" else stored
        write_raw(alias, str(store.session_key), damaged)
        assert SessionStore(store.session_key).load() == {}

    def test_data_signed_for_another_purpose_is_refused(self, alias: str) -> None:
        store = SessionStore()
        store["owner"] = "ada"
        store.save()
        forged = TimestampSigner(salt="another.salt").sign_object({"owner": "eve"})
        write_raw(alias, str(store.session_key), forged)
        assert SessionStore(store.session_key).load() == {}


def write_raw(alias: str, key: str, data: str) -> None:
    connection = connections[alias]
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {connection.ops.quote_name(session_table())} SET data = %s "
            "WHERE key_hash = %s",
            [data, hash_key(key)],
        )
    wrote_raw_sql(key)
