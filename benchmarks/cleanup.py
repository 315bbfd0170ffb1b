"""
Cleanup benchmark: purgesessions' batched delete against one unbatched DELETE,
on a table of --live live and --expired expired sessions, while a second
connection keeps saving sessions through Django's SessionMiddleware.

    python benchmarks/cleanup.py --databases postgresql,mysql

Reports rows deleted per second, the p50/p99 latency of the concurrent saves
during each cleanup and with no cleanup running, and deadlock errors.

With --docs DIR it also writes DIR/cleanup.rst and DIR/cleanup.svg (see
benchmarks/report.py).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path[:0] = [str(Path(__file__).resolve().parent.parent)]

from benchmarks import report  # noqa: E402
from benchmarks.run import (  # noqa: E402
    GENERATED,
    SESSION,
    TABLE,
    alias_under_test,
    configure,
    create_database,
    describe,
    insert_generated,
    key,
)

HEADERS = [
    "cleanup",
    "rows/s",
    "seconds",
    "saves",
    "save p50 ms",
    "save p99 ms",
    "deadlocks",
    "other errors",
]
NONE, BATCHED, UNBATCHED = "none", "purgesessions, batches of 1000", "one unbatched DELETE"


def populate(alias: str, live: int, expired: int, payload: str) -> None:
    """Live sessions get keys key(0..live-1); expired ones follow, expired up to 14 days ago."""
    from django.core.management import call_command
    from django.db import connections

    call_command("migrate", database=alias, verbosity=0)
    connection = connections[alias]
    expired_sql = {
        "postgresql": "now() - random() * interval '14 days' - interval '1 second'",
        "mysql": "NOW(6) - INTERVAL FLOOR(1 + RAND() * 1209600) SECOND",
    }[connection.vendor]
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {TABLE}")
        for first, count, expiry in [
            (0, live, GENERATED[connection.vendor]["in_14_days"]),
            (live, expired, expired_sql),
        ]:
            insert_generated(
                cursor,
                connection.vendor,
                TABLE,
                first=first,
                count=count,
                payload=payload,
                expiry=expiry,
            )
        if connection.vendor == "postgresql":
            cursor.execute(f"VACUUM ANALYZE {TABLE}")
        else:
            cursor.execute(f"ANALYZE TABLE {TABLE}")
            cursor.fetchall()


class Saver(threading.Thread):
    """Saves live sessions through the middleware, on its own connection, until stopped."""

    def __init__(self, live: int) -> None:
        super().__init__()
        self.live = live
        self.stop = threading.Event()
        self.latencies: list[float] = []
        self.deadlocks = 0
        self.errors = 0

    def run(self) -> None:
        from django.contrib.sessions.middleware import SessionMiddleware
        from django.db import DatabaseError, connections
        from django.http import HttpResponse
        from django.test import RequestFactory

        def view(request: Any) -> HttpResponse:
            request.session["counter"] = request.session.get("counter", 0) + 1
            return HttpResponse()

        middleware = SessionMiddleware(view)
        factory = RequestFactory()
        rng = random.Random(7)
        try:
            while not self.stop.is_set():
                cookie = f"sessionid={key(rng.randrange(self.live))}"
                started = time.perf_counter()
                try:
                    middleware(factory.get("/", HTTP_COOKIE=cookie))
                except DatabaseError as exc:
                    if "deadlock" in str(exc).lower():
                        self.deadlocks += 1
                    else:
                        self.errors += 1
                    continue
                self.latencies.append((time.perf_counter() - started) * 1000)
        finally:
            connections.close_all()


def while_saving(live: int, work: Any, idle_seconds: float = 0.0) -> tuple[Any, Saver]:
    saver = Saver(live)
    saver.start()
    result = None
    try:
        if work:
            result = work()
        else:
            time.sleep(idle_seconds)
    finally:
        saver.stop.set()
        saver.join()
    return result, saver


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def unbatched_delete(alias: str) -> int:
    """What Django's clear_expired() amounts to: one DELETE of every expired row."""
    from django.db import connections
    from django.utils import timezone

    connection = connections[alias]
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {connection.ops.quote_name(TABLE)} WHERE expire_date <= %s",
            [connection.ops.adapt_datetimefield_value(timezone.now())],
        )
        return int(cursor.rowcount)


