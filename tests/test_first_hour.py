"""
The mistakes a new user makes in the first hour, met as they meet them: a
project made by `django-admin startproject`, the README's settings with one
thing wrong or one step left out, and every command through manage.py in its
own process, system checks on. Each used to pass silently, or fail with an
error that named no fix (issue 21).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.servers import free_port, stop
from tests.test_fresh_project import (  # noqa: F401  (sessions_database: a fixture)
    DEDICATED,
    QUICK_START,
    Project,
    sessions_database,
    start_project,
)

ALIAS_SETTING = 'SQL_SESSIONS_DB_ALIAS = "sessions"\n'
SQLITE_SESSIONS = (
    'DATABASES["sessions"] = {"ENGINE": "django.db.backends.sqlite3", '
    '"NAME": BASE_DIR / "sessions.sqlite3"}\n'
)


def test_the_dedicated_router_without_the_alias_setting(tmp_path: Path) -> None:
    # The router and the "sessions" database, but SQL_SESSIONS_DB_ALIAS
    # forgotten: migrate --database=sessions used to put auth, admin and
    # contenttypes there, and the session table in 'default'.
    assert ALIAS_SETTING in DEDICATED
    project = start_project(tmp_path, DEDICATED.replace(ALIAS_SETTING, "") + SQLITE_SESSIONS)
    for command in (["check"], ["migrate", "--database=sessions"], ["migrate"]):
        result = project.manage(*command, check=False)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "django_sql_sessions.E018" in result.stderr
        assert "Set SQL_SESSIONS_DB_ALIAS to the sessions' database ('sessions' in" in (
            result.stderr
        )
        assert "Traceback" not in result.stderr
    assert project.tables("sessions", "default") == [[], []]


# A request through Django's test client, as the first visitor's would be,
# reporting the exception it raised.
FIRST_REQUEST = """
import json
from django.test import Client
try:
    Client(SERVER_NAME="localhost").get("/admin/login/")
except Exception as exc:
    print(json.dumps([type(exc).__name__, str(exc)]))
else:
    print(json.dumps(None))
"""


def test_the_engine_without_the_app(tmp_path: Path) -> None:
    # SESSION_ENGINE set, the app not installed: no check of ours can run,
    # and Django's error said "doesn't declare an explicit app_label".
    engine = 'SESSION_ENGINE = "django_sql_sessions.backends.db"\n'
    assert engine in QUICK_START
    project = start_project(tmp_path, engine)
    project.manage("migrate")
    error, message = project.shell(FIRST_REQUEST)
    assert error == "ImproperlyConfigured"
    assert "add 'django_sql_sessions' to INSTALLED_APPS" in message
    # The scheduled cleanup meets it the same way.
    clear = project.manage("clearsessions", check=False)
    assert clear.returncode == 1
    assert "add 'django_sql_sessions' to INSTALLED_APPS" in clear.stderr
    assert "explicit app_label" not in clear.stderr


def runserver_start(project: Project) -> str:
    """What runserver prints on stderr until it serves (its system checks come first)."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=project.path,
        env={**project.env, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while server.poll() is None and time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
    finally:
        stop(server)
        _, stderr = server.communicate()  # and closes the pipe
    return stderr.decode()


# Two logins through the admin's form, each reporting the exception it raised.
TWO_LOGINS = """
import json
from django.contrib.auth import get_user_model
from django.test import Client
if not get_user_model().objects.filter(username="ada").exists():
    get_user_model().objects.create_superuser("ada", "ada@example.com", "pw")
errors = []
for _ in range(2):
    try:
        Client(SERVER_NAME="localhost").post(
            "/admin/login/", {"username": "ada", "password": "pw"}
        )
    except Exception as exc:
        errors.append([type(exc).__name__, str(exc)])
print(json.dumps(errors))
"""


def test_migrate_forgotten_on_the_sessions_database(
    tmp_path: Path,
    sessions_database: str,  # noqa: F811  (the fixture, imported above)
) -> None:
    # The README's step 3 half done: `migrate`, not `migrate --database=sessions`.
    project = start_project(
        tmp_path, DEDICATED + f'\nDATABASES["sessions"] = {sessions_database}\n'
    )
    project.manage("migrate")
    fix = "python manage.py migrate --database=sessions"
    # runserver, which runs no database check, says so as it starts.
    started = runserver_start(project)
    assert "django_sql_sessions.W006" in started, started
    assert fix in started
    # The first login raises an error that names the table, the alias and
    # the command, and logs it once, not once per request.
    shell = project.manage("shell", "-c", TWO_LOGINS)
    errors = json.loads(shell.stdout.strip().splitlines()[-1])
    assert [error for error, _message in errors] == ["SessionTableMissing"] * 2
    message = errors[0][1]
    assert "Database 'sessions' has no table 'web_sessions'" in message
    assert f"Run '{fix}' to create it" in message
    assert shell.stderr.splitlines().count(message) == 1, shell.stderr
    # The command it names mends it.
    project.manage("migrate", "--database=sessions")
    assert project.shell(TWO_LOGINS) == []


def test_migrate_does_not_warn_about_the_table_it_creates(tmp_path: Path) -> None:
    project = start_project(tmp_path, DEDICATED + SQLITE_SESSIONS)
    project.manage("migrate")
    # Still said where it helps: before the migrate that creates the table.
    assert "django_sql_sessions.W006" in project.manage("check", "--database=sessions").stderr
    migrate = project.manage("migrate", "--database=sessions")
    assert "System check identified" not in migrate.stderr, migrate.stderr
    assert "web_sessions" in project.tables("sessions")[0]


def test_an_invalid_table_name_is_refused_by_migrate_without_checks(tmp_path: Path) -> None:
    project = start_project(tmp_path, QUICK_START + 'SQL_SESSIONS_TABLE = "web-sessions"\n')
    check = project.manage("check", check=False)
    assert check.returncode == 1
    assert "django_sql_sessions.E002" in check.stderr
    assert "Traceback" not in check.stderr
    migrate = project.manage("migrate", "--skip-checks", check=False)
    assert migrate.returncode == 1
    assert "ImproperlyConfigured: SQL_SESSIONS_TABLE is 'web-sessions'; it must be" in (
        migrate.stderr
    )
    assert "Choose a name such as 'web_sessions'" in migrate.stderr
    [default] = project.tables("default")
    assert "auth_user" in default  # the other apps' migrations ran
    assert "web-sessions" not in default


def test_a_misspelled_setting_is_named(tmp_path: Path) -> None:
    # A typo in a setting's name used to be ignored without a word.
    project = start_project(
        tmp_path, QUICK_START + "SQL_SESSIONS_MAX_SIZ = 65536\nSQL_SESSION_DB_ALIAS = 'default'\n"
    )
    result = project.manage("check")  # a warning: check still succeeds
    assert "django_sql_sessions.W010" in result.stderr
    assert "SQL_SESSIONS_MAX_SIZ is not a setting of django_sql_sessions" in result.stderr
    assert "Did you mean SQL_SESSIONS_MAX_SIZE?" in result.stderr
    assert "Did you mean SQL_SESSIONS_DB_ALIAS?" in result.stderr
