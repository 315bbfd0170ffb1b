"""
A new user's first steps, run as a new user runs them: a project made by
`django-admin startproject`, the settings taken from README.rst itself, and
every command through manage.py in its own process, system checks on.

The dedicated-alias set-up runs on SQLite and on each configured server (its
DATABASES["sessions"] pointed at a database made for the test).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.rst").read_text()


def readme_settings(after: str) -> str:
    """The first python code block after the heading or text `after`."""
    rest = README[README.index(after) :]
    start = re.search(r"\.\. code-block:: python\n\n( +)", rest)
    assert start, f"no settings block after {after!r}"
    indent = start[1]
    lines = []
    for line in rest[start.start(1) :].splitlines():
        if line.strip() and not line.startswith(indent):
            break  # the text after the block
        lines.append(line[len(indent) :])
    return "\n".join(lines).strip() + "\n"


QUICK_START = readme_settings("Quick start\n===========")
DEDICATED = readme_settings("2. Add the app, a dedicated")


class Project:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.env = {**os.environ, "PYTHONPATH": str(ROOT)}  # the package under test
        self.env.pop("DJANGO_SETTINGS_MODULE", None)

    def manage(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=self.path,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        if check:
            assert result.returncode == 0, (
                f"manage.py {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result

    def shell(self, code: str) -> Any:
        """Run code in the project's shell; return the JSON it prints last."""
        output = self.manage("shell", "-c", code).stdout.strip().splitlines()
        return json.loads(output[-1])

    def tables(self, *aliases: str) -> list[list[str]]:
        """The table names in each database."""
        tables: list[list[str]] = self.shell(
            "import json; from django.db import connections; print(json.dumps(["
            f"sorted(connections[a].introspection.table_names()) for a in {aliases!r}]))"
        )
        return tables


