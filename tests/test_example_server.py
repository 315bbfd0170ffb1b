"""
The example project behind real servers, in their own processes: runserver
(WSGI) for the plain views and uvicorn (ASGI) for the async ones, driven over
HTTP by the standard library's urllib, one cookie jar per "browser".

What the pages say is checked against the cookies the servers set and the
rows in the example's own SQLite files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import html
import importlib.util
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Literal, NoReturn
from urllib.error import HTTPError
from urllib.parse import urlencode, urlsplit
from urllib.request import HTTPCookieProcessor, OpenerDirector, build_opener

import pytest

from django_sql_sessions.devices import device_name
from tests.servers import free_port, stop

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "example_project"
START_TIMEOUT = 30.0  # seconds; two cores shared with other jobs can be slow
REQUEST_TIMEOUT = 10.0

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
PHONE = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Mobile Safari/537.36"
)

Kind = Literal["wsgi", "asgi"]


def skip_or_fail(feature: str, reason: str) -> NoReturn:
    """Skip for a missing tool, unless SQL_SESSIONS_TEST_REQUIRE names the feature."""
    required = os.environ.get("SQL_SESSIONS_TEST_REQUIRE", "").split(",")
    if feature in required:
        pytest.fail(f"{reason}, and SQL_SESSIONS_TEST_REQUIRE requires {feature!r}.")
    pytest.skip(reason)


def example_env(data_dir: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "EXAMPLE_DATA_DIR": str(data_dir),
        "PYTHONPATH": str(ROOT),  # the package under test, not an installed copy
        "PYTHONUNBUFFERED": "1",  # so that a failure report has the server's output
    }
    # The example's own settings, not the test suite's.
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env


def set_up_example(data_dir: Path) -> None:
    """Migrate the example's two databases and create its admin user in data_dir."""
    setup = subprocess.run(
        [sys.executable, str(EXAMPLE / "manage.py"), "demo", "--no-serve"],
        env=example_env(data_dir),
        capture_output=True,
        text=True,
        check=False,
    )
    assert setup.returncode == 0, setup.stderr
    assert "Created the demo superuser admin" in setup.stdout


@dataclasses.dataclass(frozen=True)
class Server:
    kind: Kind
    url: str
    data_dir: Path

    @property
    def prefix(self) -> str:
        """Where this server's views are: the async ones under ASGI."""
        return "/async" if self.kind == "asgi" else ""

    def session_users(self) -> dict[str, str | None]:
        """Each stored session's key hash and user_id, straight from the database."""
        with contextlib.closing(sqlite3.connect(self.data_dir / "sessions.sqlite3")) as db:
            return dict(db.execute("SELECT key_hash, user_id FROM web_sessions").fetchall())

    def admin_id(self) -> str:
        with contextlib.closing(sqlite3.connect(self.data_dir / "db.sqlite3")) as db:
            [(pk,)] = db.execute("SELECT id FROM auth_user WHERE username = 'admin'").fetchall()
        return str(pk)

    def admin_sessions(self) -> set[str]:
        admin = self.admin_id()
        return {key_hash for key_hash, user in self.session_users().items() if user == admin}


