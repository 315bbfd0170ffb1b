"""
The read-replica hazard, on a real PostgreSQL primary and a hot standby that
applies the primary's changes 2 s late (clusters/pg-standby.sh; nox -s
pg_standby runs this module).

Django's own engine behind the primary/replica router of Django's
documentation logs a user out on the request after the login; ours, on the
same router, does not; the checks say so before it happens (E005), and a
sessions alias pointed at the standby is refused clearly, by check E015 and
by the first write.

Skipped unless PG_STANDBY_HOST is set; SQL_SESSIONS_TEST_REQUIRE=pgstandby
makes that a failure.
"""

from __future__ import annotations

import datetime
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.conf import settings
from django.contrib.sessions.models import Session as DjangoSession
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connections
from django.test import Client, override_settings
from django.utils import timezone

from django_sql_sessions import exceptions
from django_sql_sessions.backends.db import SessionStore
from django_sql_sessions.checks import check_routers, check_server
from django_sql_sessions.exceptions import SessionDatabaseReadOnly
from django_sql_sessions.models import Session
from django_sql_sessions.storage import hash_key, session_table
from tests.helpers import error_codes, saved_session

pytestmark = pytest.mark.skipif(
    "pgstandby" not in settings.DATABASES,
    reason="PostgreSQL standby not configured: PG_STANDBY_HOST is not set "
    "(see clusters/pg-standby.sh)",
)

ROOT = Path(__file__).resolve().parent.parent.parent
REPLICA_ROUTER = "tests.routers.PgPrimaryReplicaRouter"
SESSION_ROUTER = "django_sql_sessions.routers.SessionRouter"
DJANGO_ENGINE = "django.contrib.sessions.backends.db"
OUR_ENGINE = "django_sql_sessions.backends.db"


def ids(messages: list[Any]) -> list[str]:
    return [message.id for message in messages]


def caught_up(timeout: float = 30) -> float:
    """Wait until the standby has replayed all the primary has written; return the seconds."""
    with connections["pgprimary"].cursor() as cursor:
        cursor.execute("SELECT pg_current_wal_lsn()")
        (target,) = cursor.fetchone()
    standby = connections["pgstandby"].settings_dict
    start = time.monotonic()
    # To the standby's maintenance database: the test database itself may not
    # have reached it yet.
    with psycopg.connect(
        host=standby["HOST"],
        port=standby["PORT"],
        user=standby["USER"],
        password=standby["PASSWORD"],
        dbname="postgres",
        autocommit=True,
    ) as connection:
        while True:
            row = connection.execute(
                "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [target]
            ).fetchone()
            if row and row[0]:
                return time.monotonic() - start
            if time.monotonic() - start > timeout:
                raise AssertionError(f"the standby did not replay up to {target} in {timeout} s")
            time.sleep(0.05)


@pytest.fixture
def pair(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """
    The primary and standby aliases, the standby caught up with the primary
    (so it has the test database and its tables). Both session tables are
    emptied on the primary afterwards, outside any transaction, as a site
    writes them.
    """
    with django_db_blocker.unblock():
        caught_up()
        yield
        table = connections["pgprimary"].ops.quote_name(session_table())
        with connections["pgprimary"].cursor() as cursor:
            cursor.execute(f"DELETE FROM {table}")
            cursor.execute("DELETE FROM django_session")


def ask(alias: str, sql: str) -> Any:
    with connections[alias].cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchone()[0]


def a_project(engine: str, **more: Any) -> AbstractContextManager[Any]:
    """
    A project with `engine`, Django's session middleware, and the
    primary/replica router of Django's documentation on the pair.
    """
    return override_settings(
        SESSION_ENGINE=engine,
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
        ],
        DATABASE_ROUTERS=[REPLICA_ROUTER, "tests.routers.UsersOnDefault"],
        **more,
    )


def test_the_aliases_are_a_primary_and_its_standby(pair: None) -> None:
    # Django's test mirror takes the primary's test NAME and keeps its own
    # HOST and PORT: one database, on two servers.
    assert ask("pgprimary", "SELECT pg_is_in_recovery()") is False
    assert ask("pgstandby", "SELECT pg_is_in_recovery()") is True
    name = connections["pgprimary"].settings_dict["NAME"]
    assert name.startswith("test_")
    assert ask("pgstandby", "SELECT current_database()") == name
    for alias in ("pgprimary", "pgstandby"):
        port = ask(alias, "SELECT inet_server_port()")
        assert str(port) == str(settings.DATABASES[alias]["PORT"])
    assert ask("pgstandby", "SELECT current_setting('recovery_min_apply_delay')") != "0"
    assert session_table() in connections["pgstandby"].introspection.table_names()


