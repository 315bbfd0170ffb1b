from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def django_admin(*args: str, table: str) -> subprocess.CompletedProcess[str]:
    """Run a management command in a fresh process, where the model is built anew."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "SQL_SESSIONS_TEST_TABLE": table,
        "PYTHONPATH": str(ROOT),
    }
    for server in ("POSTGRES_HOST", "MYSQL_HOST", "MSSQL_HOST", "PG_STANDBY_HOST"):
        env.pop(server, None)
    return subprocess.run(
        [sys.executable, "-m", "django", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("table", ["web_sessions", "django_sql_sessions_session"])
def test_no_missing_migration_whatever_the_table_name(table: str) -> None:
    result = django_admin(
        "makemigrations", "django_sql_sessions", "--check", "--dry-run", table=table
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No changes detected" in result.stdout


@pytest.mark.parametrize("table", ["web_sessions", "auth_sessions_v2"])
def test_the_migration_creates_the_configured_table(table: str) -> None:
    result = django_admin("sqlmigrate", "django_sql_sessions", "0001", table=table)
    assert result.returncode == 0, result.stderr
    assert f'CREATE TABLE "{table}" ("key_hash" char(64) NOT NULL PRIMARY KEY' in result.stdout
    assert f'CREATE INDEX "{table}_expire_date_' in result.stdout
