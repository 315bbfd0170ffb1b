"""
A node dies under traffic: logged-in clients go on through HAProxy, and no
session and no acknowledged change is lost.

Each client is a thread with its own Django test Client and so its own
connection to "galera" (Django's connections are per thread), kept between
requests (CONN_MAX_AGE) and health-checked at the start of each
(CONN_HEALTH_CHECKS). Every request is counted as it came out: nothing here
retries, so a failure is a failure.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import itertools
import sys
import threading
import time
from typing import Any

from django.core.signals import got_request_exception
from django.db import Error, close_old_connections, connections
from django.test import Client

from django_sql_sessions.backends.db import SessionStore
from django_sql_sessions.storage import hash_key, session_table
from tests.cluster import galera as cluster

CLIENTS = 8
KILLED = 2  # the node that dies
BEFORE = 3.0  # seconds of traffic before the kill
# Requests have recovered once every client has had this many successful
# requests in a row since the kill; traffic then goes on for STEADY seconds.
RECOVERED = 5
STEADY = 2.0
GIVE_UP = 60.0  # seconds after the kill without recovery: the test fails
NEW_SESSION_EVERY = 10  # each client's 10th, 20th, ... request also starts an anonymous session
LOGGED_OUT = "HTTP 302 (logged out)"


@dataclasses.dataclass
class Attempt:
    at: float  # when it started (time.monotonic)
    error: str | None = None  # "OperationalError 2013", "HTTP 302", ...
    n: int | None = None  # the count a successful /count/ reported


class Browser:
    """A logged-in user's browser, and what happened to each of its requests."""

    def __init__(self, user: Any) -> None:
        self.user = user
        self.client = new_client()
        _response, error = serve(self.client, f"/login/{user.pk}/")
        assert error is None, error
        self.counts: list[Attempt] = []  # its /count/ requests
        self.starts: list[Attempt] = []  # the anonymous sessions it started
        # (session key, value) of each session a successful request started
        self.started: list[tuple[str, str]] = []
        self.crash: BaseException | None = None

    def count(self) -> Attempt:
        attempt = Attempt(time.monotonic())
        body, attempt.error = serve(self.client, "/count/")
        if body is not None:
            user_id, n = body.decode().split()
            assert user_id == str(self.user.pk)
            attempt.n = int(n)
        self.counts.append(attempt)
        return attempt

    def start_session(self) -> None:
        value = f"{self.user.pk}-{len(self.counts)}"
        client = new_client()
        attempt = Attempt(time.monotonic())
        _response, attempt.error = serve(client, f"/write/{value}/")
        if attempt.error is None:
            self.started.append((client.cookies["sessionid"].value, value))
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
        finally:
            with contextlib.suppress(Error):
                connections.close_all()

    @property
    def logged_out(self) -> bool:
        return any(a.error == LOGGED_OUT for a in self.counts)

    @property
    def successes(self) -> list[Attempt]:
        return [a for a in self.counts if a.error is None]

    def recovered_since(self, moment: float) -> bool:
        in_a_row = 0
        for attempt in reversed(self.counts):
            if attempt.error is not None or attempt.at < moment:
                break
            in_a_row += 1
        return in_a_row >= RECOVERED


# The exception of the request this thread is serving. The test client
# learns of a view's exception through the got_request_exception signal,
# which every client in the middle of a request receives, whichever thread
# raised it: with several threads, each would re-raise the others'. So the
# clients turn exceptions into 500 responses, and this receiver, which runs
# in the thread that raised, keeps each thread's own.
_raised = threading.local()


def _keep_exception(sender: Any, **kwargs: Any) -> None:
    _raised.exception = sys.exc_info()[1]


def new_client() -> Client:
    return Client(raise_request_exception=False)


def serve(client: Client, path: str) -> tuple[bytes | None, str | None]:
    """
    One request, with what a WSGI server does around it and the test client
    leaves out: close_old_connections() when it starts and ends (Django's
    request_started and request_finished signals), which closes a
    connection that failed and enables the next health check. Returns the
    response's body, or what went wrong: the exception's class and MySQL
    error code, or the HTTP status.
    """
    _raised.exception = None
    try:
        close_old_connections()
        response = client.get(path)
    except Error as exc:  # from close_old_connections()
        return None, describe(exc)
    finally:
        # The response is complete; a failure to close is not the request's.
        with contextlib.suppress(Error):
            close_old_connections()
    if response.status_code == 200:
        return response.content, None
    if _raised.exception is not None:
        return None, describe(_raised.exception)
    if response.status_code == 302 and path == "/count/":
        # login_required: the session was not found, and the middleware
        # deleted its cookie. Nothing brings this client back.
        return None, LOGGED_OUT
    return None, f"HTTP {response.status_code}"


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__} {cluster.error_code(exc)}"


@dataclasses.dataclass
class Timeline:
    started: float
    kill_sent: float | None = None  # clusters/galera.sh kill-node started
    killed: float | None = None  # ... and returned
    recovered: float | None = None
    stopped: float | None = None


