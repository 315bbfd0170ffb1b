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
import hashlib, json, re, sqlite3
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

# Three browsers of one user, signed in through the login form (so through
# the middleware that records their devices).
browsers = {
    "phone": Client(REMOTE_ADDR="203.0.113.77", HTTP_USER_AGENT="PhoneBrowser/1.0"),
    "laptop": Client(REMOTE_ADDR="2001:db8:abcd:12::1", HTTP_USER_AGENT="LaptopBrowser/2.0"),
    "tablet": Client(REMOTE_ADDR="198.51.100.3", HTTP_USER_AGENT="TabletBrowser/3.0"),
}
for browser in browsers.values():
    browser.post("/admin/login/", {"username": "admin", "password": "admin"})
page = browsers["laptop"].get("/sessions/").content.decode()

# The laptop's own session as its page and the admin's list word its times.
def text(html):
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())

laptop_id = hashlib.sha256(browsers["laptop"].cookies["sessionid"].value.encode()).hexdigest()
[mine] = [row for row in page.split("<tr") if row.startswith(' class="session current"')]
admin_list = browsers["laptop"].get("/admin/django_sql_sessions/session/").content.decode()
[listed] = [row for row in admin_list.split("<tr") if laptop_id[:12] in row]
times = {
    "page": [text(re.search(rf'<td class="{c}">(.*?)</td>', mine, re.S)[1])
             for c in ("last-active", "expires")],
    "admin": [text(re.search(rf'<td class="field-{c}">(.*?)</td>', listed, re.S)[1])
              for c in ("last_active", "expires")],
}
listed = re.findall(r'name="session" value="([0-9a-f]{64})"', page)
phone_page = browsers["phone"].get("/sessions/").content.decode()
[phone_id] = set(listed) - set(re.findall(r'name="session" value="([0-9a-f]{64})"', phone_page))
browsers["laptop"].post("/sessions/revoke/", {"session": phone_id})
after_revoke = {n: b.get("/sessions/").status_code for n, b in browsers.items()}
revoked = browsers["laptop"].post("/sessions/revoke-others/", follow=True).content.decode()
after_others = {n: b.get("/sessions/").status_code for n, b in browsers.items()}
print(json.dumps({
    "devices_shown": [d for d in ("PhoneBrowser/1.0", "203.0.113.0", "2001:db8:abcd::",
                                  "TabletBrowser/3.0", "198.51.100.0") if d in page],
    "whole_addresses_shown": [a for a in ("203.0.113.77", "2001:db8:abcd:12::1") if a in page],
    "this_browser_marked": page.count("this browser"), "other_sessions": len(listed),
    "after_revoke": after_revoke, "after_others": after_others,
    "others_message": re.findall(r'<li class="message">(.*?)</li>', revoked),
    "times": times,
}))
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
    *_, sessions_page, counter = browse.stdout.strip().splitlines()
    result: dict[str, object] = json.loads(counter)
    result["sessions_page"] = json.loads(sessions_page)
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


def test_your_sessions_page(example_run: dict[str, object]) -> None:
    page = example_run["sessions_page"]
    assert isinstance(page, dict)
    # From the laptop, counted before any revocation: the other devices, and
    # the admin session of the first browser, which also logged in.
    assert page["devices_shown"] == [
        "PhoneBrowser/1.0",
        "203.0.113.0",
        "2001:db8:abcd::",
        "TabletBrowser/3.0",
        "198.51.100.0",
    ]
    assert page["whole_addresses_shown"] == []
    assert page["this_browser_marked"] == 1
    assert page["other_sessions"] == 3
    # Revoking the phone logs the phone out (sent to the login page) only.
    assert page["after_revoke"] == {"phone": 302, "laptop": 200, "tablet": 200}
    assert page["after_others"] == {"phone": 302, "laptop": 200, "tablet": 302}
    # The tablet's and the first browser's.
    assert page["others_message"] == ["Logged out 2 other sessions."]


def test_the_admin_and_the_page_word_times_alike(example_run: dict[str, object]) -> None:
    page = example_run["sessions_page"]
    assert isinstance(page, dict)
    times = page["times"]
    # Django's timesince and timeuntil in both, for a session of the
    # default two weeks started a moment ago.
    assert times["page"] == times["admin"], times
    [last_active, expires] = times["page"]
    assert last_active == "0 minutes ago"
    assert expires == "in 1 week, 6 days"
