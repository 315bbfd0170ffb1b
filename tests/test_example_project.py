from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Runs inside the example project's own settings, in a fresh process.
BROWSE = r"""
import json, re, sqlite3
from django.conf import settings
from django.test import Client

client = Client()

def count():
    return int(re.search(r'id="visits">(\d+)<', client.get("/").content.decode())[1])

visits = [count() for _ in range(3)]
key = client.cookies["sessionid"].value
client.post("/regenerate/")
new_key = client.cookies["sessionid"].value
after_cycle = count()
client.post("/remove/")
after_remove = count()
logged_in = client.login(username="admin", password="admin")
admin_status = client.get("/admin/").status_code

def tables(alias):
    with sqlite3.connect(settings.DATABASES[alias]["NAME"]) as db:
        rows = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return sorted(r[0] for r in rows)

with sqlite3.connect(settings.DATABASES["sessions"]["NAME"]) as db:
    stored = [r[0] for r in db.execute("SELECT key_hash FROM web_sessions")]
print(json.dumps({
    "visits": visits, "cycled": new_key != key, "after_cycle": after_cycle,
    "after_remove": after_remove, "logged_in": logged_in, "admin_status": admin_status,
    "default_tables": tables("default"), "session_tables": tables("sessions"),
    "raw_key_stored": any(k in stored for k in (key, new_key)), "rows": len(stored),
}))
"""


@pytest.fixture(scope="module")
def example_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    env = {
        **os.environ,
        "EXAMPLE_DATA_DIR": str(tmp_path_factory.mktemp("example")),
        "PYTHONPATH": str(ROOT),  # the package under test, not an installed copy
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    manage = [sys.executable, str(ROOT / "example_project" / "manage.py")]
    setup = subprocess.run(
        [*manage, "demo", "--no-serve"], env=env, capture_output=True, text=True, check=False
    )
    assert setup.returncode == 0, setup.stderr
    assert "Created the demo superuser admin" in setup.stdout
    browse = subprocess.run(
        [*manage, "shell", "-c", BROWSE], env=env, capture_output=True, text=True, check=False
    )
    assert browse.returncode == 0, browse.stderr
    result: dict[str, object] = json.loads(browse.stdout.strip().splitlines()[-1])
    return result


def test_visit_counter(example_run: dict[str, object]) -> None:
    assert example_run["visits"] == [1, 2, 3]


def test_regenerate_keeps_the_data_under_a_new_key(example_run: dict[str, object]) -> None:
    assert example_run["cycled"] is True
    assert example_run["after_cycle"] == 4


def test_remove_starts_over(example_run: dict[str, object]) -> None:
    assert example_run["after_remove"] == 1


def test_admin_login(example_run: dict[str, object]) -> None:
    assert example_run["logged_in"] is True
    assert example_run["admin_status"] == 200


def test_sessions_live_only_in_their_database(example_run: dict[str, object]) -> None:
    assert "web_sessions" in example_run["session_tables"]  # type: ignore[operator]
    assert "web_sessions" not in example_run["default_tables"]  # type: ignore[operator]
    assert "auth_user" not in example_run["session_tables"]  # type: ignore[operator]
    assert example_run["raw_key_stored"] is False
    # One browser: its session after the removal, moved to a new key by login().
    assert example_run["rows"] == 1
