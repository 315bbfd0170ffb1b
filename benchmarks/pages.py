"""
What the "your sessions" pages cost: requests through Django's handler and
the README's middleware (ours for sessions, then CSRF, auth and messages) to
the list page and to "log out everywhere else", for a user with 1, 10 and
50 sessions in a table of --rows other sessions, next to the floor: a
signed-in page on the same base template that lists nothing.

    python benchmarks/pages.py --databases sqlite,postgresql,mysql --rows 100000

The user's sessions are made by Django's login() with device details on, so
the list names each device. "log out others" deletes the other sessions of
the user; they are made again, untimed, before each such request. CSRF
checks are off, as in Django's test client. With --docs DIR it writes
DIR/pages.rst.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

sys.path[:0] = [str(Path(__file__).resolve().parent.parent)]

from benchmarks import report, run  # noqa: E402

SESSIONS = (1, 10, 50)
AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/140.0.0.0 Safari/537.36"
)
SETTINGS: dict[str, Any] = {
    "INSTALLED_APPS": [
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "django.contrib.messages",
        "django.contrib.sessions",
        "django_sql_sessions",
    ],
    "MIDDLEWARE": [
        "django_sql_sessions.middleware.SessionMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
    ],
    "ROOT_URLCONF": "benchmarks.pages_urls",
    "TEMPLATES": [
        {
            "BACKEND": "django.template.backends.django.DjangoTemplates",
            "APP_DIRS": True,
            "OPTIONS": {
                "context_processors": [
                    "django.template.context_processors.request",
                    "django.contrib.auth.context_processors.auth",
                    "django.contrib.messages.context_processors.messages",
                ]
            },
        }
    ],
    "SQL_SESSIONS_DEVICE_DETAILS": True,
    "ALLOWED_HOSTS": ["testserver"],
}
LIST = "/account/sessions/"
REVOKE_OTHERS = "/account/sessions/revoke-others/"


class Pages:
    """The project's handler and the benchmark's user, as requests see them."""

    def __init__(self, alias: str) -> None:
        from django.contrib.auth import get_user_model
        from django.core.handlers.base import BaseHandler
        from django.test import RequestFactory

        from benchmarks.pages_urls import USERNAME

        self.handler = BaseHandler()
        self.handler.load_middleware()
        self.factory = RequestFactory(HTTP_USER_AGENT=AGENT, REMOTE_ADDR="203.0.113.7")
        users = get_user_model().objects
        self.user = users.filter(username=USERNAME).first() or users.create_user(USERNAME)

    def request(self, method: str, path: str, cookie: str = "") -> Any:
        request = getattr(self.factory, method)(path, HTTP_COOKIE=f"sessionid={cookie}")
        request._dont_enforce_csrf_checks = True
        return self.handler.get_response(request)

    def sign_in(self) -> str:
        """A new session of the user's, by Django's login(); its key."""
        response = self.request("get", "/sign-in/")
        assert response.status_code == 200, response
        return str(response.cookies["sessionid"].value)

    def sessions(self) -> Any:
        from django_sql_sessions.models import Session

        return Session.objects.filter(user_id=str(self.user.pk))

    def with_sessions(self, count: int) -> str:
        """The user with exactly `count` sessions; the key of the last."""
        self.sessions().delete()
        keys = [self.sign_in() for _ in range(count)]
        return keys[-1]

    def timed(self, method: str, path: str, cookie: str, requests: int) -> float:
        """µs per request of `requests` requests."""
        start = time.perf_counter_ns()
        for _ in range(requests):
            self.request(method, path, cookie)
        return (time.perf_counter_ns() - start) / requests / 1000


def check_list(pages: Pages, cookie: str, count: int) -> None:
    """The list page shows the user's `count` sessions, this one marked: what is timed works."""
    response = pages.request("get", LIST, cookie)
    body = response.content.decode()
    assert response.status_code == 200, response.status_code
    assert body.count('<tr class="session') == count, body
    assert body.count('aria-current="true"') == 1, body
    assert "Chrome 140 on Windows" in body or "Chrome on Windows" in body, body


