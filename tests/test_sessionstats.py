from __future__ import annotations

import datetime
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import SESSION_KEY
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections
from django.utils import timezone

from django_sql_sessions.models import Session
from tests.helpers import key, saved_session

ROOT = Path(__file__).resolve().parent.parent
FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:140.0) Gecko/20100101 Firefox/140.0"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)


def stats(*args: str) -> str:
    out = io.StringIO()
    call_command("sessionstats", *args, stdout=out)
    return out.getvalue()


def populate(make_user: Any) -> dict[str, Any]:
    """
    Seven sessions: alice's three, bob's one, one of a deleted user, one
    anonymous, and one expired anonymous; the oldest live one is alice's,
    three days old.
    """
    alice, bob = make_user("alice"), make_user("bob")
    now = timezone.now()
    alices = [saved_session(**{SESSION_KEY: str(alice.pk)}) for _ in range(3)]
    saved_session(**{SESSION_KEY: str(bob.pk)})
    saved_session(**{SESSION_KEY: "987654"})
    saved_session(cart=1)
    expired = saved_session(cart=2)
    Session.objects.for_key(key(expired)).update(expire_date=now - datetime.timedelta(hours=2))
    Session.objects.for_key(key(alices[0])).update(created_at=now - datetime.timedelta(days=3))
    Session.objects.filter(user_id=str(alice.pk)).update(user_agent=FIREFOX)
    Session.objects.filter(user_id=str(bob.pk)).update(user_agent=IPHONE)
    return {
        "alice": str(alice.pk),
        "bob": str(bob.pk),
        "oldest": Session.objects.for_key(key(alices[0])).get().created_at,
        "newest": Session.objects.active()
        .order_by("-created_at")
        .values_list("created_at", flat=True)
        .first(),
        "waiting": Session.objects.for_key(key(expired)).get().expire_date,
    }


def test_json(alias: str, make_user: Any, settings: Any, user_agent_parser: bool) -> None:
    settings.SQL_SESSIONS_DEVICE_DETAILS = True
    made = populate(make_user)
    report = json.loads(stats("--json"))

    assert report["format"] == 1
    assert (report["alias"], report["vendor"]) == (alias, connections[alias].vendor)
    assert report["table"] == Session._meta.db_table
    assert report["sessions"] == {
        "live": {"count": 6, "exact": True},
        "expired": {"count": 1, "exact": True},
        "total": {"count": 7, "exact": True},
    }
    assert report["sampled_rows"] is None  # a small table is read whole
    assert datetime.datetime.fromisoformat(report["oldest_created_at"]) == made["oldest"]
    newest = datetime.datetime.fromisoformat(report["newest_created_at"])
    assert newest == made["newest"]
    # Most sessions first, then by user id; usernames from the users' database.
    alice, bob = made["alice"], made["bob"]
    ones = sorted([(bob, "bob"), ("987654", None)])
    assert report["top_users"] == [
        {"user_id": alice, "username": "alice", "sessions": 3},
        *({"user_id": uid, "username": name, "sessions": 1} for uid, name in ones),
    ]
    assert report["usernames_note"] is None
    # Devices of the six live sessions: three Firefox, one iPhone, two with
    # no user agent recorded; named alike by ua-parser and by the guess.
    firefox, iphone = ("Firefox on Windows", "Mobile Safari on iOS")
    assert report["devices"] == [
        {"name": firefox, "sessions": 3, "share": 0.5},
        {"name": "Unknown device", "sessions": 2, "share": pytest.approx(2 / 6)},
        {"name": iphone, "sessions": 1, "share": pytest.approx(1 / 6)},
    ]
    assert report["devices_named"] is user_agent_parser
    size = report["size"]
    assert size["total_bytes"] > 0
    assert size["total_bytes"] == size["table_bytes"] + size["index_bytes"]
    assert size["index_bytes"] > 0
    waiting = report["cleanup"]
    assert datetime.datetime.fromisoformat(waiting["expired_waiting_since"]) == made["waiting"]
    assert 2 * 3600 <= waiting["waiting_seconds"] < 2 * 3600 + 60


