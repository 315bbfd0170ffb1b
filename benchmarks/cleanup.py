"""
Cleanup benchmark: purgesessions' batched delete against one unbatched DELETE,
on a table of --live live and --expired expired sessions, while a second
connection keeps saving sessions through Django's SessionMiddleware.

    python benchmarks/cleanup.py --databases postgresql,mysql

Reports rows deleted per second, the p50/p99 latency of the concurrent saves
during each cleanup and with no cleanup running, and deadlock errors.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path[:0] = [str(Path(__file__).resolve().parent.parent)]

from benchmarks.run import (  # noqa: E402
    GENERATED,
    SESSION,
    TABLE,
    alias_under_test,
    configure,
    create_database,
    insert_generated,
    key,
)


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
    try:
        result = work() if work else time.sleep(idle_seconds)
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


def measure(alias: str, live: int, expired: int, payload: str) -> list[str]:
    from django_sql_sessions.cleanup import delete_expired

    populate(alias, live, expired, payload)
    runs: list[tuple[str, float, float, Saver]] = []
    _nothing, saver = while_saving(live, None, idle_seconds=10)
    runs.append(("none", 0.0, 10.0, saver))
    started = time.perf_counter()
    result, saver = while_saving(live, delete_expired)
    elapsed = time.perf_counter() - started
    runs.append(("purgesessions, batches of 1000", result.deleted / elapsed, elapsed, saver))
    populate(alias, live, expired, payload)
    started = time.perf_counter()
    deleted, saver = while_saving(live, lambda: unbatched_delete(alias))
    elapsed = time.perf_counter() - started
    runs.append(("one unbatched DELETE", deleted / elapsed, elapsed, saver))
    lines = []
    for name, rate, seconds, saver in runs:
        latencies = saver.latencies or [0.0]
        lines.append(
            f"| {alias} | {name} | {rate:,.0f} | {seconds:,.1f} | {len(saver.latencies):,} "
            f"| {statistics.median(latencies):.1f} | {percentile(latencies, 0.99):.1f} "
            f"| {saver.deadlocks} | {saver.errors} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--databases", default="postgresql,mysql")
    parser.add_argument("--live", type=int, default=1_000_000)
    parser.add_argument("--expired", type=int, default=1_000_000)
    parser.add_argument("--data-dir", default=tempfile.gettempdir())
    args = parser.parse_args()
    names = args.databases.split(",")
    configure(names, Path(args.data_dir))
    from django_sql_sessions.backends.db import SessionStore

    payload = SessionStore().encode(SESSION)
    print(
        f"{args.expired:,} expired among {args.live:,} live sessions; saves through "
        "SessionMiddleware on a second connection meanwhile\n\n"
        "| database | cleanup | rows/s | seconds | saves | save p50 ms | save p99 ms "
        "| deadlocks | other errors |\n|---|---|---:|---:|---:|---:|---:|---:|---:|"
    )
    for alias in names:
        create_database(alias)
        with alias_under_test(alias):
            for line in measure(alias, args.live, args.expired, payload):
                print(line, flush=True)


if __name__ == "__main__":
    main()
