"""
The test command cannot pass having run nothing, uses the servers this
machine has, and stops at once at one it is told to use and cannot reach.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from tests import local_servers

ROOT = Path(__file__).resolve().parent.parent


def pytest_run(*args: str, **env_vars: str) -> subprocess.CompletedProcess[str]:
    """pytest in a process of its own, told of no server, and looking for none unless told."""
    env = {**os.environ, local_servers.SWITCH: "0", **env_vars}
    for server in (
        "POSTGRES_HOST",
        "MYSQL_HOST",
        "MSSQL_HOST",
        "PG_STANDBY_HOST",
        "GALERA_HOST",
        "REDIS_URL",
        "SQL_SESSIONS_TEST_REQUIRE",
        local_servers.FOUND,
    ):
        if server not in env_vars:
            env.pop(server, None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_run_that_only_skipped_fails() -> None:
    # Only SQL Server tests, and no SQL Server: everything is skipped.
    result = pytest_run("tests/test_checks.py", "-k", "mssql")
    assert result.returncode == 1, result.stdout
    assert "FAILED: no test ran (every test was skipped or deselected)." in result.stdout
    assert "not run: postgresql (POSTGRES_HOST is not set)" in result.stdout


def test_a_run_that_selected_nothing_fails() -> None:
    result = pytest_run("tests/test_checks.py", "-k", "no_test_has_this_name")
    assert result.returncode == 5, result.stdout


def test_a_run_that_ran_something_passes_and_says_what_it_ran() -> None:
    result = pytest_run("tests/test_keys.py")
    assert result.returncode == 0, result.stdout
    assert "Ran on Django " in result.stdout
    assert "databases: sqlite; not run: postgresql" in result.stdout
    assert "cache: no Redis (REDIS_URL is not set)" in result.stdout


def default_local_servers() -> list[str]:
    """
    The servers this run uses at their default local address, as a user
    without a password: what a run told of no server must find.
    """
    found = []
    for name, user in (("postgresql", "postgres"), ("mysql", "root")):
        config = settings.DATABASES.get(name)
        if (
            config
            and config["HOST"] in ("127.0.0.1", "localhost")
            and int(config["PORT"]) == {"postgresql": 5432, "mysql": 3306}[name]
            and config["USER"] == user
            and not config["PASSWORD"]
        ):
            found.append(name)
    if settings.REDIS_URL.startswith(("redis://127.0.0.1:6379/", "redis://localhost:6379/")):
        found.append("redis")
    return found


def test_servers_on_their_default_local_ports_are_found() -> None:
    expected = default_local_servers()
    if not expected:
        pytest.skip("no server at its default local address in this run")
    result = pytest_run("tests/test_keys.py", **{local_servers.SWITCH: "1"})
    assert result.returncode == 0, result.stdout + result.stderr
    [summary] = [line for line in result.stdout.splitlines() if line.startswith("Ran on")]
    if "postgresql" in expected:
        assert "postgresql (found on 127.0.0.1:5432 as 'postgres')" in summary
    if "mysql" in expected:
        assert "mysql (found on 127.0.0.1:3306 as 'root')" in summary
    if "redis" in expected:
        assert "cache: Redis found on 127.0.0.1:6379" in summary
        assert "redis not configured" not in result.stdout


def test_looking_for_local_servers_can_be_turned_off() -> None:
    result = pytest_run("tests/test_keys.py")  # with SQL_SESSIONS_TEST_LOCAL=0
    assert result.returncode == 0, result.stdout + result.stderr
    assert "databases: sqlite; not run: postgresql (POSTGRES_HOST is not set)," in result.stdout


@pytest.mark.parametrize(
    ("env", "line"),
    [
        (
            {"POSTGRES_HOST": "127.0.0.1", "POSTGRES_PORT": "1"},
            "ERROR: PostgreSQL at 127.0.0.1:1 (POSTGRES_HOST, POSTGRES_PORT) is unreachable: "
            'connection failed: connection to server at "127.0.0.1", port 1 failed: '
            "Connection refused",
        ),
        (
            {"REDIS_URL": "redis://127.0.0.1:1/0"},
            "ERROR: Redis at redis://127.0.0.1:1/0 (REDIS_URL) is unreachable: "
            "Error 111 connecting to 127.0.0.1:1. Connection refused.",
        ),
    ],
    ids=["postgresql", "redis"],
)
def test_an_unreachable_server_stops_the_run_in_one_line(env: dict[str, str], line: str) -> None:
    # Not an error per test (1,408 of them, and 17 MB of log, with
    # POSTGRES_PORT=1), nor a summary that lists the server as used.
    result = pytest_run("tests/test_keys.py", "tests/test_backends_db.py", **env)
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, result.stdout + result.stderr
    assert (result.stdout + result.stderr).split("\n") == [line, "", ""]