def test_a_node_killed_under_traffic_loses_no_session_and_no_change(
    galera: str, make_user: Any, report: Any
) -> None:
    got_request_exception.connect(_keep_exception)
    try:
        browsers = [Browser(make_user(f"user{i}")) for i in range(CLIENTS)]
        try:
            timeline = traffic(browsers)
            # One more request each, still without the killed node.
            finals = [b.count() for b in browsers]
        finally:
            cluster.close_connections()
        report_failover(browsers, timeline, report)
    finally:
        got_request_exception.disconnect(_keep_exception)
    try:
        logged_out = [b.user.username for b in browsers if b.logged_out]
        assert not logged_out, f"logged out during the test: {logged_out}"
        assert timeline.recovered is not None, f"no recovery {GIVE_UP}s after the kill"
        for browser, final in zip(browsers, finals, strict=True):
            # Every client is logged in, as itself...
            assert final.error is None, (browser.user.username, final.error)
            assert final.n is not None
            # ... and each success saw all the ones before it: a repeated or
            # lower count is an acknowledged change that was lost.
            counts = [a.n for a in browser.successes if a.n is not None]
            assert counts == sorted(set(counts)), (browser.user.username, counts)
            # A failed request may or may not have been applied (its commit
            # can be lost on the way back), but never more than attempted.
            assert len(counts) <= final.n <= len(browser.counts)

        # Every session a successful request wrote is in the table, as
        # written, on a node that was up all along (read after every write
        # committed anywhere: this test is about what was kept, not about
        # how the engine reads).
        stored = stored_sessions([b.client.cookies["sessionid"].value for b in browsers])
        assert len(stored) == CLIENTS
        for browser, final in zip(browsers, finals, strict=True):
            data = stored[browser.client.cookies["sessionid"].value]
            assert data.get("_auth_user_id") == str(browser.user.pk)
            assert data.get("n") == final.n
        started = dict(s for b in browsers for s in b.started)
        assert started
        stored = stored_sessions(list(started))
        assert {key: data.get("value") for key, data in stored.items()} == started
    finally:
        cluster.close_connections()
        cluster.script("start-node", str(KILLED))


def stored_sessions(keys: list[str]) -> dict[str, dict[str, Any]]:
    """The session data of these keys, as every node will have it, read on node 1."""
    by_hash = {hash_key(key): key for key in keys}
    rows = cluster.causal_query(
        cluster.node_alias(1),
        f"SELECT key_hash, data FROM `{session_table()}` WHERE key_hash IN "
        f"({', '.join(['%s'] * len(by_hash))})",
        list(by_hash),
    )
    return {by_hash[key_hash]: SessionStore().decode(data) for key_hash, data in rows}


def traffic(browsers: list[Browser]) -> Timeline:
    """Run the browsers, kill a node, and stop once requests have recovered."""
    stop = threading.Event()
    threads = [threading.Thread(target=b.run, args=(stop,), daemon=True) for b in browsers]
    timeline = Timeline(time.monotonic())
    for thread in threads:
        thread.start()
    try:
        time.sleep(BEFORE)
        timeline.kill_sent = time.monotonic()
        cluster.script("kill-node", str(KILLED))
        # The node is gone: what succeeds from now on went to the others.
        timeline.killed = time.monotonic()
        while time.monotonic() - timeline.killed < GIVE_UP:
            if any(b.crash or b.logged_out for b in browsers):
                break
            if all(b.recovered_since(timeline.killed) for b in browsers):
                timeline.recovered = time.monotonic()
                time.sleep(STEADY)
                break
            time.sleep(0.1)
        timeline.stopped = time.monotonic()
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    crashes = [b.crash for b in browsers if b.crash]
    assert not crashes, crashes
    assert not any(t.is_alive() for t in threads)
    return timeline


def report_failover(browsers: list[Browser], timeline: Timeline, report: Any) -> None:
    attempts = [a for b in browsers for a in (*b.counts, *b.starts)]
    failures = [a for a in attempts if a.error is not None]
    kinds = collections.Counter(a.error for a in failures)
    report(
        f"failover: node {KILLED} killed under {CLIENTS} logged-in clients; "
        f"{len(attempts)} requests ({sum(len(b.starts) for b in browsers)} of them new "
        f"sessions), {len(failures)} failed"
        + (f": {', '.join(f'{k} x{v}' for k, v in kinds.most_common())}" if kinds else "")
    )
    kill_sent, killed = timeline.kill_sent, timeline.killed
    recovered, stopped = timeline.recovered, timeline.stopped
    if kill_sent is None or killed is None or stopped is None:
        return
    succeeded_at = sorted(a.at for a in attempts if a.error is None)
    if failures:
        first = min(a.at for a in failures) - kill_sent
        last = max(a.at for a in failures) - kill_sent
        report(
            f"  errors (by request start): first {first:+.2f}s from the kill command, last "
            f"{last:+.2f}s; window {last - first:.2f}s"
        )
    pause = max((b - a for a, b in itertools.pairwise(succeeded_at) if b > kill_sent), default=0.0)
    report(f"  longest time without a successful request after the kill: {pause:.2f}s")

    def rate(start: float, end: float) -> str:
        done = sum(1 for t in succeeded_at if start <= t < end)
        return f"{done / (end - start):.0f}/s over {end - start:.1f}s"

    if recovered is None:
        report(f"  successful requests: before {rate(timeline.started, kill_sent)}; no recovery")
        return
    report(
        f"  every client had {RECOVERED} successes in a row {recovered - kill_sent:.2f}s after "
        f"the kill; successful requests: before {rate(timeline.started, kill_sent)}, "
        f"during {rate(kill_sent, recovered)}, after {rate(recovered, stopped)}"
    )
    for browser in browsers:
        failed = len(browser.counts) - len(browser.successes)
        final_n = browser.counts[-1].n
        if failed and final_n is not None:
            applied = final_n - len(browser.successes)
            report(
                f"  {browser.user.username}: {failed} failed /count/ request(s), "
                f"{applied} of them applied all the same"
            )