def test_djangos_engine_behind_a_replica_router_logs_a_new_login_out(
    pair: None, make_user: Any
) -> None:
    user = make_user()
    with a_project(DJANGO_ENGINE):
        client = Client()
        assert client.get(f"/login/{user.pk}/").status_code == 200
        key = client.cookies["sessionid"].value
        assert DjangoSession.objects.using("pgprimary").filter(session_key=key).exists()
        assert not DjangoSession.objects.using("pgstandby").filter(session_key=key).exists(), (
            "the standby already had the login: this test needs it 2 s behind"
        )

        # The next request reads the session from the standby, which has not
        # got it yet: the user who just logged in is anonymous...
        response = client.get("/whoami/")
        assert response.content == b"anonymous"
        # ... and Django's middleware deletes the cookie of that "empty"
        # session, so they stay logged out once the standby has caught up.
        assert response.cookies["sessionid"].value == ""
        caught_up()
        assert client.get("/whoami/").content == b"anonymous"

        # The login was saved: its cookie, kept, is logged in now.
        kept = Client()
        kept.cookies["sessionid"] = key
        assert kept.get("/whoami/").content == str(user.pk).encode()


def test_our_engine_behind_the_same_router_keeps_the_login(pair: None, make_user: Any) -> None:
    user = make_user()
    with a_project(OUR_ENGINE, SQL_SESSIONS_DB_ALIAS="pgprimary"):
        client = Client()
        assert client.get(f"/login/{user.pk}/").status_code == 200
        key = client.cookies["sessionid"].value
        assert Session.objects.using("pgprimary").filter(key_hash=hash_key(key)).exists()
        assert not Session.objects.using("pgstandby").filter(key_hash=hash_key(key)).exists(), (
            "the standby already had the login: this test needs it 2 s behind"
        )
        for _ in range(3):
            assert client.get("/whoami/").content == str(user.pk).encode()
        assert client.cookies["sessionid"].value == key


class TestReplicaRoutingChecks:
    @pytest.mark.parametrize(
        ("alias", "routers", "expected"),
        [
            # The router alone: reads of the session model go to the standby.
            ("pgprimary", [REPLICA_ROUTER], ["E005", "W002"]),
            ("pgprimary", [REPLICA_ROUTER, SESSION_ROUTER], ["E005"]),
            # Sessions on another alias, the router claiming their writes too.
            ("default", [REPLICA_ROUTER, SESSION_ROUTER], ["E005", "W003"]),
            # The fix: our router first.
            ("pgprimary", [SESSION_ROUTER, REPLICA_ROUTER], []),
        ],
    )
    def test_check_routers(
        self, settings: Any, alias: str, routers: list[str], expected: list[str]
    ) -> None:
        settings.SQL_SESSIONS_DB_ALIAS = alias
        settings.DATABASE_ROUTERS = routers
        assert ids(check_routers(None)) == [f"django_sql_sessions.{id_}" for id_ in expected]

    def test_manage_py_check(self, tmp_path: Path) -> None:
        routed = project(tmp_path, alias="pgprimary", routers=[REPLICA_ROUTER, SESSION_ROUTER])
        result = routed.manage("check")
        assert result.returncode == 1, result.stdout + result.stderr
        assert "django_sql_sessions.E005" in result.stderr
        assert "send session reads to 'pgstandby' but writes to 'pgprimary'" in result.stderr

        fixed = project(tmp_path, alias="pgprimary", routers=[SESSION_ROUTER, REPLICA_ROUTER])
        result = fixed.manage("check", "--database", "pgprimary")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "django_sql_sessions." not in result.stdout + result.stderr