@contextlib.contextmanager
def run_server(kind: Kind, data_dir: Path) -> Iterator[Server]:
    """Serve the example from data_dir until the block ends."""
    if kind == "asgi" and importlib.util.find_spec("uvicorn") is None:
        skip_or_fail("asgi", "uvicorn is not installed, so the ASGI server cannot run")
    port = free_port()
    if kind == "wsgi":
        command = [str(EXAMPLE / "manage.py"), "runserver", f"127.0.0.1:{port}", "--noreload"]
    else:
        command = [
            *("-m", "uvicorn", "example.asgi:application"),
            *("--host", "127.0.0.1", "--port", str(port)),
        ]
    log_path = data_dir / f"{kind}-server.log"
    with log_path.open("wb") as log:
        # A file, not a pipe: nobody reads a pipe while the tests run, and a
        # full one would block the server.
        process = subprocess.Popen(
            [sys.executable, *command],
            cwd=EXAMPLE,
            env=example_env(data_dir),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_for_port(process, port, kind, log_path)
        yield Server(kind, f"http://127.0.0.1:{port}", data_dir)
    finally:
        stop(process)


def _wait_for_port(process: subprocess.Popen[bytes], port: int, kind: Kind, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"The {kind} server exited with code {process.returncode} before it "
                f"answered on port {port}. Its output:\n{log.read_text(errors='replace')}"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail(
        f"The {kind} server did not answer on port {port} within {START_TIMEOUT:.0f} "
        f"seconds. Its output:\n{log.read_text(errors='replace')}"
    )


def key_hash(session_key: str) -> str:
    """What the table stores in place of a key: its SHA-256 digest (see keys.py)."""
    return hashlib.sha256(session_key.encode("ascii")).hexdigest()


@dataclasses.dataclass(frozen=True)
class Page:
    status: int
    url: str
    text: str

    @property
    def path(self) -> str:
        return urlsplit(self.url).path

    @property
    def visits(self) -> int:
        match = re.search(r'id="visits">(\d+)<', self.text)
        assert match, f"no visit count on {self.url}"
        return int(match[1])

    @property
    def key_end(self) -> str:
        match = re.search(r'id="key-end">…([^<]*)<', self.text)
        assert match, f"no key on {self.url}"
        return match[1]

    @property
    def listed_sessions(self) -> set[str]:
        """The sessions this page offers to log out: all the user's but this one."""
        return set(re.findall(r'name="session" value="([0-9a-f]{64})"', self.text))

    @property
    def messages(self) -> list[str]:
        return [html.unescape(m) for m in re.findall(r'class="message">([^<]*)<', self.text)]

    def form_actions(self) -> list[str]:
        return [html.unescape(a) for a in re.findall(r'<form\b[^>]*\baction="([^"]*)"', self.text)]

    def session_rows(self) -> list[SessionRow]:
        """The rows of the "your sessions" table, as a person reads them."""
        rows = []
        for current, row in re.findall(
            r'<tr class="session( current)?"[^>]*>(.*?)</tr>', self.text, re.S
        ):
            device = re.search(r'class="device" title="([^"]*)">([^<]*)<', row)
            network = re.search(r'<td class="network">([^<]*)</td>', row)
            times = re.findall(r"<time [^>]*>([^<]*)</time>", row)
            assert device, row
            assert network, row
            assert len(times) == 3, row
            rows.append(
                SessionRow(
                    current=bool(current),
                    device=html.unescape(device[2]),
                    user_agent=html.unescape(device[1]),
                    network=network[1],
                    started=times[0],
                    last_active=times[1],
                    expires=times[2],
                )
            )
        return rows


@dataclasses.dataclass(frozen=True)
class SessionRow:
    current: bool
    device: str
    user_agent: str  # from the title: the whole user agent the device was guessed from
    network: str
    started: str
    last_active: str
    expires: str


class Browser:
    """One browser: its own cookies and user agent, following redirects."""

    def __init__(self, server: Server, user_agent: str = "example-tests/1.0") -> None:
        self.server = server
        self.cookies = CookieJar()
        self.opener: OpenerDirector = build_opener(HTTPCookieProcessor(self.cookies))
        self.opener.addheaders = [("User-Agent", user_agent)]

    def get(self, path: str) -> Page:
        return self._open(path, None)

    def submit(self, page: Page, action: str, **fields: str) -> Page:
        """Post the page's form for `action`, with its CSRF token, as a browser would."""
        assert action in page.form_actions(), f"{page.url} has no form for {action}"
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert token, f"no CSRF token on {page.url}"
        return self._open(action, {"csrfmiddlewaretoken": token[1], **fields})

    def cookie(self, name: str) -> str | None:
        return next((c.value for c in self.cookies if c.name == name), None)

    def log_in(self, next_path: str) -> Page:
        login = self.get(f"/admin/login/?{urlencode({'next': next_path})}")
        return self.submit(
            login, login.form_actions()[0], username="admin", password="admin", next=next_path
        )

    @staticmethod
    def log_in_together(next_path: str, *browsers: Browser) -> None:
        """
        Log several browsers in at once. Each login spends about a second
        hashing the password; both servers hash concurrent logins in parallel.
        """
        with ThreadPoolExecutor(len(browsers)) as pool:
            pages = list(pool.map(lambda browser: browser.log_in(next_path), browsers))
        assert [page.path for page in pages] == [next_path] * len(browsers)

    def _open(self, path: str, data: dict[str, str] | None) -> Page:
        body = urlencode(data).encode() if data is not None else None
        try:
            with self.opener.open(self.server.url + path, body, REQUEST_TIMEOUT) as response:
                return Page(response.status, response.url, response.read().decode())
        except HTTPError as error:
            with error:
                return Page(error.code, error.geturl(), error.read().decode(errors="replace"))


def example_copy(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """
    A new directory with the example's databases, migrated and with the admin
    user. They are set up once per test run, for this module and the browser
    tests alike, and copied for each server, so that one server's
    revocations cannot reach another's sessions.
    """
    template = tmp_path_factory.getbasetemp() / "example-data"
    if not template.exists():
        setting_up = tmp_path_factory.mktemp("example-data-setup")
        set_up_example(setting_up)
        setting_up.rename(template)
    data_dir = tmp_path_factory.mktemp(name)
    shutil.copytree(template, data_dir, dirs_exist_ok=True)
    return data_dir


@pytest.fixture(scope="module", params=["wsgi", "asgi"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    kind: Kind = request.param
    with run_server(kind, example_copy(tmp_path_factory, kind)) as running:
        yield running


def test_counter_counts_visits_with_the_key_from_the_first_visit(server: Server) -> None:
    browser = Browser(server)
    first = browser.get(server.prefix + "/")
    key = browser.cookie("sessionid")
    assert key is not None
    # The key is shown on the visit that creates it, not only from the next one.
    assert first.key_end == key[-6:]
    assert "None" not in first.text
    assert [first.visits, *(browser.get(server.prefix + "/").visits for _ in range(2))] == [
        1,
        2,
        3,
    ]
    assert browser.cookie("sessionid") == key
    # Stored under its digest only, and as nobody's session.
    stored = server.session_users()
    assert key_hash(key) in stored
    assert key not in stored
    assert stored[key_hash(key)] is None


def test_regenerate_moves_the_visits_to_a_new_key(server: Server) -> None:
    browser = Browser(server)
    browser.get(server.prefix + "/")
    page = browser.get(server.prefix + "/")
    old_key = browser.cookie("sessionid")
    assert old_key is not None
    after = browser.submit(page, server.prefix + "/regenerate/")
    new_key = browser.cookie("sessionid")
    assert new_key is not None
    assert new_key != old_key
    assert after.path == server.prefix + "/"
    assert after.visits == 3  # the redirect back to the counter counted one more
    assert after.key_end == new_key[-6:]
    stored = server.session_users()
    assert key_hash(new_key) in stored
    assert key_hash(old_key) not in stored


def test_remove_starts_over(server: Server) -> None:
    browser = Browser(server)
    browser.get(server.prefix + "/")
    page = browser.get(server.prefix + "/")
    old_key = browser.cookie("sessionid")
    assert old_key is not None
    after = browser.submit(page, server.prefix + "/remove/")
    new_key = browser.cookie("sessionid")
    assert new_key is not None
    assert new_key != old_key
    assert after.visits == 1
    stored = server.session_users()
    assert key_hash(old_key) not in stored
    assert key_hash(new_key) in stored


def test_your_sessions_needs_a_login(server: Server) -> None:
    page = Browser(server).get(server.prefix + "/sessions/")
    assert page.path == "/admin/login/"
    assert f"next={server.prefix}/sessions/" in page.url


# Each login costs about a second of password hashing (Django's PBKDF2
# iterations), so the tests below log in as few browsers as prove the point,
# and at the same time.


def test_login_and_logout_through_the_forms(server: Server) -> None:
    browser = Browser(server, user_agent=FIREFOX)
    browser.get(server.prefix + "/")
    anonymous_key = browser.cookie("sessionid")
    page = browser.log_in(server.prefix + "/sessions/")
    key = browser.cookie("sessionid")
    assert key is not None
    assert page.status == 200
    assert page.path == server.prefix + "/sessions/"
    assert "<h1>Your sessions</h1>" in page.text
    # login() moved the session to a new key, which is now the admin's.
    assert key != anonymous_key
    assert server.session_users()[key_hash(key)] == server.admin_id()
    [mine] = [row for row in page.session_rows() if row.current]
    assert page.text.count("this browser") == 1
    assert mine.device == device_name(FIREFOX)  # "Firefox 128 on Linux" with ua-parser
    assert mine.user_agent == FIREFOX
    # Its network, never its whole address.
    assert mine.network == "127.0.0.0"
    assert "127.0.0.1" not in page.text
    # Dates as people say them, in the admin's words (Django's timesince and
    # timeuntil), for a session started just now with Django's default two
    # weeks to live.
    for moment in (mine.started, mine.last_active):
        assert re.fullmatch(r"[01]\sminutes? ago", moment), mine
    assert re.fullmatch(r"in (1\sweek, 6\sdays|2\sweeks)", mine.expires), mine

    # The header's "Log out" ends the session and comes back to the counter.
    after = browser.submit(page, "/admin/logout/", next=server.prefix + "/")
    assert after.path == server.prefix + "/"
    assert 'id="login"' in after.text
    assert "You are logged in" not in after.text
    assert key_hash(key) not in server.session_users()


def test_two_browsers_see_and_revoke_each_other(server: Server) -> None:
    laptop = Browser(server, user_agent=FIREFOX)
    phone = Browser(server, user_agent=PHONE)
    Browser.log_in_together(server.prefix + "/sessions/", laptop, phone)
    laptop_key, phone_key = laptop.cookie("sessionid"), phone.cookie("sessionid")
    assert laptop_key is not None
    assert phone_key is not None
    laptop_page = laptop.get(server.prefix + "/sessions/")
    phone_page = phone.get(server.prefix + "/sessions/")
    # Each lists every session of the admin in the database but its own
    # (other tests' logins may still be there).
    stored = server.admin_sessions()
    assert {key_hash(laptop_key), key_hash(phone_key)} <= stored
    assert laptop_page.listed_sessions == stored - {key_hash(laptop_key)}
    assert phone_page.listed_sessions == stored - {key_hash(phone_key)}
    rows = laptop_page.session_rows()
    assert [(row.device, row.current) for row in rows if row.user_agent == PHONE] == [
        (device_name(PHONE), False)
    ]
    assert [row.device for row in rows if row.current] == [device_name(FIREFOX)]

    after = laptop.submit(
        laptop_page, server.prefix + "/sessions/revoke/", session=key_hash(phone_key)
    )
    assert after.path == server.prefix + "/sessions/"
    assert after.messages == ["That session is logged out."]
    assert after.listed_sessions == stored - {key_hash(laptop_key), key_hash(phone_key)}
    assert server.admin_sessions() == stored - {key_hash(phone_key)}
    # The phone is sent to the login page; the laptop is still logged in.
    assert phone.get(server.prefix + "/sessions/").path == "/admin/login/"
    assert laptop.get(server.prefix + "/sessions/").path == server.prefix + "/sessions/"


def test_revoke_all_other_sessions(server: Server) -> None:
    laptop, phone = Browser(server), Browser(server)
    Browser.log_in_together(server.prefix + "/sessions/", laptop, phone)
    laptop_key, phone_key = laptop.cookie("sessionid"), phone.cookie("sessionid")
    assert laptop_key is not None
    assert phone_key is not None
    anonymous = Browser(server)
    anonymous.get(server.prefix + "/")
    anonymous_key = anonymous.cookie("sessionid")
    assert anonymous_key is not None
    page = laptop.get(server.prefix + "/sessions/")
    # An id from the form that is not one of the user's sessions: nothing happens.
    page = laptop.submit(
        page, server.prefix + "/sessions/revoke/", session=key_hash(anonymous_key)
    )
    assert page.messages == []
    assert key_hash(anonymous_key) in server.session_users()

    others = server.admin_sessions() - {key_hash(laptop_key)}
    assert key_hash(phone_key) in others
    after = laptop.submit(page, server.prefix + "/sessions/revoke-others/")
    sessions = "session" if len(others) == 1 else "sessions"
    assert after.messages == [f"Logged out {len(others)} other {sessions}."]
    assert after.listed_sessions == set()
    assert server.admin_sessions() == {key_hash(laptop_key)}
    # Only the user's own sessions: the anonymous one is still there.
    assert key_hash(anonymous_key) in server.session_users()
    assert phone.get(server.prefix + "/sessions/").path == "/admin/login/"
    assert laptop.get(server.prefix + "/sessions/").path == server.prefix + "/sessions/"
