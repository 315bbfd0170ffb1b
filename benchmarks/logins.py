"""
What SQL_SESSIONS_MAX_PER_USER costs at a login: what Django's login() does
to the session (cycle_key(), the user's keys, the save after the view) with
the limit off, and with it on, where the limit's user_logged_in receiver
claims the user's lock row, reads the user's sessions and revokes the least
recently active one (the user is at the limit, so every login revokes one).

    python benchmarks/logins.py --databases sqlite,postgresql,mysql

Off and on alternate run by run on the same table; the cost is the median of
the runs' on/off ratios. With --docs DIR it writes DIR/logins.rst.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path[:0] = [str(Path(__file__).resolve().parent.parent)]

from benchmarks import report, run  # noqa: E402

LIMIT = 3
USER = "4711"


def login(limited: bool) -> None:
    """One login of USER, as django.contrib.auth.login() changes the session."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.http import HttpRequest

    from django_sql_sessions import limits
    from django_sql_sessions.backends.db import SessionStore

    request = HttpRequest()
    request.session = session = SessionStore()
    session["cart"] = [101, 202]  # a visitor's session before the login
    session.save()
    session.cycle_key()
    session[SESSION_KEY] = USER
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = "9c4f1b8a" * 8
    if limited:
        limits.limit_at_login(sender=None, request=request)
    session.save()  # SessionMiddleware's, after the view


def measure(alias: str, logins: int, runs: int) -> list[list[report.Cell]]:
    from django.test import override_settings

    from django_sql_sessions.backends.db import SessionStore
    from django_sql_sessions.models import Session

    run.populate(alias, 1000, SessionStore().encode(run.SESSION), django_table=False)
    micros: dict[bool, list[float]] = {False: [], True: []}
    for attempt in range(runs + 1):  # the first warms up, untimed
        for limited in [False, True] if attempt % 2 else [True, False]:
            with override_settings(SQL_SESSIONS_MAX_PER_USER=LIMIT if limited else None):
                for _ in range(LIMIT):
                    login(limited)  # the user at the limit, untimed
                start = time.perf_counter_ns()
                for _ in range(logins):
                    login(limited)
                took = (time.perf_counter_ns() - start) / logins / 1000
            if attempt:
                micros[limited].append(took)
            live = Session.objects.filter(user_id=USER).count()
            assert not limited or live == LIMIT, f"{live} sessions, the limit is {LIMIT}"
            Session.objects.filter(user_id=USER).delete()
    off, on = statistics.median(micros[False]), statistics.median(micros[True])
    ratio = statistics.median(b / a for a, b in zip(micros[False], micros[True], strict=True))
    return [[f"{off:,.0f}", f"{on:,.0f}", f"{(ratio - 1) * 100:+.1f}%"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--databases", default="sqlite,postgresql,mysql")
    parser.add_argument("--logins", type=int, default=300, help="logins per run")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--data-dir", default=tempfile.gettempdir())
    parser.add_argument("--docs", metavar="DIR", help="also write DIR/logins.rst")
    args = parser.parse_args()
    names = args.databases.split(",")
    run.configure(names, Path(args.data_dir))
    for alias in names:
        run.create_database(alias)
    stamp = report.Stamp.collect(aliases=names)
    print(stamp.text(), end="\n\n", flush=True)
    headers = ["µs per login, limit off", f"limit {LIMIT}, one revoked", "cost"]
    tables: list[report.TableLike] = []
    groups: dict[str, dict[str, float]] = {}
    for alias in names:
        with run.alias_under_test(alias):
            rows: list[Any] = measure(alias, args.logins, args.runs)
        caption = (
            f"{run.describe(alias, stamp.servers.get(alias, ''))}: median of {args.runs} "
            f"runs of {args.logins:,} logins"
        )
        tables.append((caption, headers, rows))
        off, on, _cost = rows[0]
        groups[alias] = {
            "limit off": float(off.replace(",", "")),
            f"limit {LIMIT}": float(on.replace(",", "")),
        }
        print(caption, report.text_table(headers, rows), sep="\n", end="\n\n", flush=True)
    if args.docs:

        def chart(path: Path) -> Path:
            title = f"A login, SQL_SESSIONS_MAX_PER_USER off and on (median of {args.runs} runs)"
            return report.bar_chart(path, title, groups, "µs per login")

        alt = "Bars: µs per login, the limit off and on, per database; the tables give the numbers"
        path = report.write_fragment(args.docs, "logins", stamp, tables, chart=chart, alt=alt)
        print(f"Wrote {path}")


if __name__ == "__main__":
    main()