class TestAliasOnTheStandby:
    def test_check(self, pair: None, settings: Any) -> None:
        settings.SQL_SESSIONS_DB_ALIAS = "pgstandby"
        [error] = check_server(None, databases=["pgstandby"])
        assert error.id == "django_sql_sessions.E015"
        assert "SQL_SESSIONS_DB_ALIAS 'pgstandby' is a standby" in error.msg
        assert "pg_is_in_recovery()" in error.msg
        assert "primary" in str(error.hint)
        settings.SQL_SESSIONS_DB_ALIAS = "pgprimary"
        assert check_server(None, databases=["pgprimary"]) == []

    def test_manage_py_check(self, pair: None, tmp_path: Path) -> None:
        on_standby = project(tmp_path, alias="pgstandby", routers=[SESSION_ROUTER])
        result = on_standby.manage("check", "--database", "pgstandby")
        assert result.returncode == 1, result.stdout + result.stderr
        assert "django_sql_sessions.E015" in result.stderr
        assert "SQL_SESSIONS_DB_ALIAS 'pgstandby' is a standby" in result.stderr
        assert "pg_is_in_recovery() is true" in result.stderr
        # Without the database tag, no database is asked.
        assert on_standby.manage("check").returncode == 0

        on_primary = project(tmp_path, alias="pgprimary", routers=[SESSION_ROUTER])
        result = on_primary.manage("check", "--database", "pgprimary")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "django_sql_sessions." not in result.stdout + result.stderr

    @pytest.mark.parametrize("cursor", ["driver", "django"])
    def test_a_save_is_one_clear_error_logged_once(
        self,
        pair: None,
        settings: Any,
        caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch,
        cursor: str,
    ) -> None:
        monkeypatch.setattr(exceptions, "_reported", set())
        settings.SQL_SESSIONS_DB_ALIAS = "pgstandby"
        # An execute_wrapper() makes the engine use Django's cursor, as DEBUG does.
        observed: AbstractContextManager[Any] = (
            connections["pgstandby"].execute_wrapper(
                lambda execute, sql, params, many, context: execute(sql, params, many, context)
            )
            if cursor == "django"
            else nullcontext()
        )
        errors = []
        with caplog.at_level(logging.ERROR, logger="django_sql_sessions"), observed:
            for _ in range(3):
                store = SessionStore()
                store["cart"] = [1]
                with pytest.raises(SessionDatabaseReadOnly) as raised:
                    store.save()
                errors.append(raised.value)
        message = str(errors[0])
        assert message.startswith("SQL_SESSIONS_DB_ALIAS 'pgstandby' is a standby or read-only")
        assert "read-only transaction" in message  # the server's own words
        assert "Point SQL_SESSIONS_DB_ALIAS at the primary" in message
        assert isinstance(errors[0], DatabaseError)
        assert "25006" in error_codes(errors[0].__cause__)
        logged = [r.getMessage() for r in caplog.records if r.name == "django_sql_sessions"]
        assert logged == [message]  # once per process, not per save

    def test_a_request_that_writes_fails_and_one_that_reads_works(
        self, pair: None, settings: Any
    ) -> None:
        settings.SQL_SESSIONS_DB_ALIAS = "pgprimary"
        store = saved_session(value="from the primary")
        caught_up()
        settings.SQL_SESSIONS_DB_ALIAS = "pgstandby"
        reader = Client()
        reader.cookies["sessionid"] = str(store.session_key)
        assert reader.get("/read/").content == b"from the primary"
        with pytest.raises(SessionDatabaseReadOnly):
            Client().get("/write/x/")
        response = Client(raise_request_exception=False).get("/write/x/")
        assert response.status_code == 500

    def test_purgesessions_says_so_in_one_line(self, pair: None, settings: Any) -> None:
        settings.SQL_SESSIONS_DB_ALIAS = "pgprimary"
        store = saved_session(value="expired")
        Session.objects.using("pgprimary").filter(
            key_hash=hash_key(str(store.session_key))
        ).update(expire_date=timezone.now() - datetime.timedelta(days=1))
        caught_up()
        settings.SQL_SESSIONS_DB_ALIAS = "pgstandby"
        with pytest.raises(CommandError, match="SQL_SESSIONS_DB_ALIAS 'pgstandby' is a standby"):
            call_command("purgesessions")


class Project:
    """A settings module and manage.py on the pair, run as a site runs them."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def manage(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "PYTHONPATH": f"{self.path}{os.pathsep}{ROOT}",
            "DJANGO_SETTINGS_MODULE": "standby_site",
            # The settings module is rewritten within a second, at the same size.
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        return subprocess.run(
            [sys.executable, "-m", "django", *args],
            cwd=self.path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


def project(tmp_path: Path, *, alias: str, routers: list[str]) -> Project:
    """A project whose sessions use `alias`, with the test databases of the pair."""
    databases: dict[str, Any] = {
        "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}
    }
    for name in ("pgprimary", "pgstandby"):
        config = connections[name].settings_dict
        databases[name] = {
            key: config[key] for key in ("ENGINE", "HOST", "PORT", "USER", "PASSWORD", "NAME")
        }
    (tmp_path / "standby_site.py").write_text(
        f"""
SECRET_KEY = "standby"
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django_sql_sessions",
]
DATABASES = {databases!r}
DATABASE_ROUTERS = {routers!r}
SESSION_ENGINE = {OUR_ENGINE!r}
SQL_SESSIONS_DB_ALIAS = {alias!r}
SQL_SESSIONS_TABLE = {session_table()!r}
"""
    )
    return Project(tmp_path)
