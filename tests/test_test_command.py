"""The test command cannot pass having run nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def pytest_run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ}
    for server in (
        "POSTGRES_HOST",
        "MYSQL_HOST",
        "MSSQL_HOST",
        "PG_STANDBY_HOST",
        "GALERA_HOST",
        "REDIS_URL",
        "SQL_SESSIONS_TEST_REQUIRE",
    ):
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