class Timed(NamedTuple):
    """Medians of one user's runs, µs per request."""

    sessions: int
    floor: float
    listed: float
    log_out_others: float


def log_outs(requests: int) -> int:
    """Log-outs per run: each makes count - 1 sessions first, so a tenth of the page requests."""
    return max(1, requests // 10)


def measure(alias: str, rows: int, requests: int, runs: int) -> list[Timed]:
    from django_sql_sessions.backends.db import SessionStore

    run.populate(alias, rows, SessionStore().encode(run.SESSION), django_table=False)
    pages = Pages(alias)
    found: list[Timed] = []
    for count in SESSIONS:
        floors: list[float] = []
        lists: list[float] = []
        revokes: list[float] = []
        cookie = pages.with_sessions(count)
        for attempt in range(runs + 1):  # the first warms up, untimed
            # The last run's log-outs left one: the user has `count` again.
            for _ in range(count - pages.sessions().count()):
                pages.sign_in()
            check_list(pages, cookie, count)
            floor = pages.timed("get", "/floor/", cookie, requests)
            listed = pages.timed("get", LIST, cookie, requests)
            revoking = 0
            for _ in range(log_outs(requests)):
                for _ in range(count - 1):
                    pages.sign_in()
                start = time.perf_counter_ns()
                response = pages.request("post", REVOKE_OTHERS, cookie)
                revoking += time.perf_counter_ns() - start
                assert response.status_code == 302, response.status_code
            assert pages.sessions().count() == 1, "log out others left other sessions"
            if attempt:
                floors.append(floor)
                lists.append(listed)
                revokes.append(revoking / log_outs(requests) / 1000)
        median = statistics.median
        found.append(Timed(count, median(floors), median(lists), median(revokes)))
    pages.sessions().delete()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--databases", default="sqlite,postgresql,mysql")
    parser.add_argument("--rows", type=int, default=100_000, help="other users' sessions")
    parser.add_argument("--requests", type=int, default=200, help="page requests per run")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--data-dir", default=tempfile.gettempdir())
    parser.add_argument("--docs", metavar="DIR", help="also write DIR/pages.rst")
    args = parser.parse_args()
    names = args.databases.split(",")
    run.configure(names, Path(args.data_dir), extra=SETTINGS)
    for alias in names:
        run.create_database(alias)
    stamp = report.Stamp.collect(aliases=names)
    print(stamp.text(), end="\n\n", flush=True)
    headers = ["user's sessions", "floor µs", "list µs", "list - floor", "log out others µs"]
    tables: list[report.TableLike] = []
    panels: dict[str, dict[str, dict[str, float]]] = {}
    for alias in names:
        with run.alias_under_test(alias):
            timed = measure(alias, args.rows, args.requests, args.runs)
        name = run.describe(alias, stamp.servers.get(alias, ""))
        caption = (
            f"{name}: µs per request, median of {args.runs} runs of {args.requests:,} "
            f"page requests and {log_outs(args.requests):,} log-outs, among {args.rows:,} "
            "other sessions"
        )
        rows: list[list[report.Cell]] = [
            [
                t.sessions,
                f"{t.floor:,.0f}",
                f"{t.listed:,.0f}",
                f"{t.listed - t.floor:+,.0f}",
                f"{t.log_out_others:,.0f}",
            ]
            for t in timed
        ]
        tables.append((caption, headers, rows))
        panels[name] = {
            f"{t.sessions} sessions": {
                "floor": t.floor,
                "list": t.listed,
                "log out others": t.log_out_others,
            }
            for t in timed
        }
        print(caption, report.text_table(headers, rows), sep="\n", end="\n\n", flush=True)
    if args.docs:

        def chart(path: Path) -> Path:
            title = f'The "your sessions" pages (median of {args.runs} runs)'
            return report.panel_chart(path, title, panels, "µs per request")

        alt = (
            "Bar charts, one per database: µs per request of a signed-in floor page, the "
            "sessions list and log out everywhere else, for users with 1, 10 and 50 "
            "sessions; the tables below give the numbers"
        )
        path = report.write_fragment(args.docs, "pages", stamp, tables, chart=chart, alt=alt)
        print(f"Wrote {path}")


if __name__ == "__main__":
    main()