@dataclass
class Run:
    cleanup: str
    rate: float
    seconds: float
    saver: Saver

    def row(self) -> list[report.Cell]:
        latencies = self.saver.latencies or [0.0]
        return [
            self.cleanup,
            f"{self.rate:,.0f}",
            f"{self.seconds:,.1f}",
            len(self.saver.latencies),
            f"{statistics.median(latencies):.1f}",
            f"{self.p99():.1f}",
            self.saver.deadlocks,
            self.saver.errors,
        ]

    def p99(self) -> float:
        return percentile(self.saver.latencies or [0.0], 0.99)


def measure(alias: str, live: int, expired: int, payload: str) -> list[Run]:
    from django_sql_sessions.cleanup import delete_expired

    populate(alias, live, expired, payload)
    runs: list[Run] = []
    _nothing, saver = while_saving(live, None, idle_seconds=10)
    runs.append(Run(NONE, 0.0, 10.0, saver))
    started = time.perf_counter()
    result, saver = while_saving(live, delete_expired)
    elapsed = time.perf_counter() - started
    runs.append(Run(BATCHED, result.deleted / elapsed, elapsed, saver))
    populate(alias, live, expired, payload)
    started = time.perf_counter()
    deleted, saver = while_saving(live, lambda: unbatched_delete(alias))
    elapsed = time.perf_counter() - started
    runs.append(Run(UNBATCHED, deleted / elapsed, elapsed, saver))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--databases", default="postgresql,mysql")
    parser.add_argument("--live", type=int, default=1_000_000)
    parser.add_argument("--expired", type=int, default=1_000_000)
    parser.add_argument("--data-dir", default=tempfile.gettempdir())
    parser.add_argument(
        "--docs",
        metavar="DIR",
        help="also write the RST fragment and SVG chart there (e.g. docs/perf)",
    )
    args = parser.parse_args()
    names = args.databases.split(",")
    configure(names, Path(args.data_dir))
    from django_sql_sessions.backends.db import SessionStore

    payload = SessionStore().encode(SESSION)
    for alias in names:
        create_database(alias)
    stamp = report.Stamp.collect(aliases=names)
    print(stamp.text(), end="\n\n")
    what = (
        f"{args.expired:,} expired among {args.live:,} live sessions, "
        "saves through SessionMiddleware on a second connection meanwhile"
    )
    tables: list[report.Table] = []
    rates: dict[str, dict[str, float]] = {}
    p99s: dict[str, dict[str, float]] = {}
    for alias in names:
        with alias_under_test(alias):
            caption = describe(alias, stamp.servers.get(alias, ""))
            runs = measure(alias, args.live, args.expired, payload)
        table = report.Table(f"{caption}: {what}", HEADERS, [run.row() for run in runs])
        tables.append(table)
        print(table.caption, report.text_table(table.headers, table.rows), sep="\n", end="\n\n")
        sys.stdout.flush()
        rates[caption] = {run.cleanup: run.rate for run in runs if run.cleanup != NONE}
        p99s[caption] = {run.cleanup: run.p99() for run in runs}
    if args.docs:

        def chart(path: Path) -> Path:
            panels = {
                "Expired rows deleted per second (higher is faster)": rates,
                "p99 latency of the concurrent saves (lower is better)": p99s,
            }
            return report.panel_chart(
                path,
                f"Cleanup: {args.expired:,} expired among {args.live:,} live sessions",
                panels,
                dict(zip(panels, ["rows/s", "ms"], strict=True)),
                colors={NONE: "#7f7f7f", BATCHED: "#1f77b4", UNBATCHED: "#d62728"},
                labels=True,
            )

        alt = (
            "Bar charts by database: rows deleted per second by the batched purgesessions "
            "and by one unbatched DELETE, and the p99 latency of sessions saved meanwhile, "
            "also with no cleanup running"
        )
        path = report.write_fragment(args.docs, "cleanup", stamp, tables, chart=chart, alt=alt)
        print(f"Wrote {path} and {path.with_suffix('.svg')}")


if __name__ == "__main__":
    main()
