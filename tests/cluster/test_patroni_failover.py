"""
The primary of a Patroni cluster dies under traffic (clusters/patroni.sh;
nox -s patroni runs this module).

- With synchronous replication, logged-in clients of a site served by
  gunicorn through HAProxy lose no session and no acknowledged change; a
  failed request was either not applied or shows up as applied.
- With asynchronous replication, what the last moments before the kill
  wrote can be lost: measured, and only what is guaranteed is asserted.
- The old primary back as a replica, HAProxy still sending connections to
  it: writes fail as SessionDatabaseReadOnly naming the alias, nothing is
  written anywhere, and once HAProxy sends connections to the new leader the
  next request reaches it: after closing the connections to the old primary
  (on-marked-down shutdown-sessions) with CONN_HEALTH_CHECKS, and without
  closing them because the engine closed the one whose write was refused.
- A cleanup run when the primary dies stops with the error; a new run on
  the new leader finishes, alone, and no live session is deleted.

What each test measured is printed in a "Patroni cluster" section at the end
of the run and written to a JSON file (failover.json in the cluster's data
directory, or SQL_SESSIONS_PATRONI_REPORT), which docs/scaling.rst cites.

Skipped unless PG_PATRONI_HOST is set; SQL_SESSIONS_TEST_REQUIRE=patroni
makes that a failure.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.request import HTTPCookieProcessor, HTTPRedirectHandler, OpenerDirector, build_opener

import psycopg
import pytest
from django.db import DatabaseError, OperationalError, close_old_connections, connections
from django.test import Client

from django_sql_sessions.backends.db import SessionStore
from django_sql_sessions.cleanup import CleanupResult, count_expired, delete_expired
from django_sql_sessions.exceptions import SessionDatabaseReadOnly
from django_sql_sessions.storage import hash_key, session_table
from tests.cluster import patroni as cluster
from tests.servers import stop

pytestmark = pytest.mark.skipif(not cluster.configured(), reason=cluster.SKIP_REASON)

CLIENTS = 8
BEFORE = 3.0  # seconds of traffic before the kill
# Requests have recovered once every client has had this many successful
# requests in a row since the kill; traffic then goes on for STEADY seconds.
RECOVERED = 5
STEADY = 2.0
GIVE_UP = 60.0  # seconds after the kill without recovery: the test fails
NEW_SESSION_EVERY = 5  # each client's 5th, 10th, ... request also starts an anonymous session
REQUEST_TIMEOUT = 20.0
LOGGED_OUT = "HTTP 302 (logged out)"


# ------------------------------------------------------------------ the site


@dataclasses.dataclass
class Site:
    url: str
    log: Path


class _NoRedirect(HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect is an answer to report, not to follow


def new_opener(jar: CookieJar | None = None) -> OpenerDirector:
    """A browser: its own cookie jar, redirects not followed."""
    return build_opener(HTTPCookieProcessor(jar if jar is not None else CookieJar()), _NoRedirect)


def session_cookie(jar: CookieJar) -> str:
    return next(c.value for c in jar if c.name == "sessionid" and c.value)


def fetch(opener: OpenerDirector, url: str) -> tuple[str | None, str | None]:
    """One GET: its body, or what went wrong (the site's 500 names the exception)."""
    try:
        with opener.open(url, timeout=REQUEST_TIMEOUT) as response:
            return response.read().decode(), None
    except HTTPError as error:
        if error.code == 302 and "/count/" in url:
            return None, LOGGED_OUT
        body = error.read().decode(errors="replace")[:200]
        return None, f"HTTP {error.code} {body}" if error.code == 500 else f"HTTP {error.code}"
    except (URLError, OSError) as error:
        return None, f"{type(error).__name__}: {error}"


@pytest.fixture(scope="module")
def site(
    django_db_setup: None, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    """
    tests/cluster/failover_site.py under gunicorn (2 workers of 4 threads),
    its sessions on this run's test database through HAProxy, its users
    user0 to user7 in a SQLite file of its own.
    """
    if not cluster.configured():
        pytest.skip(cluster.SKIP_REASON)
    directory = tmp_path_factory.mktemp("failover_site")
    env = cluster.subprocess_env(
        DJANGO_SETTINGS_MODULE="tests.cluster.failover_site",
        FAILOVER_SITE_USERS=str(directory / "users.sqlite3"),
        FAILOVER_SITE_DATABASE=connections["patroni"].settings_dict["NAME"],
        FAILOVER_SITE_TABLE=session_table(),
    )
    setup = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup()\n"
            "from django.core.management import call_command\n"
            "from django.contrib.auth.models import User\n"
            "call_command('migrate', database='default', verbosity=0)\n"
            f"for i in range({CLIENTS}): User.objects.create_user(f'user{{i}}')\n",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert setup.returncode == 0, setup.stdout + setup.stderr
    port = cluster.base_port() + 30
    log = directory / "gunicorn.log"
    with log.open("wb") as output:
        server = subprocess.Popen(
            [
                *(sys.executable, "-m", "gunicorn", "django.core.wsgi:get_wsgi_application()"),
                *("--bind", f"127.0.0.1:{port}", "--workers", "2", "--threads", "4"),
                *("--timeout", "60", "--graceful-timeout", "5"),
            ],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while fetch(new_opener(), f"{url}/start/")[1] is not None:
            assert server.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"gunicorn did not answer:\n{log.read_text()}"
            time.sleep(0.2)
        yield Site(url, log)
    finally:
        stop(server)


# ------------------------------------------------------------------ the clients


@dataclasses.dataclass
class Attempt:
    at: float  # when it started (time.monotonic)
    done: float = 0.0  # when its answer came
    error: str | None = None
    n: int | None = None  # the count a successful /count/ reported


class Browser:
    """A logged-in user's browser, and what happened to each of its requests."""

    def __init__(self, site: Site, username: str) -> None:
        self.site = site
        self.username = username
        self.opener = new_opener(CookieJar())
        _body, error = fetch(self.opener, f"{site.url}/login/{username}/")
        assert error is None, error
        self.logged_in_at = time.monotonic()
        self.counts: list[Attempt] = []
        self.starts: list[Attempt] = []
        # (session key, when the answer came) of each session a successful request started
        self.started: list[tuple[str, float]] = []
        self.crash: BaseException | None = None

    def count(self) -> Attempt:
        attempt = Attempt(time.monotonic())
        body, attempt.error = fetch(self.opener, f"{self.site.url}/count/")
        attempt.done = time.monotonic()
        if body is not None:
            username, n = body.split()
            assert username == self.username, body
            attempt.n = int(n)
        self.counts.append(attempt)
        return attempt

    def start_session(self) -> None:
        jar = CookieJar()
        attempt = Attempt(time.monotonic())
        _body, attempt.error = fetch(new_opener(jar), f"{self.site.url}/start/")
        attempt.done = time.monotonic()
        if attempt.error is None:
            self.started.append((session_cookie(jar), attempt.done))
        self.starts.append(attempt)

    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                if self.count().error == LOGGED_OUT:
                    break
                if len(self.counts) % NEW_SESSION_EVERY == 0:
                    self.start_session()
        except BaseException as exc:
            self.crash = exc

    @property
    def successes(self) -> list[Attempt]:
        return [a for a in self.counts if a.error is None]

    @property
    def logged_out(self) -> bool:
        return any(a.error == LOGGED_OUT for a in self.counts)

    def recovered_since(self, moment: float) -> bool:
        in_a_row = 0
        for attempt in reversed(self.counts):
            if attempt.error is not None or attempt.at < moment:
                break
            in_a_row += 1
        return in_a_row >= RECOVERED


@dataclasses.dataclass
class Timeline:
    started: float
    killed_node: int = 0
    # clusters/patroni.sh kill-leader returned: the postmaster had its SIGKILL.
    killed: float = 0.0
    recovered: float | None = None
    stopped: float = 0.0
    # Before the kill, every 0.1 s: how many bytes of WAL the leader had
    # written that a replica had not yet flushed.
    replica_lag: list[int] = dataclasses.field(default_factory=list)


def traffic(browsers: list[Browser]) -> Timeline:
    """Run the browsers, kill the leader, and stop once requests have recovered."""
    stop_event = threading.Event()
    threads = [threading.Thread(target=b.run, args=(stop_event,), daemon=True) for b in browsers]
    timeline = Timeline(time.monotonic())
    for thread in threads:
        thread.start()
    try:
        while time.monotonic() - timeline.started < BEFORE:
            timeline.replica_lag.append(replica_lag())
            time.sleep(0.1)
        timeline.killed_node = cluster.kill_leader()
        timeline.killed = time.monotonic()
        while time.monotonic() - timeline.killed < GIVE_UP:
            if any(b.crash for b in browsers):
                break
            if all(b.recovered_since(timeline.killed) or b.logged_out for b in browsers):
                timeline.recovered = time.monotonic()
                time.sleep(STEADY)
                break
            time.sleep(0.1)
        timeline.stopped = time.monotonic()
    finally:
        stop_event.set()
        for thread in threads:
            thread.join(REQUEST_TIMEOUT + 10)
    crashes = [b.crash for b in browsers if b.crash]
    assert not crashes, crashes
    assert not any(t.is_alive() for t in threads)
    return timeline


def replica_lag() -> int:
    """The WAL the leader has written and its furthest-behind replica has not flushed."""
    with connections["patroni"].cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(max(pg_wal_lsn_diff(pg_current_wal_lsn(), flush_lsn)), 0) "
            "FROM pg_stat_replication"
        )
        (lag,) = cursor.fetchone()
    return int(lag)


def kind(error: str) -> str:
    """An error without what varies from one occurrence to the next (ports, pids)."""
    return error.split(" (")[0][:110]


def measure(browsers: list[Browser], timeline: Timeline) -> dict[str, Any]:
    """The figures of a run: requests, errors, the outage window, throughput."""
    attempts = [a for b in browsers for a in (*b.counts, *b.starts)]
    failures = [a for a in attempts if a.error is not None]
    kill = timeline.killed
    succeeded_at = sorted(a.done for a in attempts if a.error is None)
    figures: dict[str, Any] = {
        "clients": len(browsers),
        "requests": len(attempts),
        "new_sessions_requested": sum(len(b.starts) for b in browsers),
        "failed": len(failures),
        "errors": dict(collections.Counter(kind(str(a.error)) for a in failures).most_common()),
    }
    if failures:
        first = min(a.at for a in failures) - kill
        last = max(a.done for a in failures) - kill
        figures["errors_from_s"] = round(first, 2)
        figures["errors_until_s"] = round(last, 2)
    after = [t for t in succeeded_at if t > kill]
    gaps = [b - a for a, b in itertools.pairwise([kill, *after])]
    figures["longest_without_success_s"] = round(max(gaps, default=0.0), 2)

    def rate(start: float, end: float) -> float:
        done = sum(1 for t in succeeded_at if start <= t < end)
        return round(done / (end - start), 1) if end > start else 0.0

    lags = sorted(timeline.replica_lag)
    if lags:
        figures["replica_lag_bytes_median"] = lags[len(lags) // 2]
        figures["replica_lag_bytes_max"] = lags[-1]
    figures["per_second_before"] = rate(timeline.started, kill)
    if timeline.recovered is not None:
        figures["recovered_after_s"] = round(timeline.recovered - kill, 2)
        figures["per_second_during"] = rate(kill, timeline.recovered)
        figures["per_second_after"] = rate(timeline.recovered, timeline.stopped)
    return figures


_figures: dict[str, Any] = {}


def record(name: str, figures: dict[str, Any], report: Any) -> None:
    """Print a test's figures in the run's report and add them to the JSON file."""
    _figures[name] = figures
    report(f"{name}: " + json.dumps(figures))
    path = Path(
        os.environ.get("SQL_SESSIONS_PATRONI_REPORT")
        or Path(os.environ.get("SQL_SESSIONS_PATRONI_DIR", ".")) / "failover.json"
    )
    with contextlib.suppress(OSError, ValueError):
        found = json.loads(path.read_text())
        _figures.update({k: v for k, v in found.items() if k not in _figures})
    _figures["measured"] = datetime.datetime.now(datetime.UTC).date().isoformat()
    path.write_text(json.dumps(_figures, indent=2, sort_keys=True) + "\n")


def stored(keys: list[str]) -> dict[str, dict[str, Any]]:
    """The session data of these keys on the leader (through HAProxy)."""
    if not keys:
        return {}
    by_hash = {hash_key(key): key for key in keys}
    table = connections["patroni"].ops.quote_name(session_table())
    with connections["patroni"].cursor() as cursor:
        cursor.execute(
            f"SELECT key_hash, data FROM {table} WHERE key_hash = ANY(%s)", [list(by_hash)]
        )
        rows = cursor.fetchall()
    return {by_hash[key_hash]: SessionStore().decode(data) for key_hash, data in rows}


def run_failover(site: Site) -> tuple[list[Browser], Timeline, list[Attempt]]:
    browsers = [Browser(site, f"user{i}") for i in range(CLIENTS)]
    try:
        timeline = traffic(browsers)
    finally:
        # This thread's own connection (replica_lag()) went with the leader.
        cluster.close_connections()
    assert timeline.recovered is not None, (
        f"no recovery {GIVE_UP}s after the kill:\n{site.log.read_text()[-3000:]}"
    )
    # One more request each, on the new leader.
    finals = [b.count() for b in browsers if not b.logged_out]
    return browsers, timeline, finals


# ------------------------------------------------------------------ the tests


def test_synchronous_replication_loses_no_session_and_no_change(
    patroni: str, site: Site, patroni_report: Any
) -> None:
    cluster.synchronous(True)
    browsers, timeline, finals = run_failover(site)
    figures = {"killed_node": timeline.killed_node, **measure(browsers, timeline)}
    # A failed /count/ whose change was committed all the same (its answer lost).
    figures["failed_counts_applied_anyway"] = sum(
        final.n - len(browser.successes)
        for browser, final in zip(browsers, finals, strict=True)
        if final.n is not None
    )
    record("synchronous", figures, patroni_report)

    assert not [b.username for b in browsers if b.logged_out], "a client was logged out"
    for browser, final in zip(browsers, finals, strict=True):
        # Logged in, as itself, on the new leader...
        assert final.error is None, (browser.username, final.error)
        # ... and each success saw every one before it: a count that does
        # not go up is an acknowledged change lost.
        counts = [a.n for a in browser.successes if a.n is not None]
        assert counts == sorted(set(counts)), (browser.username, counts)
        # Between two successes, the count moves on by one, plus at most the
        # failed requests between them (applied, their answer lost): no
        # change is lost and none comes from nowhere.
        previous = 0
        failed_since = 0
        for attempt in browser.counts:
            if attempt.error is not None:
                failed_since += 1
                continue
            assert attempt.n is not None
            assert previous + 1 <= attempt.n <= previous + 1 + failed_since, (
                browser.username,
                [(a.n, a.error) for a in browser.counts],
            )
            previous, failed_since = attempt.n, 0

    # Every session a successful request started is there.
    started = [key for b in browsers for key, _at in b.started]
    assert started
    assert set(stored(started)) == set(started)


def test_asynchronous_replication_can_lose_the_last_writes(
    patroni: str, site: Site, patroni_report: Any
) -> None:
    cluster.synchronous(False)
    try:
        browsers, timeline, finals = run_failover(site)
    finally:
        cluster.whole()
        cluster.synchronous(True)
    kill = timeline.killed
    figures = {"killed_node": timeline.killed_node, **measure(browsers, timeline)}

    # Acknowledged changes the new leader did not have: a success whose count
    # is not above the one before it.
    lost_changes: list[float] = []  # when each was acknowledged, from the kill
    for browser in browsers:
        successes = browser.successes
        for before, after in itertools.pairwise(successes):
            assert before.n is not None
            assert after.n is not None
            if after.n <= before.n:
                lost_changes.extend(
                    s.done - kill
                    for s in successes
                    if s.n is not None and after.n <= s.n <= before.n and s.done <= before.done
                )
    started = [(key, at) for b in browsers for key, at in b.started]
    found = stored([key for key, _at in started])
    lost_sessions = [at - kill for key, at in started if key not in found]
    logged_out = [b.username for b in browsers if b.logged_out]
    figures.update(
        lost_acknowledged_changes=len(lost_changes),
        lost_new_sessions=len(lost_sessions),
        new_sessions_acknowledged=len(started),
        logged_out_clients=len(logged_out),
    )
    if lost_changes or lost_sessions:
        # How long before the kill the oldest lost write was acknowledged.
        figures["oldest_lost_write_before_kill_s"] = round(-min(lost_changes + lost_sessions), 3)
    record("asynchronous", figures, patroni_report)

    # Guaranteed: the cluster fails over and serves every client that still
    # has its session, and nothing acknowledged after the failover is lost
    # (each success after the recovery counts on by exactly one).
    assert len(finals) + len(logged_out) == CLIENTS
    for browser in browsers:
        if browser.logged_out:
            continue
        assert browser.counts[-1].error is None, (browser.username, browser.counts[-1].error)
        late = [a for a in browser.counts if timeline.recovered and a.at > timeline.recovered]
        assert late
        assert all(a.error is None for a in late)
        assert [a.n for a in late] == list(range(late[0].n or 0, (late[0].n or 0) + len(late)))
    # And no write is "lost" that was acknowledged after the kill: those went
    # to the new leader.
    assert all(at < 0 for at in lost_changes + lost_sessions), (lost_changes, lost_sessions)


def serve(client: Client, path: str) -> Any:
    """
    One request as a WSGI server runs it: Django's close_old_connections()
    when it starts and ends (the test client leaves that out), which is
    where CONN_HEALTH_CHECKS and CONN_MAX_AGE act. Raises the view's (or the
    session middleware's) exception.
    """
    close_old_connections()
    try:
        return client.get(path)
    finally:
        with contextlib.suppress(DatabaseError):
            close_old_connections()


def node_count(port: int, key: str) -> Any:
    """The session's count on one node, straight to it."""
    table = connections["patroni"].ops.quote_name(session_table())
    with psycopg.connect(
        host=connections["patroni"].settings_dict["HOST"],
        port=port,
        user=connections["patroni"].settings_dict["USER"],
        dbname=connections["patroni"].settings_dict["NAME"],
        autocommit=True,
        connect_timeout=2,
    ) as connection:
        row = connection.execute(
            f"SELECT data FROM {table} WHERE key_hash = %s", [hash_key(key)]
        ).fetchone()
    return None if row is None else SessionStore().decode(row[0]).get("n")


def in_recovery(port: int) -> bool:
    try:
        with psycopg.connect(
            host="127.0.0.1", port=port, user="postgres", dbname="postgres", connect_timeout=1
        ) as connection:
            row = connection.execute("SELECT pg_is_in_recovery()").fetchone()
            return bool(row and row[0])
    except psycopg.Error:
        return False


def test_the_old_primary_back_as_a_replica_refuses_writes_by_name(
    patroni: str, make_user: Any, settings: Any, patroni_report: Any
) -> None:
    """
    HAProxy is made to keep sending connections to the killed leader (its
    check of it paused, the other nodes in maintenance), as a check slower
    than Patroni would: the old primary comes back as a replica with clients
    connected to it. Then HAProxy sends new connections to the new leader,
    first without closing those to the old primary, then closing them as
    on-marked-down shutdown-sessions does.
    """
    cluster.synchronous(True)
    user = make_user("readonly")
    client = Client()
    serve(client, f"/login/{user.pk}/")
    key = client.cookies["sessionid"].value
    assert serve(client, "/count/").content == f"{user.pk} 1".encode()
    old = cluster.leader()
    assert cluster.where("patroni") == (cluster.node_port(old), False)
    others = [n for n in (1, 2, 3) if n != old]
    figures: dict[str, Any] = {}
    # Another thread, so another connection to "patroni" (one per thread).
    other = ThreadPoolExecutor(1)
    cluster.haproxy(f"disable health postgres/node{old}")
    for n in others:
        cluster.haproxy(f"set server postgres/node{n} state maint")
    try:
        killed_at = time.monotonic()
        assert cluster.kill_leader() == old
        back = cluster.wait_until(
            "old primary back as a replica", lambda: in_recovery(cluster.node_port(old))
        )
        figures["old_primary_back_as_replica_after_s"] = round(back, 2)
        new = cluster.leader()
        assert new != old

        # The kill closed the kept connection; the health check opens a new
        # one, which HAProxy sends to the old primary, now a replica.
        with pytest.raises(SessionDatabaseReadOnly) as raised:
            serve(client, "/count/")
        message = str(raised.value)
        figures["refused_write"] = message.split(". ")[0]
        assert message.startswith("SQL_SESSIONS_DB_ALIAS 'patroni' is a standby or read-only")
        assert "read-only transaction" in message
        # Reads work there: the user is still logged in; these requests keep
        # their connections to the old primary.
        assert serve(client, "/whoami/").content == str(user.pk).encode()
        assert cluster.where("patroni") == (cluster.node_port(old), True)
        assert other.submit(serve, client, "/whoami/").result().content == str(user.pk).encode()
        settings.SQL_SESSIONS_DB_ALIAS = "patroni_unchecked"
        with pytest.raises(SessionDatabaseReadOnly, match="'patroni_unchecked'"):
            serve(client, "/count/")
        assert serve(client, "/whoami/").content == str(user.pk).encode()
        assert cluster.where("patroni_unchecked") == (cluster.node_port(old), True)
        settings.SQL_SESSIONS_DB_ALIAS = "patroni"

        # HAProxy sends new connections to the new leader, and closes none.
        cluster.haproxy(f"set weight postgres/node{old} 0")
        for n in others:
            cluster.haproxy(f"set server postgres/node{n} state ready")
        # (Back from maintenance a node counts as up until checked.)
        cluster.wait_until(
            "HAProxy routing to the new leader only",
            lambda: all(
                cluster.routed_to().get(f"node{n}", "").startswith("UP" if n == new else "DOWN")
                for n in others
            ),
        )
        # The kept connection still answers, so it is used: the write is
        # refused there once, and the connection closed after the request...
        with pytest.raises(SessionDatabaseReadOnly):
            serve(client, "/count/")
        # ... so the next request connects again, to the new leader.
        assert serve(client, "/count/").content == f"{user.pk} 2".encode()
        assert cluster.where("patroni") == (cluster.node_port(new), False)
        # Nothing the refused requests did was written anywhere.
        assert node_count(cluster.node_port(new), key) == 2
        # ... and the old primary, a replica of the new leader, gets that.
        cluster.wait_until(
            "the old primary replaying the new leader's write",
            lambda: node_count(cluster.node_port(old), key) == 2,
            timeout=10,
        )
    finally:
        settings.SQL_SESSIONS_DB_ALIAS = "patroni"
        cluster.haproxy(f"set weight postgres/node{old} 100%")
        cluster.haproxy(f"enable health postgres/node{old}")
        for n in others:
            cluster.haproxy(f"set server postgres/node{n} state ready")

    # HAProxy checks the old primary again, marks it down and closes the
    # connections still open to it (on-marked-down shutdown-sessions): the
    # other thread's and patroni_unchecked's.
    cut = cluster.wait_until(
        "HAProxy marking the old primary down",
        lambda: cluster.routed_to().get(f"node{old}", "").startswith("DOWN"),
    )
    figures["haproxy_marked_it_down_after_s"] = round(cut, 2)
    # With CONN_HEALTH_CHECKS the next request finds its connection closed,
    # opens another, and reaches the new leader.
    assert other.submit(serve, client, "/count/").result().content == f"{user.pk} 3".encode()
    # Without it, the first request on the kept connection fails; Django
    # closes the connection at its end, and the next one works.
    settings.SQL_SESSIONS_DB_ALIAS = "patroni_unchecked"
    with pytest.raises(OperationalError) as unchecked:
        serve(client, "/count/")
    figures["without_health_checks_first_request"] = kind(
        f"{type(unchecked.value).__name__}: {str(unchecked.value).strip().splitlines()[0]}"
    )
    assert serve(client, "/count/").content == f"{user.pk} 4".encode()
    settings.SQL_SESSIONS_DB_ALIAS = "patroni"
    other.submit(connections.close_all).result()
    other.shutdown()
    figures["whole_test_s"] = round(time.monotonic() - killed_at, 2)
    record("read_only", figures, patroni_report)


EXPIRED = 20_000
LIVE = 500
BATCH = 250


def test_a_cleanup_when_the_primary_dies_stops_and_a_new_run_finishes_alone(
    patroni: str, patroni_report: Any
) -> None:
    cluster.synchronous(True)
    table = connections["patroni"].ops.quote_name(session_table())
    live = [SessionStore() for _ in range(LIVE)]
    for store in live:
        store["live"] = True
        store.save()
    with connections["patroni"].cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (key_hash, data, expire_date, created_at, updated_at, version) "
            "SELECT md5('expired' || i) || md5('again' || i), '', "
            "now() - interval '1 day' - i * interval '1 second', now(), now(), 1 "
            "FROM generate_series(1, %s) AS i",
            [EXPIRED],
        )
    figures: dict[str, Any] = {"expired": EXPIRED, "live": LIVE, "batch_size": BATCH}

    batches = threading.Event()
    outcome: dict[str, Any] = {}

    def first_run() -> None:
        def progress(deleted: int, done: int, seconds: float) -> None:
            outcome["deleted"] = deleted
            if done >= 3:
                batches.set()

        try:
            outcome["result"] = delete_expired(batch_size=BATCH, sleep=0.05, progress=progress)
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            connections.close_all()

    runner = threading.Thread(target=first_run)
    runner.start()
    assert batches.wait(30), outcome
    killed_at = time.monotonic()
    cluster.kill_leader()
    runner.join(60)
    assert not runner.is_alive()
    # It stopped with the error, having deleted some batches, not all.
    assert "result" not in outcome, outcome["result"]
    assert isinstance(outcome["error"], DatabaseError), outcome["error"]
    figures["first_run_stopped_after_s"] = round(time.monotonic() - killed_at, 2)
    figures["first_run_error"] = kind(
        f"{type(outcome['error']).__name__}: {str(outcome['error']).strip().splitlines()[0]}"
    )
    figures["first_run_deleted_before_the_kill"] = outcome["deleted"]
    assert 0 < outcome["deleted"] < EXPIRED

    # A new run on the new leader takes the lock (the old one went with the
    # old primary) and finishes; a third, meanwhile, is locked out.
    cluster.wait_until("a leader through HAProxy", lambda: _leader_answers())
    figures["new_leader_after_s"] = round(time.monotonic() - killed_at, 2)
    left = count_expired()
    # Sync replication: every batch the first run committed is on the new leader.
    assert left <= EXPIRED - outcome["deleted"]
    second: dict[str, Any] = {}
    started = threading.Event()

    def second_run() -> None:
        try:
            second["result"] = delete_expired(
                batch_size=BATCH, sleep=0.05, progress=lambda *args: started.set()
            )
        finally:
            connections.close_all()

    runner = threading.Thread(target=second_run)
    runner.start()
    assert started.wait(30)
    third: CleanupResult = delete_expired(batch_size=BATCH)
    runner.join(60)
    assert third.locked_out
    assert third.deleted == 0
    result: CleanupResult = second["result"]
    assert result.finished
    assert not result.locked_out
    figures["second_run_deleted"] = result.deleted
    assert result.deleted == left
    assert count_expired() == 0
    # Not one live session went.
    keys = [str(store.session_key) for store in live]
    assert len(stored(keys)) == LIVE
    record("cleanup", figures, patroni_report)


def _leader_answers() -> bool:
    try:
        _port, in_recovery_ = cluster.where("patroni")
    except DatabaseError:
        connections["patroni"].close()
        return False
    return not in_recovery_