def start_project(tmp_path: Path, extra_settings: str) -> Project:
    subprocess.run(
        [sys.executable, "-m", "django", "startproject", "mysite", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    settings_file = tmp_path / "mysite" / "settings.py"
    settings_file.write_text(settings_file.read_text() + "\n" + extra_settings)
    return Project(tmp_path)


# Logs a user in through the admin's login form with Django's test client, as
# a browser would, and reports where the session landed.
LOG_IN = """
import json
from django.contrib.auth import get_user_model
from django.db import connections
from django.test import Client
from django_sql_sessions.models import Session
get_user_model().objects.create_superuser("ada", "ada@example.com", "pw")
# startproject allows localhost while DEBUG is on.
client = Client(SERVER_NAME="localhost")
client.post("/admin/login/", {"username": "ada", "password": "pw"})
page = client.get("/admin/django_sql_sessions/session/")
key = client.cookies["sessionid"].value
print(json.dumps({
    "admin": page.status_code,
    "rows": Session.objects.count(),
    "db": Session.objects.get(session_key=key).user_id,
    "raw_key_stored": Session.objects.filter(key_hash=key).exists(),
    "alias": Session.objects.db,
}))
"""


def assert_logs_in(project: Project, alias: str) -> None:
    """A login through the admin lands one hashed session row, of user 1, on `alias`."""
    assert project.shell(LOG_IN) == {
        "admin": 200,
        "rows": 1,
        "db": "1",
        "raw_key_stored": False,
        "alias": alias,
    }


def test_quick_start_on_sqlite(tmp_path: Path) -> None:
    project = start_project(tmp_path, QUICK_START)
    migrate = project.manage("migrate")
    assert "django_sql_sessions." not in migrate.stderr  # a first migrate says nothing of ours
    assert "test_web_sessions" not in QUICK_START
    [default] = project.tables("default")
    assert "django_sql_sessions_session" in default
    project.manage("check", "--database", "default")
    assert_logs_in(project, "default")
    project.manage("clearsessions")


def server_databases() -> list[Any]:
    params: list[Any] = [pytest.param("sqlite", id="sqlite")]
    for vendor, env in (("postgresql", "POSTGRES_HOST"), ("mysql", "MYSQL_HOST")):
        skip = pytest.mark.skip(reason=f"{env} is not set")
        marks = [] if vendor in settings.DATABASES else [skip]
        params.append(pytest.param(vendor, id=vendor, marks=marks))
    return params


@pytest.fixture(params=server_databases())
def sessions_database(request: pytest.FixtureRequest) -> Iterator[str]:
    """A Python expression for DATABASES["sessions"], on a database made for the test."""
    vendor = request.param
    if vendor == "sqlite":
        yield '{"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "sessions.sqlite3"}'
        return
    config = dict(settings.DATABASES[vendor])
    name = f"sql_sessions_fresh_{uuid.uuid4().hex[:12]}"
    admin_sql(vendor, f"CREATE DATABASE {name}")
    try:
        yield repr(
            {
                "ENGINE": config["ENGINE"],
                "HOST": config["HOST"],
                "PORT": config["PORT"],
                "USER": config["USER"],
                "PASSWORD": config["PASSWORD"],
                "NAME": name,
                "OPTIONS": config.get("OPTIONS", {}),
            }
        )
    finally:
        admin_sql(vendor, f"DROP DATABASE {name}")


def admin_sql(vendor: str, statement: str) -> None:
    config = settings.DATABASES[vendor]
    if vendor == "postgresql":
        import psycopg

        with psycopg.connect(
            host=config["HOST"],
            port=config["PORT"],
            user=config["USER"],
            password=config["PASSWORD"],
            dbname="postgres",
            autocommit=True,
        ) as connection:
            connection.execute(statement.encode())
    else:
        import MySQLdb

        connection = MySQLdb.connect(
            host=config["HOST"],
            port=int(config["PORT"]),
            user=config["USER"],
            password=config["PASSWORD"],
        )
        try:
            connection.cursor().execute(statement)
        finally:
            connection.close()


def test_installation_with_a_dedicated_database(tmp_path: Path, sessions_database: str) -> None:
    project = start_project(
        tmp_path, DEDICATED + f'\nDATABASES["sessions"] = {sessions_database}\n'
    )
    # The README's steps, in its order.
    project.manage("migrate")
    before = project.manage("check", "--database", "sessions")
    assert "django_sql_sessions.W006" in before.stderr  # a warning: migrate still runs
    project.manage("migrate", "--database=sessions")
    # Only the session tables, and Django's record of migrations, in the
    # sessions database; no session table in the default one.
    sessions, default = project.tables("sessions", "default")
    ours = [
        "django_sql_sessions_cache",
        "django_sql_sessions_imported",
        "django_sql_sessions_lease",
        "django_sql_sessions_user_lock",
        "web_sessions",
    ]
    assert sessions == ["django_migrations", *ours]
    assert not set(ours) & set(default)
    project.manage("check", "--database", "default")
    # startproject's settings are not deployable; none of that is ours.
    deploy = project.manage("check", "--deploy", "--database", "sessions", check=False)
    assert "System check identified" in deploy.stderr
    assert "django_sql_sessions." not in deploy.stdout + deploy.stderr

    assert_logs_in(project, "sessions")
    # The commands a user schedules or runs, as subprocesses with checks on.
    project.manage("clearsessions")
    assert "Would delete 0" in project.manage("purgesessions", "--dry-run").stdout
    imported = project.manage("importsessions", "--dry-run").stdout
    assert imported.startswith("Would copy 0 sessions from 'default'.django_session")
    revoked = project.manage("revokesessions", "--username", "ada").stdout
    assert revoked.startswith("Revoked 1 session of user 'ada'")


def test_a_renamed_table_is_reported_by_check_and_migrate(tmp_path: Path) -> None:
    project = start_project(tmp_path, QUICK_START)
    project.manage("migrate")
    settings_file = tmp_path / "mysite" / "settings.py"
    settings_file.write_text(settings_file.read_text() + '\nSQL_SESSIONS_TABLE = "renamed"\n')
    for command in (["check", "--database", "default"], ["migrate"]):
        result = project.manage(*command, check=False)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "django_sql_sessions.E006" in result.stderr
    # The commands say so in a line, not a traceback.
    purge = project.manage("purgesessions", check=False)
    assert purge.returncode == 1
    assert "Traceback" not in purge.stderr
    assert "manage.py check --database default' says why" in purge.stderr


def test_a_wrong_alias_is_reported_not_a_traceback(tmp_path: Path) -> None:
    project = start_project(tmp_path, DEDICATED + '\nSQL_SESSIONS_DB_ALIAS = "sesions"\n')
    for command in (["migrate"], ["check"]):
        result = project.manage(*command, check=False)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "Traceback" not in result.stderr
        assert "django_sql_sessions.E001" in result.stderr


CUSTOM_MODEL = """
from django.db import models
from django_sql_sessions.base_session import AbstractSession


class CustomSession(AbstractSession):
    account_id = models.IntegerField(null=True, db_index=True)

    @classmethod
    def get_session_store_class(cls):
        from myapp.sessions import SessionStore

        return SessionStore
"""
CUSTOM_ENGINE = """
from django_sql_sessions.backends.db import SessionStore as DBStore

from myapp.models import CustomSession


class SessionStore(DBStore):
    @classmethod
    def get_model_class(cls):
        return CustomSession

    def create_model_instance(self, data):
        obj = super().create_model_instance(data)
        try:
            account_id = int(data.get("_auth_user_id"))
        except (ValueError, TypeError):
            account_id = None
        obj.account_id = account_id
        return obj
"""
CUSTOM_ADMIN = """
from django.contrib import admin
from django_sql_sessions.admin import SessionAdmin
from myapp.models import CustomSession

admin.site.register(CustomSession, SessionAdmin)
"""
CUSTOM_LOG_IN = """
import json
from django.contrib.auth import get_user_model
from django.test import Client
from myapp.models import CustomSession
get_user_model().objects.create_superuser("ada", "ada@example.com", "pw")
client = Client(SERVER_NAME="localhost")
client.post("/admin/login/", {"username": "ada", "password": "pw"})
page = client.get("/admin/myapp/customsession/")
print(json.dumps({
    "admin": page.status_code,
    "accounts": list(CustomSession.objects.values_list("account_id", flat=True)),
    "alias": CustomSession.objects.db,
}))
"""


def test_a_session_model_of_the_projects_own_on_a_dedicated_database(
    tmp_path: Path, sessions_database: str
) -> None:
    # Django's documented extension, in a project of its own, through
    # manage.py with checks on.
    project = start_project(
        tmp_path,
        DEDICATED
        + f'\nDATABASES["sessions"] = {sessions_database}\n'
        + 'INSTALLED_APPS += ["myapp"]\nSESSION_ENGINE = "myapp.sessions"\n',
    )
    app = tmp_path / "myapp"
    app.mkdir()
    (app / "__init__.py").write_text("")
    (app / "models.py").write_text(CUSTOM_MODEL)
    (app / "sessions.py").write_text(CUSTOM_ENGINE)
    (app / "admin.py").write_text(CUSTOM_ADMIN)
    project.manage("makemigrations", "myapp")
    assert "No changes detected" in project.manage("makemigrations", "--check", "--dry-run").stdout
    project.manage("migrate")
    project.manage("migrate", "--database=sessions")
    sessions, default = project.tables("sessions", "default")
    assert "myapp_customsession" in sessions
    assert "myapp_customsession" not in default
    project.manage("check", "--database", "sessions")
    assert project.shell(CUSTOM_LOG_IN) == {"admin": 200, "accounts": [1], "alias": "sessions"}
    project.manage("clearsessions")
    revoked = project.manage("revokesessions", "--username", "ada").stdout
    assert revoked.startswith("Revoked 1 session of user 'ada'")


# A logged-in session, and what its row holds: the key, whether the stored
# data is encrypted, and whom the session loads as.
LOGGED_IN = """
import json
from django.contrib.auth import get_user_model
from django.test import Client
get_user_model().objects.create_superuser("ada", "ada@example.com", "pw")
client = Client(SERVER_NAME="localhost")
client.post("/admin/login/", {"username": "ada", "password": "pw"})
print(json.dumps(client.cookies["sessionid"].value))
"""
SESSION_STATE = """
import json
from django.db import connection
from django_sql_sessions import storage
from django_sql_sessions.backends.db import SessionStore
key = {key!r}
with connection.cursor() as cursor:
    cursor.execute(
        f"SELECT data FROM {{storage.table().name}} WHERE key_hash = %s", [storage.hash_key(key)]
    )
    (data,) = cursor.fetchone()
# Whom Django's auth finds in the session (it checks the session's auth hash).
from django.contrib.auth import get_user
from django.http import HttpRequest
request = HttpRequest()
request.session = SessionStore(key)
user = get_user(request)
found = str(user.pk) if user.is_authenticated else None
print(json.dumps({{"encrypted": data.startswith("enc1$"), "user": found}}))
"""


def test_encryption_turned_on_and_the_key_rotated_in_a_live_project(tmp_path: Path) -> None:
    """The README's setting and the usage page's steps, through manage.py with checks on."""
    project = start_project(tmp_path, QUICK_START)
    project.manage("migrate")
    key = project.shell(LOGGED_IN)
    assert project.shell(SESSION_STATE.format(key=key)) == {"encrypted": False, "user": "1"}
    settings_file = tmp_path / "mysite" / "settings.py"
    # The README's example value for the setting.
    assert "*bool*, default ``False``. Example: ``True``." in README
    settings_file.write_text(settings_file.read_text() + "SQL_SESSIONS_ENCRYPT = True\n")
    project.manage("check")
    assert project.shell(SESSION_STATE.format(key=key)) == {"encrypted": False, "user": "1"}
    assert "Rewrote 1 session" in project.manage("reencryptsessions").stdout
    assert project.shell(SESSION_STATE.format(key=key)) == {"encrypted": True, "user": "1"}
    # Rotating SECRET_KEY: the old one moves to the fallbacks, the command
    # rewrites the row (re-signed, its auth hash renewed), and the old key
    # can go without logging Ada out, though her session was idle throughout.
    settings_file.write_text(
        settings_file.read_text()
        + "SECRET_KEY_FALLBACKS = [SECRET_KEY]\nSECRET_KEY = 'a-new-secret-key-' * 4\n"
    )
    assert "Would rewrite 1 session" in project.manage("reencryptsessions", "--dry-run").stdout
    assert "Rewrote 1 session" in project.manage("reencryptsessions").stdout
    settings_file.write_text(settings_file.read_text() + "SECRET_KEY_FALLBACKS = []\n")
    assert project.shell(SESSION_STATE.format(key=key)) == {"encrypted": True, "user": "1"}
    # Turning it off: --decrypt refuses until the setting is off.
    refused = project.manage("reencryptsessions", "--decrypt", check=False)
    assert refused.returncode == 1
    assert "set it to False" in refused.stderr
    settings_file.write_text(settings_file.read_text() + "SQL_SESSIONS_ENCRYPT = False\n")
    decrypted = project.manage("reencryptsessions", "--decrypt")
    assert "Rewrote 1 session as plaintext" in decrypted.stdout
    assert project.shell(SESSION_STATE.format(key=key)) == {"encrypted": False, "user": "1"}