def test_text(alias: str, make_user: Any, settings: Any) -> None:
    made = populate(make_user)
    lines = stats().splitlines()
    vendor = connections[alias].vendor
    assert lines[:4] == [
        f"Sessions in database '{alias}' ({vendor}), table {Session._meta.db_table}:",
        "  Live:     6",
        "  Expired:  1",
        "  Total:    7",
    ]
    oldest = timezone.localtime(made["oldest"]) if settings.USE_TZ else made["oldest"]
    assert lines[4] == f"  Oldest:   created {oldest:%Y-%m-%d %H:%M} (3 days ago)"
    assert lines[5].startswith("  Newest:   created ")
    assert lines[5].endswith(" (just now)")
    assert lines[6].startswith("  Cleanup:  expired sessions waiting since ")
    assert lines[6].endswith(" (2 hours ago): no cleanup has finished since then")
    assert lines[7].startswith("  Size:     ")
    assert " rows, " in lines[7]
    assert lines[8:] == [
        "",
        "Users with the most sessions (expired ones not yet deleted included):",
        f"  3  alice (user id {made['alice']})",
        *sorted(
            [f"  1  bob (user id {made['bob']})", "  1  user id 987654 (no such user)"],
            key=lambda line: line.split("user id ")[1],
        ),
        "",
        "Devices: not recorded (SQL_SESSIONS_DEVICE_DETAILS is off).",
    ]


def test_text_with_devices_and_nothing_waiting(
    alias: str, settings: Any, user_agent_parser: bool
) -> None:
    settings.SQL_SESSIONS_DEVICE_DETAILS = True
    saved_session(cart=1)
    Session.objects.update(user_agent=FIREFOX)
    lines = stats("--top", "3").splitlines()
    assert "  Cleanup:  no expired session is waiting to be deleted" in lines
    named = (
        "named by ua-parser"
        if user_agent_parser
        else "guessed: install django-sql-sessions[devices] to name them with ua-parser"
    )
    device = "Firefox on Windows"
    assert lines[-5:] == [
        "Users with the most sessions (expired ones not yet deleted included):",
        "  none: no session belongs to a user",
        "",
        f"Devices of live sessions ({named}):",
        f"  100.0%  {device}",
    ]


def test_an_empty_table(alias: str) -> None:
    report = json.loads(stats("--json", "--top", "0"))
    assert report["sessions"]["total"] == {"count": 0, "exact": True}
    assert report["oldest_created_at"] is report["newest_created_at"] is None
    assert report["top_users"] is report["devices"] is None
    assert report["cleanup"] == {"expired_waiting_since": None, "waiting_seconds": None}
    lines = stats("--top", "0").splitlines()
    assert "  Oldest:   no live session" in lines
    assert "Users with the most sessions" not in "\n".join(lines)


def test_exact_counts_every_row(alias: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from django_sql_sessions import stats as module

    for _ in range(4):
        saved_session(cart=1)
    # Past the cap, only --exact counts.
    monkeypatch.setattr(module, "EXACT_UP_TO", 2)
    estimated = json.loads(stats("--json"))
    assert estimated["sampled_rows"] is not None
    # SQLite keeps no estimates, so it counts.
    sqlite = connections[alias].vendor == "sqlite"
    assert estimated["sessions"]["total"]["exact"] is sqlite
    report = json.loads(stats("--json", "--exact"))
    assert report["sessions"]["total"] == {"count": 4, "exact": True}
    assert report["sampled_rows"] is None


def test_bad_options(alias: str) -> None:
    with pytest.raises(CommandError, match="'-1' must be 0 or more"):
        stats("--top", "-1")


def test_from_the_command_line(tmp_path: Path) -> None:
    # manage.py's own path (system checks on) against a migrated SQLite file.
    servers = ("POSTGRES_HOST", "MYSQL_HOST", "MSSQL_HOST")  # SQLite alone
    env = {
        **{name: value for name, value in os.environ.items() if name not in servers},
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PYTHONPATH": str(ROOT),
        # A test name of its own, so that no other test's file is touched.
        "SQL_SESSIONS_TEST_RUN_ID": f"sessionstats_{os.getpid()}",
    }
    script = (
        "import django, json; django.setup()\n"
        "from django.conf import settings\n"
        f"settings.DATABASES['default']['NAME'] = {str(tmp_path / 'db.sqlite3')!r}\n"
        "from django.core.management import call_command, execute_from_command_line\n"
        "call_command('migrate', verbosity=0)\n"
        "execute_from_command_line(['manage.py', 'sessionstats', '--json'])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["sessions"]["live"] == {"count": 0, "exact": True}
