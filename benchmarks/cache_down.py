"""
Cache down, site up: what each request costs when the cached engine's Redis
is dead or hung, against the same engine with Redis up and the db engine.

    python benchmarks/cache_down.py --databases postgresql,mysql

It starts a redis-server of its own (nobody else's is touched) and times
every request through Django's SessionMiddleware, one process, for
--seconds per phase and workload:

- up: Redis answers, and holds every session;
- dead: Redis was killed (connections are refused at once);
- hung: Redis is stopped with SIGSTOP (connections hang until the socket
  timeout, 0.25 s as docs/cache.rst advises);
- db engine: our db engine, no cache at all.

A failed cache call leaves the cache out for caching.RETRY_AFTER seconds,
so a hung Redis costs about one timeout per process per interval; the
"mean" column spreads it over the requests.

With --docs DIR it writes DIR/cache_down.rst and DIR/cache_down.svg.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent.parent)]

from benchmarks import report  # noqa: E402
from benchmarks.run import (  # noqa: E402
    SESSION,
    Bench,
    alias_under_test,
    configure,
    create_database,
    describe,
    key,
    populate,
    view_for,
)
from tests.servers import REDIS_SERVER, RedisServer  # noqa: E402

HEADERS = ["phase", "workload", "requests", "median µs", "p99 µs", "max ms", "mean µs", "errors"]
PHASES = ["up", "dead", "hung", "db engine"]


def timed(bench: Bench, engine: str, workload: str, seconds: float) -> list[float]:
    """µs of each request, for `seconds`."""
    middleware = bench.middleware(engine, view_for(workload))
    found: list[float] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        cookie = f"sessionid={key(bench.rng.randrange(bench.read_range))}"
        request = bench.factory.get("/", HTTP_COOKIE=cookie)
        started = time.perf_counter_ns()
        middleware(request)
        found.append((time.perf_counter_ns() - started) / 1000)
    return found


def row(phase: str, workload: str, micros: list[float], errors: int) -> list[report.Cell]:
    ordered = sorted(micros)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return [
        phase,
        workload,
        len(micros),
        f"{statistics.median(micros):,.0f}",
        f"{p99:,.0f}",
        f"{ordered[-1] / 1000:,.1f}",
        f"{statistics.fmean(micros):,.0f}",
        errors,
    ]


def measure(
    alias: str, redis: RedisServer, rows: int, seconds: float
) -> tuple[list[list[report.Cell]], dict[str, dict[str, float]]]:
    from django.conf import settings

    from django_sql_sessions import caching
    from django_sql_sessions.backends.db import SessionStore

    payload = SessionStore().encode(SESSION)
    populate(alias, rows, payload, django_table=False)
    bench = Bench(alias, rows, 0, payload)
    caching.reset()
    cells: list[list[report.Cell]] = []
    chart: dict[str, dict[str, float]] = {}
    for phase in PHASES:
        engine = "ours" if phase == "db engine" else "cached"
        if phase == "dead":
            redis.stop()
        elif phase == "hung":
            redis.start()
            caching.reset()
            redis.signal(signal.SIGSTOP)
        if phase == "up":
            # Every session in the cache, as on a site that is warm.
            bench.prepare_cache("cached", "read", [key(i) for i in range(bench.read_range)])
        for workload in ["read", "write"]:
            errors = caching.cache_errors[settings.SESSION_CACHE_ALIAS]
            micros = timed(bench, engine, workload, seconds)
            errors = caching.cache_errors[settings.SESSION_CACHE_ALIAS] - errors
            cells.append(row(phase, workload, micros, errors))
            chart.setdefault(phase, {})[workload] = statistics.fmean(micros)
            print(*cells[-1], sep="  ", flush=True)
    redis.stop()
    return cells, chart


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--databases", default="postgresql,mysql")
    parser.add_argument("--rows", type=int, default=2_000)
    parser.add_argument("--seconds", type=float, default=12, help="per phase and workload")
    parser.add_argument("--docs", metavar="DIR", help="also write cache_down.rst and .svg there")
    args = parser.parse_args()
    if REDIS_SERVER is None:
        sys.exit("cache_down.py needs redis-server on PATH")
    names = args.databases.split(",")
    redis = RedisServer()
    redis.start()
    try:
        configure(names, Path(tempfile.gettempdir()), redis=redis.url)
        for alias in names:
            create_database(alias)
        stamp = report.Stamp.collect(aliases=names, packages=["redis"])
        print(stamp.text(), end="\n\n", flush=True)
        tables: list[report.Table] = []
        panels: dict[str, dict[str, dict[str, float]]] = {}
        for alias in names:
            if redis.process is None or redis.process.poll() is not None:
                redis.start()
            with alias_under_test(alias):
                caption = describe(alias, stamp.servers.get(alias, ""))
                cells, panels[caption] = measure(alias, redis, args.rows, args.seconds)
            title = (
                f"{caption}: the cached engine with Redis up, dead and hung, and the db "
                f"engine; every request of {args.seconds:g} s per phase and workload"
            )
            tables.append(report.Table(title, HEADERS, cells))
            print(title, report.text_table(HEADERS, cells), sep="\n", end="\n\n")
    finally:
        redis.stop()
    if args.docs:

        def chart(path: Path) -> Path:
            return report.panel_chart(
                path, "Mean µs per request (lower is faster)", panels, "µs per request"
            )

        alt = (
            "Bar charts, one per database: mean µs per read and per write with Redis up, "
            "dead and hung, and with the db engine; the tables below give the numbers"
        )
        path = report.write_fragment(args.docs, "cache_down", stamp, tables, chart=chart, alt=alt)
        print(f"Wrote {path} and {path.with_suffix('.svg')}")


if __name__ == "__main__":
    main()
