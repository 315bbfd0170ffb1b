"""
What SQL_SESSIONS_ENCRYPT costs: our engines' read and write requests through
Django's SessionMiddleware with encryption off (plaintext rows) and on
(sealed rows), paired run by run on the same table, and the cipher alone.

    python benchmarks/encryption.py --databases sqlite,postgresql,mysql --rows 100000

The table holds --rows plaintext sessions and as many sealed ones; "off"
requests use the first, "on" requests the second, with the setting off and
on, alternating in slices of a tenth of a run. "cached" is the cached engine
on a local-memory cache, or on Django's RedisCache with --redis URL (reads
are cache hits there, as in run.py's "read"). Ratios are medians of each
run's on/off. With --docs DIR it writes
DIR/encryption.rst (encryption_redis.rst with --redis).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path[:0] = [str(Path(__file__).resolve().parent.parent)]

from benchmarks import report, run  # noqa: E402

WORKLOADS = ["read", "write"]
SLICES = 10


def populate(alias: str, rows: int, payload: str, sealed: str) -> None:
    """key(0..rows-1) plaintext, key(rows..2*rows-1) sealed, both live."""
    from django.db import connections

    run.populate(alias, rows, payload, django_table=False)
    connection = connections[alias]
    with connection.cursor() as cursor:
        if connection.vendor in run.GENERATED:
            expiry = run.GENERATED[connection.vendor]["in_14_days"]
            run.insert_generated(
                cursor,
                connection.vendor,
                run.TABLE,
                first=rows,
                count=rows,
                payload=sealed,
                expiry=expiry,
            )
        else:
            expire = connection.ops.adapt_datetimefield_value(run._now(days=14))
            now = connection.ops.adapt_datetimefield_value(run._now())
            values: list[Any] = [
                (run._hash(run.key(i)), sealed, expire, now, now, run.USER_ID)
                for i in range(rows, 2 * rows)
            ]
            cursor.executemany(
                f"INSERT INTO {run.TABLE} ({run.OUR_COLUMNS}) VALUES (%s, %s, %s, %s, %s, 1, %s)",
                values,
            )


def measure(
    alias: str, rows: int, requests: int, runs: int, engines: list[str]
) -> list[list[report.Cell]]:
    from django.test import override_settings

    from django_sql_sessions import encryption
    from django_sql_sessions.backends.db import SessionStore

    payload = SessionStore().encode(run.SESSION)
    with override_settings(SQL_SESSIONS_ENCRYPT=True):
        sealed = encryption.seal(payload)
    populate(alias, rows, payload, sealed)
    bench = run.Bench(alias, rows, requests, payload)
    rng = random.Random(2)
    found: list[list[report.Cell]] = []
    for engine in engines:
        for workload in WORKLOADS:
            micros: dict[bool, list[float]] = {False: [], True: []}
            for attempt in range(runs + 1):  # the first warms up, untimed
                first = rng.randrange(rows)
                picks = [(first + 7919 * i) % rows for i in range(requests)]
                took = {False: 0.0, True: 0.0}
                # Off and on alternate slice by slice: a pause of the machine
                # (a noisy neighbour) falls on both, not on one run.
                size = max(1, requests // SLICES)
                for number, start in enumerate(range(0, requests, size)):
                    order = [False, True] if (attempt + number) % 2 else [True, False]
                    for on in order:
                        keys = [run.key(i + (rows if on else 0)) for i in picks[start:][:size]]
                        with override_settings(SQL_SESSIONS_ENCRYPT=on):
                            took[on] += bench.run_engine(engine, workload, keys) * len(keys)
                if attempt:
                    for on in (False, True):
                        micros[on].append(took[on] / requests)
            plain_us, sealed_us = statistics.median(micros[False]), statistics.median(micros[True])
            ratio = statistics.median(
                b / a for a, b in zip(micros[False], micros[True], strict=True)
            )
            cost = f"{(ratio - 1) * 100:+.1f}%"
            found.append([engine, workload, f"{plain_us:,.0f}", f"{sealed_us:,.0f}", cost])
    return found


def cipher(payload: str, count: int = 20_000) -> list[list[report.Cell]]:
    """µs per seal and per open of a run.py session, the cipher alone."""
    from django.test import override_settings

    from django_sql_sessions import encryption

    with override_settings(SQL_SESSIONS_ENCRYPT=True):
        sealed = encryption.seal(payload)
        rows: list[list[report.Cell]] = []
        calls: list[tuple[str, Callable[[], str]]] = [
            ("seal", lambda: encryption.seal(payload)),
            ("open", lambda: encryption.readable(sealed)),
        ]
        for name, call in calls:
            samples = []
            for _ in range(5):
                start = time.perf_counter_ns()
                for _ in range(count):
                    call()
                samples.append((time.perf_counter_ns() - start) / count / 1000)
            rows.append([name, f"{statistics.median(samples):.1f}"])
    rows.append(["stored size", f"{len(payload)} -> {len(sealed)} characters"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--databases", default="sqlite,postgresql,mysql")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=1000, help="requests per run")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--redis", metavar="URL", help="the cached engine on RedisCache at URL")
    parser.add_argument("--data-dir", default=tempfile.gettempdir())
    parser.add_argument("--docs", metavar="DIR", help="also write DIR/encryption.rst")
    args = parser.parse_args()
    names = args.databases.split(",")
    run.configure(names, Path(args.data_dir), redis=args.redis)
    for alias in names:
        run.create_database(alias)
    stamp = report.Stamp.collect(aliases=names)
    print(stamp.text(), end="\n\n", flush=True)
    from django_sql_sessions.backends.db import SessionStore

    tables: list[report.TableLike] = []
    panels: dict[str, dict[str, dict[str, float]]] = {}
    cache = "Redis" if args.redis else "a local-memory cache"
    headers = ["engine", "workload", "µs off", "µs on", "cost"]
    for alias in names:
        with run.alias_under_test(alias):
            rows = measure(alias, args.rows, args.requests, args.runs, ["ours", "cached"])
        caption = (
            f"{run.describe(alias, stamp.servers.get(alias, ''))}: µs per request, median "
            f"of {args.runs} runs of {args.requests:,} (cached: on {cache})"
        )
        tables.append((caption, headers, rows))
        panels[run.describe(alias, stamp.servers.get(alias, ""))] = {
            f"{engine} {workload}": {
                "off": float(str(off).replace(",", "")),
                "on": float(str(on).replace(",", "")),
            }
            for engine, workload, off, on, _cost in rows
        }
        print(caption, report.text_table(headers, rows), sep="\n", end="\n\n", flush=True)
    rows_cipher = cipher(SessionStore().encode(run.SESSION))
    caption = "The cipher alone: µs per call on run.py's session"
    tables.append((caption, ["operation", "µs"], rows_cipher))
    print(caption, report.text_table(["operation", "µs"], rows_cipher), sep="\n")
    if args.docs:
        name = "encryption_redis" if args.redis else "encryption"

        def chart(path: Path) -> Path:
            title = f"Requests with SQL_SESSIONS_ENCRYPT off and on (median of {args.runs} runs)"
            return report.panel_chart(path, title, panels, "µs per request")

        alt = (
            "Bar charts, one per database: µs per read and write request of our engines "
            "with encryption off and on; the tables below give the numbers"
        )
        path = report.write_fragment(args.docs, name, stamp, tables, chart=chart, alt=alt)
        print(f"Wrote {path}")


if __name__ == "__main__":
    main()
