"""
Lost-update benchmark: K threads, each with its own connection, each saving
its own key into the same session N times (load, increment, save).

    python benchmarks/lost_updates.py --databases sqlite,postgresql,mysql

Every save that returned without an error should be in the final session; a
"lost" increment is one that returned but is not. It also reports the cost of
a load-and-save with no other writer, for our engine and Django's.

With --docs DIR it also writes DIR/lost_updates.rst and DIR/lost_updates.svg
(see benchmarks/report.py). --engines ours,cached,db,cached_db --redis URL
measures the cache-fronted engines too (the hot session of a page and its
parallel XHRs), into lost_updates_redis.*.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent.parent)]

from benchmarks import report  # noqa: E402
from benchmarks.run import (  # noqa: E402
    COLORS,
    ENGINES,
    alias_under_test,
    configure,
    create_database,
    describe,
)

HEADERS = [
    "engine",
    "increments returned",
    "stored",
    "lost",
    "failed saves",
    "µs/save contended",
    "µs/load+save alone",
]


def hammer(engine: str, workers: int, saves: int) -> tuple[int, int, int, float]:
    """Return (increments made, increments stored, failed saves, µs per save)."""
    from django.db import connections

    store_class = importlib.import_module(ENGINES[engine]).SessionStore
    store = store_class()
    store["start"] = True
    store.save()
    key = store.session_key
    made = [0] * workers
    failed = [0] * workers
    barrier = threading.Barrier(workers)

    def worker(index: int) -> None:
        name = f"w{index}"
        barrier.wait()
        try:
            for _ in range(saves):
                session = store_class(key)
                session[name] = session.get(name, 0) + 1
                try:
                    session.save()
                except Exception:  # counted: an error is not a silent loss
                    failed[index] += 1
                else:
                    made[index] += 1
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(workers)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    final = store_class(key).load()
    stored = sum(final.get(f"w{i}", 0) for i in range(workers))
    store_class(key).delete()
    return sum(made), stored, sum(failed), elapsed / (workers * saves) * 1e6


def solo(engine: str, saves: int, runs: int) -> float:
    """µs per load-and-save of one session with no other writer (median of runs)."""
    store_class = importlib.import_module(ENGINES[engine]).SessionStore
    store = store_class()
    store["n"] = 0
    store.save()
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        for _ in range(saves):
            session = store_class(store.session_key)
            session["n"] = session["n"] + 1
            session.save()
        timings.append((time.perf_counter() - started) / saves * 1e6)
    store.delete()
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--databases", default="sqlite,postgresql,mysql")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--saves", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--engines", default="ours,db", help=", ".join(ENGINES))
    parser.add_argument(
        "--redis",
        metavar="URL",
        help="Django's RedisCache at URL for the cached engines; adds _redis to the fragment",
    )
    parser.add_argument("--data-dir", default=tempfile.gettempdir())
    parser.add_argument(
        "--docs",
        metavar="DIR",
        help="also write the RST fragment and SVG chart there (e.g. docs/perf)",
    )
    args = parser.parse_args()
    names = args.databases.split(",")
    engines = args.engines.split(",")
    configure(names, Path(args.data_dir), redis=args.redis)
    from django.core.management import call_command

    for alias in names:
        create_database(alias)
    stamp = report.Stamp.collect(aliases=names)
    what = f"{args.workers} threads x {args.saves} saves into one session"
    print(stamp.text(), end="\n\n")
    tables: list[report.Table] = []
    lost: dict[str, dict[str, float]] = {}
    for alias in names:
        with alias_under_test(alias):
            call_command("migrate", database=alias, verbosity=0)
            caption = describe(alias, stamp.servers.get(alias, ""))
            rows: list[list[report.Cell]] = []
            for engine in engines:
                made, stored, failed, contended = hammer(engine, args.workers, args.saves)
                alone = solo(engine, 200, args.runs)
                rows.append(
                    [
                        engine,
                        made,
                        stored,
                        made - stored,
                        failed,
                        f"{contended:,.0f}",
                        f"{alone:,.0f}",
                    ]
                )
                lost.setdefault(caption, {})[engine] = made - stored
        table = report.Table(f"{caption}: {what}", HEADERS, rows)
        tables.append(table)
        print(table.caption, report.text_table(table.headers, table.rows), sep="\n", end="\n\n")
        sys.stdout.flush()
    if args.docs:
        total = args.workers * args.saves

        def chart(path: Path) -> Path:
            return report.bar_chart(
                path,
                f"Increments lost of {total:,} saves that returned ({what})",
                lost,
                "increments lost",
                colors=COLORS,
                labels=True,
            )

        alt = (
            f"Bar chart: of {total:,} increments saved into one session by {args.workers} "
            "threads, how many each engine lost, by database"
        )
        name = "lost_updates_redis" if args.redis else "lost_updates"
        path = report.write_fragment(args.docs, name, stamp, tables, chart=chart, alt=alt)
        print(f"Wrote {path} and {path.with_suffix('.svg')}")


if __name__ == "__main__":
    main()
