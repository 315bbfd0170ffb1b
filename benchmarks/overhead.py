"""
The engine's own overhead: what a session load or save costs on top of the
work nobody can avoid.

    python benchmarks/overhead.py --databases sqlite,postgresql,mysql

For each database, on one connection and one row, alternating in batches:

- load: ``SessionStore(key).load()`` against the same SELECT sent through
  the same connection's driver cursor, plus Django's own decode of the data;
- save: ``store[...] = ...; store.save()`` of a loaded session (one
  conditional UPDATE) against the same UPDATE through the driver cursor,
  plus Django's own encode.

The difference of the medians is what the engine itself adds: settings,
connection bookkeeping, parameter building, datetime adaptation. Targets:
at most 25 µs on SQLite, 40 µs on PostgreSQL and MariaDB. SQLite runs in
WAL mode with synchronous=NORMAL, so a commit is not an fsync whose noise
would drown the difference.

The process is pinned to one CPU (the last one, or --cpu; --no-pin to
leave it free), as pyperf does for micro-benchmarks: on a server database
every operation waits for the server, and a process the scheduler moves to
another CPU during that wait runs its next instructions with cold caches.
That slows every instruction, so it inflates the side with more Python (the
engine) more than the other, by a factor of two or more on a small VM.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import gc
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from benchmarks import report  # noqa: E402
from benchmarks.run import create_database, server_database  # noqa: E402

# A database of its own: its session table has another name than run.py's,
# and migrations recorded for one would leave the other without a table.
DATABASE_NAME = os.environ.get("SQL_SESSIONS_BENCH_DATABASE", "bench_sql_sessions") + "_overhead"
TABLE = "bench_overhead_sessions"
TARGETS = {"sqlite": 25.0, "postgresql": 40.0, "mysql": 40.0}
SESSION: dict[str, Any] = {
    "_auth_user_id": "4711",
    "_auth_user_backend": "django.contrib.auth.backends.ModelBackend",
    "_auth_user_hash": "9c4f1b8a" * 8,
    "cart": [101, 202, 303],
    "theme": "dark",
}


def databases(names: list[str], data_dir: Path) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {
        "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}
    }
    for name in names:
        if name == "sqlite":
            found[name] = {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": data_dir / "bench-overhead.db",
                "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL"},
            }
            continue
        found[name] = server_database(name, DATABASE_NAME, {})
    return found


def configure(names: list[str], data_dir: Path) -> None:
    import django
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        SECRET_KEY="benchmark",
        USE_TZ=True,
        INSTALLED_APPS=["django.contrib.sessions", "django_sql_sessions"],
        DATABASES=databases(names, data_dir),
        SQL_SESSIONS_TABLE=TABLE,
        SESSION_ENGINE="django_sql_sessions.backends.db",
    )
    django.setup()


def prepare(alias: str) -> None:
    from django.core.management import call_command

    create_database(alias)
    call_command("migrate", "django_sql_sessions", database=alias, verbosity=0)


@dataclasses.dataclass(frozen=True)
class Pair:
    """Medians in µs of one engine and one baseline operation."""

    engine: float
    baseline: float
    # CPU time of this thread only: the Python and driver work, without the
    # wait for the server.
    engine_cpu: float
    baseline_cpu: float

    @property
    def overhead(self) -> float:
        return self.engine - self.baseline

    @property
    def cpu_overhead(self) -> float:
        return self.engine_cpu - self.baseline_cpu


def compare(engine: Callable[[], None], baseline: Callable[[], None], operations: int) -> Pair:
    """
    Time engine and baseline operations, alternating one at a time, so that
    whatever else the machine does falls on both alike; medians ignore the
    pauses (scheduler, server checkpoints) that a mean would count.
    """
    for _ in range(operations // 10):  # warm up: statements compiled, caches filled
        engine()
        baseline()
    wall: tuple[list[int], list[int]] = ([], [])
    cpu: tuple[list[int], list[int]] = ([], [])
    clock, cpu_clock = time.perf_counter_ns, time.thread_time_ns
    gc.disable()
    try:
        for _ in range(operations):
            for side, operation in enumerate((engine, baseline)):
                started, cpu_started = clock(), cpu_clock()
                operation()
                cpu[side].append(cpu_clock() - cpu_started)
                wall[side].append(clock() - started)
    finally:
        gc.enable()
    engine_wall, baseline_wall = (statistics.median(times) / 1000 for times in wall)
    engine_cpu, baseline_cpu = (statistics.median(times) / 1000 for times in cpu)
    return Pair(engine_wall, baseline_wall, engine_cpu, baseline_cpu)


def measure(alias: str, operations: int) -> dict[str, Pair]:
    from django.conf import settings
    from django.db import connections
    from django.test import override_settings
    from django.utils import timezone

    from django_sql_sessions import dialects
    from django_sql_sessions.backends.db import SessionStore
    from django_sql_sessions.storage import FOREVER, hash_key

    with override_settings(SQL_SESSIONS_DB_ALIAS=alias):
        connection = connections[alias]
        store = SessionStore()
        store.update(SESSION)
        store.create()
        key = store.session_key
        assert key is not None
        key_hash = hash_key(key)
        statements = dialects.statements(connection, TABLE)
        raw = connection.connection
        sqlite = connection.vendor == "sqlite"
        # As the engine sends them: one cursor per statement, except on
        # PostgreSQL, where a kept cursor saves psycopg rebuilding its
        # adapters each time (a hand-written client would keep one too).
        kept = raw.cursor() if connection.vendor == "postgresql" else None

        def cursor_for_one() -> Any:
            return kept or raw.cursor()

        def done_with(cursor: Any) -> None:
            if cursor is not kept:
                cursor.close()

        load, update = statements.load, statements.update_exact
        adapt = connection.ops.adapt_datetimefield_value

        def engine_load() -> None:
            SessionStore(key).load()

        decode = SessionStore().decode

        load_text = load.qmark if sqlite else load.format

        def baseline_load() -> None:
            cursor = cursor_for_one()
            now = timezone.now()
            born_after = now - datetime.timedelta(seconds=FOREVER)
            cursor.execute(load_text, (key_hash, adapt(now), adapt(born_after)))
            row = cursor.fetchone()
            done_with(cursor)
            decode(row[0])

        # Both write the same row, each with its own version check: the
        # engine's store and the baseline each know the version they wrote.
        saver = SessionStore(key)
        saver.load()
        counter = iter(range(10**9))

        def engine_save() -> None:
            saver["n"] = next(counter)
            saver.save()
            # The baseline moves the version on too: reading it back is not
            # part of a save, so it is set here rather than loaded.
            assert saver._row is not None
            version[0] = saver._row.version

        # The change goes through SessionBase's __setitem__ on both sides:
        # that is Django's cost, not the engine's.
        template = SessionStore()
        template.update(SESSION)
        encode = template.encode
        age = datetime.timedelta(seconds=settings.SESSION_COOKIE_AGE)

        update_text = update.qmark if sqlite else update.format
        version = [_version(alias, key_hash)]

        def baseline_save() -> None:
            template["n"] = next(counter)
            now = timezone.now()
            values = {
                "data": encode(template._get_session()),  # type: ignore[attr-defined]
                "expire_date": adapt(now + age),
                "user_id": "4711",
                "ip": None,
                "user_agent": None,
                "born": None,
                "now": adapt(now),
                "key_hash": key_hash,
                "version": version[0],
            }
            cursor = cursor_for_one()
            cursor.execute(update_text, [values[name] for name in update.names])
            assert cursor.rowcount == 1
            done_with(cursor)
            version[0] += 1
            assert saver._row is not None
            saver._row.version = version[0]

        return {
            "load": compare(engine_load, baseline_load, operations),
            "save": compare(engine_save, baseline_save, operations),
        }


def _version(alias: str, key_hash: str) -> int:
    from django_sql_sessions.models import Session

    return int(
        Session.objects.using(alias)
        .filter(key_hash=key_hash)
        .values_list("version", flat=True)
        .get()
    )


def pin(cpu: int | None) -> int | None:
    """Pin this process to one CPU; return which, or None where the OS cannot."""
    if not hasattr(os, "sched_setaffinity"):
        print("This OS cannot pin a process to a CPU; measuring unpinned.")
        return None
    allowed = sorted(os.sched_getaffinity(0))
    chosen = allowed[-1] if cpu is None else cpu
    if chosen not in allowed:
        raise SystemExit(f"--cpu {chosen}: this process may run on CPUs {allowed} only.")
    os.sched_setaffinity(0, {chosen})
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--databases", default="sqlite,postgresql,mysql")
    parser.add_argument("--operations", type=int, default=2000, help="of each kind, per round")
    parser.add_argument("--rounds", type=int, default=9, help="over every database in turn")
    parser.add_argument("--cpu", type=int, help="pin the process to this CPU (default: the last)")
    parser.add_argument("--no-pin", action="store_true", help="let the scheduler move the process")
    parser.add_argument("--data-dir", default=tempfile.gettempdir())
    parser.add_argument("--docs", type=Path, help="write overhead.rst and .svg here")
    parser.add_argument("--smoke", action="store_true", help="a few operations, to try it")
    args = parser.parse_args()
    names = [name for name in args.databases.split(",") if name]
    operations, rounds = (50, 1) if args.smoke else (args.operations, args.rounds)
    pinned = None if args.no_pin else pin(args.cpu)
    configure(names, Path(args.data_dir))
    for alias in names:
        prepare(alias)
    # Round after round over every database, so that a slow spell of the
    # machine falls on all of them rather than on one.
    measured: dict[tuple[str, str], list[Pair]] = {}
    for _ in range(rounds):
        for alias in names:
            for op, pair in measure(alias, operations).items():
                measured.setdefault((alias, op), []).append(pair)

    stamp = report.Stamp.collect(aliases=names)
    headers = [
        "database",
        "operation",
        "engine µs",
        "same statement + Django's decode/encode µs",
        "engine adds µs",
        "range over rounds µs",
        "of which CPU µs",
        "target µs",
    ]
    rows: list[list[report.Cell]] = []
    overheads: dict[str, float] = {}
    for (alias, op), pairs in measured.items():
        overhead = statistics.median(pair.overhead for pair in pairs)
        overheads[f"{alias} {op}"] = overhead
        target = TARGETS[alias]
        rows.append(
            [
                alias,
                op,
                f"{statistics.median(pair.engine for pair in pairs):.1f}",
                f"{statistics.median(pair.baseline for pair in pairs):.1f}",
                f"{overhead:.1f}",
                f"{min(p.overhead for p in pairs):.1f} to {max(p.overhead for p in pairs):.1f}",
                f"{statistics.median(pair.cpu_overhead for pair in pairs):.1f}",
                f"≤ {target:.0f}" + ("" if overhead <= target else " (missed)"),
            ]
        )
    print(stamp.text())
    pinning = "unpinned" if pinned is None else f"the process pinned to CPU {pinned}"
    print(f"Measured {pinning}.")
    print(report.text_table(headers, rows))
    if args.docs:
        groups = {
            name: {"engine adds": overhead, "target": TARGETS[name.split()[0]]}
            for name, overhead in overheads.items()
        }
        path = report.write_fragment(
            args.docs,
            "overhead",
            stamp,
            tables=[
                report.Table(
                    f"Medians over {rounds} rounds of each round's median of {operations:,} "
                    "operations, engine and baseline alternating one operation at a time on "
                    f"one connection and one row, {pinning}.",
                    headers,
                    rows,
                )
            ],
            chart=lambda svg: report.bar_chart(
                svg, "What the engine adds to a session load and save", groups, "µs"
            ),
            alt="Bars of the microseconds the engine adds per load and save on each "
            "database, beside the target.",
        )
        print(f"Wrote {path}")


if __name__ == "__main__":
    main()
