"""
SQL_SESSIONS_MAX_PER_USER (django_sql_sessions/limits.py): at a login the
user's sessions beyond the limit are revoked, least recently active first, or
the login is refused; parallel logins from several processes keep it.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings as django_settings
from django.contrib.auth import SESSION_KEY, alogin, login
from django.contrib.auth.models import AnonymousUser
from django.contrib.auth.views import LoginView
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.db import OperationalError, transaction
from django.template.response import TemplateResponse
from django.test import Client, RequestFactory

from django_sql_sessions import limits
from django_sql_sessions.backends.db import SessionStore
from django_sql_sessions.exceptions import TooManySessions
from django_sql_sessions.limits import limit_at_login
from django_sql_sessions.models import Session, UserLock
from django_sql_sessions.signals import session_revoked
from django_sql_sessions.storage import hash_key
from tests.conftest import ping_redis
from tests.helpers import logged_in_client

ROOT = Path(__file__).resolve().parent.parent
PREFIXES = pytest.mark.parametrize("prefix", ["", "/async"], ids=["sync", "async"])


@pytest.fixture
def revoked() -> Iterator[list[dict[str, Any]]]:
    """The session_revoked signals sent during the test."""
    sent: list[dict[str, Any]] = []

    def receive(sender: object, **kwargs: Any) -> None:
        sent.append(kwargs)

    session_revoked.connect(receive)
    yield sent
    session_revoked.disconnect(receive)


def who(client: Client, prefix: str = "") -> str:
    return client.get(prefix + "/whoami/").content.decode()


def live(user: Any) -> set[str]:
    return set(
        Session.objects.active().filter(user_id=str(user.pk)).values_list("key_hash", flat=True)
    )


def key_hash_of(client: Client) -> str:
    return hash_key(client.cookies[django_settings.SESSION_COOKIE_NAME].value)


# On the db engine and on the cached engines (tests/conftest.py).
@pytest.mark.usefixtures("engine")
class TestRevoke:
    @PREFIXES
    def test_the_least_recently_active_session_is_logged_out(
        self, alias: str, make_user: Any, settings: Any, prefix: str, revoked: list[Any]
    ) -> None:
        settings.SQL_SESSIONS_MAX_PER_USER = 2
        user = make_user()
        first = logged_in_client(user, prefix + "/login/{}/")
        second = logged_in_client(user, prefix + "/login/{}/")
        # The first becomes the most recent by activity, not by login.
        first.get(prefix + "/write/active/")
        assert not revoked
        second_hash = key_hash_of(second)
        third = logged_in_client(user, prefix + "/login/{}/")
        assert live(user) == {key_hash_of(first), key_hash_of(third)}
        assert who(second, prefix) == "anonymous"
        assert who(first, prefix) == who(third, prefix) == str(user.pk)
        [signal] = revoked
        assert signal["via"] == "limit"
        assert signal["key_hashes"] == [second_hash]
        assert signal["user_id"] == str(user.pk)
        assert signal["using"] == alias

    def test_a_limit_of_one_keeps_the_newest_login_only(
        self, alias: str, make_user: Any, settings: Any, revoked: list[Any]
    ) -> None:
        settings.SQL_SESSIONS_MAX_PER_USER = 1
        user, other = make_user(), make_user("bob")
        clients = [logged_in_client(user) for _ in range(4)]
        bobs = logged_in_client(other)
        assert live(user) == {key_hash_of(clients[-1])}
        assert [who(client) for client in clients] == ["anonymous"] * 3 + [str(user.pk)]
        assert who(bobs) == str(other.pk), "another user's session was revoked"
        assert [s["via"] for s in revoked] == ["limit"] * 3

    def test_logging_in_again_in_the_same_session_does_not_count_it(
        self, alias: str, make_user: Any, settings: Any, revoked: list[Any]
    ) -> None:
        settings.SQL_SESSIONS_MAX_PER_USER = 1
        user = make_user()
        client = logged_in_client(user)
        client.get(f"/login/{user.pk}/")
        assert who(client) == str(user.pk)
        assert len(live(user)) == 1
        assert not revoked

    @pytest.mark.parametrize("off", [None, 0])
    def test_off(self, alias: str, make_user: Any, settings: Any, off: int | None) -> None:
        settings.SQL_SESSIONS_MAX_PER_USER = off
        user = make_user()
        clients = [logged_in_client(user) for _ in range(3)]
        assert len(live(user)) == 3
        assert not UserLock.objects.exists(), "a login took a lock with the limit off"
        assert all(who(client) == str(user.pk) for client in clients)

    def test_a_rolled_back_login_revokes_nothing(
        self, alias: str, make_user: Any, settings: Any, revoked: list[Any]
    ) -> None:
        settings.SQL_SESSIONS_MAX_PER_USER = 1
        user = make_user()
        first = logged_in_client(user)
        request = RequestFactory().get("/")
        request.session = SessionStore()
        with contextlib.suppress(RuntimeError), transaction.atomic(using=alias):
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            raise RuntimeError
        assert who(first) == str(user.pk)
        assert not revoked, "a signal for a revocation that was rolled back"

    def test_a_claim_tried_again_after_a_conflict_keeps_the_login(
        self, alias: str, make_user: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """
        A Galera certification failure (or a deadlock) at the claim's commit
        rolls back the session's save; the store in memory must not keep
        believing it wrote the login, or the second attempt's merged save
        drops the user's keys (one session fewer than the limit on Galera).
        """
        settings.SQL_SESSIONS_MAX_PER_USER = 2
        user = make_user()
        first = logged_in_client(user)
        claim_locked, failed = limits._claim_locked, list[bool]()

        def conflict_at_the_first_commit(*args: Any, **kwargs: Any) -> Any:
            result = claim_locked(*args, **kwargs)
            if not failed:
                failed.append(True)
                raise OperationalError(1213, "Deadlock found when trying to get lock")
            return result

        monkeypatch.setattr(limits, "_claim_locked", conflict_at_the_first_commit)
        monkeypatch.setattr(limits, "retry_after", lambda connection, exc, attempt: attempt == 1)
        second = logged_in_client(user)
        assert failed, "the conflict was not simulated"
        assert who(second) == who(first) == str(user.pk)
        assert live(user) == {key_hash_of(first), key_hash_of(second)}


# On the db engine and on the cached engines (tests/conftest.py).
@pytest.mark.usefixtures("engine")
class TestRefuse:
    @PREFIXES
    def test_the_login_over_the_limit_fails_and_stores_nothing(
        self, alias: str, make_user: Any, settings: Any, prefix: str, revoked: list[Any]
    ) -> None:
        settings.SQL_SESSIONS_MAX_PER_USER = 2
        settings.SQL_SESSIONS_MAX_PER_USER_REFUSE = True
        user = make_user()
        first = logged_in_client(user, prefix + "/login/{}/")
        second = logged_in_client(user, prefix + "/login/{}/")
        granted = {key_hash_of(first), key_hash_of(second)}
        third = Client()
        third.get(prefix + "/write/basket/")
        # PermissionDenied: Django answers 403 if the view does not catch it.
        assert third.get(prefix + f"/login/{user.pk}/").status_code == 403
        assert live(user) == granted
        assert who(third, prefix) == "anonymous"
        assert third.get(prefix + "/read/").content == b"basket", "the anonymous data was lost"
        assert who(first, prefix) == who(second, prefix) == str(user.pk)
        assert not revoked
        # A logout makes room.
        first.get(prefix + "/logout/")
        assert third.get(prefix + f"/login/{user.pk}/").status_code == 200
        assert who(third, prefix) == str(user.pk)

    @pytest.mark.parametrize("run", ["sync", "async"])
    def test_login_raises_a_permission_denied_a_view_can_catch(
        self, alias: str, make_user: Any, settings: Any, run: str
    ) -> None:
        settings.SQL_SESSIONS_MAX_PER_USER = 1
        settings.SQL_SESSIONS_MAX_PER_USER_REFUSE = True
        user = make_user()
        logged_in_client(user)
        request = RequestFactory().get("/")
        request.session = SessionStore()
        request.user = AnonymousUser()
        backend = "django.contrib.auth.backends.ModelBackend"
        log_in = login if run == "sync" else async_to_sync(alogin)
        with pytest.raises(TooManySessions) as raised:
            log_in(request, user, backend=backend)
        assert isinstance(raised.value, PermissionDenied)
        assert raised.value.limit == 1
        assert "SQL_SESSIONS_MAX_PER_USER is 1" in str(raised.value)
        assert SESSION_KEY not in request.session
        assert request.user.is_anonymous
        request.session.save()  # the middleware's save: still nobody's session
        assert len(live(user)) == 1


def documented_login_view() -> type[LoginView]:
    """The LoginView of docs/usage.rst, "Limiting sessions per user", as printed there."""
    text = (ROOT / "docs" / "usage.rst").read_text(encoding="utf-8")
    section = text.split("Limiting sessions per user\n", 1)[1]
    block = section.split(".. code-block:: python\n", 1)[1].split("\nRoute it", 1)[0]
    namespace: dict[str, Any] = {}
    exec(textwrap.dedent(block), namespace)
    view: type[LoginView] = namespace["LimitedLoginView"]
    assert issubclass(view, LoginView)
    return view


@pytest.mark.parametrize("refuse", [True, False], ids=["refused", "allowed"])
def test_the_documented_login_view_tells_the_user(
    alias: str, make_user: Any, settings: Any, refuse: bool
) -> None:
    settings.SQL_SESSIONS_MAX_PER_USER = 1
    settings.SQL_SESSIONS_MAX_PER_USER_REFUSE = refuse
    user = make_user()
    logged_in_client(user)
    request = RequestFactory().post("/login/", {"username": "alice", "password": "secret"})
    request.session = SessionStore()
    request.user = AnonymousUser()
    request._dont_enforce_csrf_checks = True  # type: ignore[attr-defined]
    view = documented_login_view().as_view(template_name="django_sql_sessions/base.html")
    response = view(request)
    if refuse:
        assert isinstance(response, TemplateResponse)  # the form again, not a 403
        assert response.status_code == 200
        assert response.context_data is not None
        assert "too many devices" in str(response.context_data["form"].non_field_errors())
        assert request.user.is_anonymous
        assert len(live(user)) == 1
    else:
        assert response.status_code == 302
        assert request.user == user


# On the db engine and on the cached engines (tests/conftest.py).
@pytest.mark.usefixtures("engine")
class TestSettings:
    @pytest.mark.parametrize("value", [-1, "3", True, 2.5, [3]])
    def test_a_bad_limit_is_an_error(self, alias: str, settings: Any, value: object) -> None:
        settings.SQL_SESSIONS_MAX_PER_USER = value
        [error] = [e for e in run_checks() if e.id == "django_sql_sessions.E020"]
        assert "SQL_SESSIONS_MAX_PER_USER is" in error.msg
        assert "None" in str(error.hint)
        request = RequestFactory().get("/")
        request.session = SessionStore()
        with pytest.raises(ImproperlyConfigured, match="SQL_SESSIONS_MAX_PER_USER"):
            limit_at_login(None, request)

    def test_a_bad_refuse_is_an_error(self, alias: str, settings: Any) -> None:
        settings.SQL_SESSIONS_MAX_PER_USER_REFUSE = "yes"
        ids = [e.id for e in run_checks()]
        assert "django_sql_sessions.E021" in ids

    @pytest.mark.parametrize("value", [None, 0, 1, 50])
    def test_good_limits_pass(self, alias: str, settings: Any, value: object) -> None:
        settings.SQL_SESSIONS_MAX_PER_USER = value
        assert not [e for e in run_checks() if e.id in ("django_sql_sessions.E020",)]


# ------------------------------------------------------- parallel logins


PROCESSES = 6
TIMEOUT = 60.0


def parallel_logins(
    aliases: list[str], engine: str, user_id: str, limit: int, mode: str
) -> list[Any]:
    """
    PROCESSES processes, on the aliases in turn, log the user in at the same
    moment; their answers.
    """
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SQL_SESSIONS_TEST_RUN_ID": django_settings.RUN_ID,
    }
    args = [engine, user_id, str(limit), mode]
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.login_process", aliases[i % len(aliases)], *args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(PROCESSES)
    ]
    try:
        for process in processes:
            assert answer(process) == {"ready": True}
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        return [answer(process) for process in processes]
    finally:
        for process in processes:
            process.kill()
            process.communicate()


def answer(process: subprocess.Popen[str]) -> Any:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], TIMEOUT)
    line = process.stdout.readline() if ready else ""
    if not line:
        process.kill()
        _, stderr = process.communicate()
        raise AssertionError(f"a login process did not answer: {stderr}")
    return json.loads(line)


@pytest.fixture(params=["db", "cached"])
def process_engine(request: pytest.FixtureRequest) -> str:
    if request.param == "cached":
        if "sessions_redis" not in django_settings.CACHES:
            pytest.skip("redis not configured: REDIS_URL is not set")
        ping_redis()
    return str(request.param)


@pytest.mark.parametrize("limit", [2])
@pytest.mark.parametrize("mode", ["revoke", "refuse"])
def test_parallel_logins_from_several_processes_keep_the_limit(
    threaded_alias: str, process_engine: str, limit: int, mode: str
) -> None:
    user_id = "7001"
    answers = parallel_logins([threaded_alias], process_engine, user_id, limit, mode)
    stored = set(
        Session.objects.active().filter(user_id=user_id).values_list("key_hash", flat=True)
    )
    assert_limit_kept(answers, stored, limit, mode)


def assert_limit_kept(answers: list[Any], stored: set[str], limit: int, mode: str) -> None:
    """Never more live sessions than the limit, never fewer than needed."""
    errors = [a["error"] for a in answers if "error" in a]
    assert not errors, errors[0]
    logged_in = {hash_key(a["key"]) for a in answers if "key" in a}
    assert len(stored) == limit
    if mode == "refuse":
        assert len(logged_in) == limit
        assert sum("refused" in a for a in answers) == PROCESSES - limit
        assert stored == logged_in, "a refused login left a session, or a granted one none"
    else:
        assert len(logged_in) == PROCESSES
        assert stored <= logged_in
