from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from django_sql_sessions.models import Session
from tests.helpers import logged_in_client

# Each test runs on the db engine and on the cached engine (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("engine")


def revoke(*args: str) -> str:
    out = StringIO()
    call_command("revokesessions", *args, stdout=out)
    return out.getvalue().strip()


@pytest.mark.parametrize("by", ["--username", "--user-id"])
def test_logs_the_user_out_everywhere(alias: str, make_user: Any, by: str) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    clients = [logged_in_client(alice), logged_in_client(alice)]
    other = logged_in_client(bob)
    value = "alice" if by == "--username" else str(alice.pk)
    assert revoke(by, value).startswith("Revoked 2 sessions of user")
    assert all(c.get("/whoami/").content == b"anonymous" for c in clients)
    assert other.get("/whoami/").content == str(bob.pk).encode()
    assert revoke(by, value).startswith("Revoked 0 sessions")


def test_a_deleted_users_sessions_can_still_be_revoked(alias: str, make_user: Any) -> None:
    user = make_user()
    logged_in_client(user)
    pk = user.pk
    user.delete()
    assert Session.objects.filter(user_id=str(pk)).count() == 1
    assert revoke("--user-id", str(pk)) == (f"Revoked 1 session of user id {pk} (no such user).")
    assert Session.objects.count() == 0


def test_uuid_user_ids(alias: str, settings: Any, make_user: Any) -> None:
    settings.AUTH_USER_MODEL = "accounts.UUIDUser"
    user = make_user()
    logged_in_client(user)
    assert revoke("--user-id", user.pk.hex).startswith("Revoked 1 session of user id")
    with pytest.raises(CommandError, match="not a valid primary key"):
        revoke("--user-id", "42")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--username", "nobody"], "There is no user with username 'nobody'"),
        (["--user-id", "abc"], "'abc' is not a valid primary key for User"),
        (["--user-id", ""], "is not a valid primary key"),
        ([], "one of the arguments --username --user-id is required"),
        (["--username", "alice", "--user-id", "1"], "not allowed with argument"),
    ],
)
def test_bad_input(alias: str, make_user: Any, args: list[str], message: str) -> None:
    user = make_user("alice")
    logged_in_client(user)
    with pytest.raises(CommandError, match=message):
        revoke(*args)
    assert Session.objects.count() == 1


class TestAWriterWithoutTheCache:
    """
    Issue 20, defect 8: a process that writes the table without the cached
    engine (a worker with minimal settings) while migrate recorded that the
    cached engine fronts it is told its revocation missed the cache.
    """

    @pytest.fixture(autouse=True)
    def cached_site(self, engine: Any, alias: str, settings: Any) -> Any:
        # After the module's engine fixture: whichever engine the site runs,
        # this process (the worker) runs the db engine.
        from django_sql_sessions import caching, storage
        from django_sql_sessions.models import FrontingCache

        settings.SESSION_ENGINE = "django_sql_sessions.backends.cached_db"
        settings.SESSION_CACHE_ALIAS = "sessions_locmem"
        caching.record_in_database(using=alias)
        assert FrontingCache.objects.get().session_table == storage.plain_table().name
        # The worker: Django's defaults, no cache of ours.
        settings.SESSION_ENGINE = "django_sql_sessions.backends.db"
        yield
        FrontingCache.objects.all().delete()
        # What the table believes of the record is kept for 10 minutes.
        storage.plain_table()._fronted_until = 0.0

    def test_the_command_exits_3(self, alias: str, make_user: Any) -> None:
        user = make_user()
        logged_in_client(user)
        out = StringIO()
        with pytest.raises(CommandError, match="may still be served") as raised:
            call_command("revokesessions", "--user-id", str(user.pk), stdout=out)
        assert raised.value.returncode == 3
        assert out.getvalue().startswith("Revoked 1 session of user id")
        assert Session.objects.count() == 0  # the database is the truth: done there

    def test_the_api_logs_an_error(
        self, alias: str, make_user: Any, caplog: pytest.LogCaptureFixture
    ) -> None:
        from django_sql_sessions.user_sessions import revoke_all_sessions

        user = make_user()
        logged_in_client(user)
        assert revoke_all_sessions(user) == 1
        errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        assert len(errors) == 1
        assert "is served from the cache sessions_locmem (LocMemCache)" in errors[0]
        assert "runs SESSION_ENGINE = 'django_sql_sessions.backends.db'" in errors[0]

    def test_migrate_without_the_cache_removes_the_record(self, alias: str) -> None:
        from django_sql_sessions.models import FrontingCache

        call_command("migrate", "django_sql_sessions", database=alias, verbosity=0)
        assert not FrontingCache.objects.exists()


def test_migrate_with_the_cache_records_it(alias: str, settings: Any) -> None:
    from django_sql_sessions.models import FrontingCache

    settings.SESSION_ENGINE = "django_sql_sessions.backends.cached_db"
    settings.SESSION_CACHE_ALIAS = "sessions_locmem"
    call_command("migrate", "django_sql_sessions", database=alias, verbosity=0)
    try:
        assert FrontingCache.objects.get().cache == "sessions_locmem (LocMemCache)"
    finally:
        FrontingCache.objects.all().delete()
