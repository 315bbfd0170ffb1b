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
"""

from __future__ import annotations

import argparse
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

DATABASE_NAME = os.environ.get("SQL_SESSIONS_BENCH_DATABASE", "bench_sql_sessions")
TABLE = "bench_overhead_sessions"
TARGETS = {"sqlite": 25.0, "postgresql": 40.0, "mysql": 40.0}
SESSION = {
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
        prefix, engine, port = {
            "postgresql": ("POSTGRES", "django.db.backends.postgresql", "5432"),
            "mysql": ("MYSQL", "django.db.backends.mysql", "3306"),
        }[name]
        if not os.environ.get(f"{prefix}_HOST"):
            sys.exit(f"{name}: set {prefix}_HOST (and {prefix}_USER, ...) to benchmark it")
        found[name] = {
            "ENGINE": engine,
            "HOST": os.environ[f"{prefix}_HOST"],
            "PORT": os.environ.get(f"{prefix}_PORT", port),
            "USER": os.environ.get(f"{prefix}_USER", ""),
            "PASSWORD": os.environ.get(f"{prefix}_PASSWORD", ""),
            "NAME": DATABASE_NAME,
            "CONN_MAX_AGE": None,
            "OPTIONS": {"charset": "utf8mb4"} if name == "mysql" else {},
        }
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
    from django.db import connections

    connection = connections[alias]
    if connection.vendor != "sqlite":
        with connection._nodb_cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME])
                if cursor.fetchone() is None:
                    cursor.execute(f"CREATE DATABASE {DATABASE_NAME}")
            else:
                cursor.execute(
                    f"CREATE DATABASE IF NOT EXISTS {DATABASE_NAME} CHARACTER SET utf8mb4"
                )
    call_command("migrate", "django_sql_sessions", database=alias, verbosity=0)


def per_op(batch: Callable[[int], None], size: int) -> float:
    """Microseconds per operation of one batch of `size`."""
    started = time.perf_counter_ns()
    batch(size)
    return (time.perf_counter_ns() - started) / size / 1000


def compare(
    engine: Callable[[int], None], baseline: Callable[[int], None], rounds: int, size: int
) -> tuple[float, float]:
    """Median µs per op of engine and baseline, batches alternating to share drift."""
    engine(size)  # warm up: statements compiled, caches filled
    baseline(size)
    engine_times, baseline_times = [], []
    gc.disable()
    try:
        for _ in range(rounds):
            engine_times.append(per_op(engine, size))
            baseline_times.append(per_op(baseline, size))
    finally:
        gc.enable()
    return statistics.median(engine_times), statistics.median(baseline_times)


def measure(alias: str, rounds: int, size: int) -> dict[str, tuple[float, float]]:
    from django.conf import settings
    from django.db import connections
    from django.utils import timezone

    import django_sql_sessions.sql as sql
    from django_sql_sessions.backends.db import SessionStore
    from django_sql_sessions.keys import hash_key

    settings.SQL_SESSIONS_DB_ALIAS = alias
    connection = connections[alias]
    store = SessionStore()
    store.update(SESSION)
    store.create()
    key = store.session_key
    assert key is not None
    key_hash = hash_key(key)
    statements = sql.statements(connection)
    raw = connection.connection
    placeholder = "?" if connection.vendor == "sqlite" else "%s"
    select = statements.load.sql.replace("%(key_hash)s", placeholder).replace(
        "%(now)s", placeholder
    )
    update = statements.update_exact.sql

    def engine_load(n: int) -> None:
        for _ in range(n):
            SessionStore(key).load()

    decode = SessionStore().decode

    def baseline_load(n: int) -> None:
        for _ in range(n):
            now = connection.ops.adapt_datetimefield_value(timezone.now())
            cursor = raw.cursor()
            cursor.execute(select, (key_hash, now))
            row = cursor.fetchone()
            cursor.close()
            decode(row[0])

    saver = SessionStore(key)
    saver.load()

    def engine_save(n: int) -> None:
        for i in range(n):
            saver["n"] = i
            saver.save()

    encode = SessionStore().encode
    data = dict(SESSION)
    expiry = connection.ops.adapt_datetimefield_value(timezone.now() + timezone.timedelta(days=14))
    named, order = _positional(update, placeholder)

    def baseline_save(n: int) -> None:
        version = _version(connection, key_hash)
        for i in range(n):
            data["n"] = i
            now = connection.ops.adapt_datetimefield_value(timezone.now())
            values = {
                "data": encode(data),
                "expire_date": expiry,
                "user_id": "4711",
                "ip": None,
                "user_agent": None,
                "now": now,
                "key_hash": key_hash,
                "version": version,
            }
            cursor = raw.cursor()
            cursor.execute(named, [values[name] for name in order])
            assert cursor.rowcount == 1
            cursor.close()
            version += 1
        saver.load()  # the engine's store reads the version the baseline left

    return {
        "load": compare(engine_load, baseline_load, rounds, size),
        "save": compare(engine_save, baseline_save, rounds, size),
    }


def _positional(sql: str, placeholder: str) -> tuple[str, list[str]]:
    """A statement with %(name)s parameters as the driver's positional one."""
    import re

    order: list[str] = []

    def mark(match: re.Match[str]) -> str:
        order.append(match.group(1))
        return placeholder

    return re.sub(r"%\((\w+)\)s", mark, sql), order


def _version(connection: Any, key_hash: str) -> int:
    from django_sql_sessions.models import Session

    return int(
        Session.objects.using(connection.alias)
        .filter(key_hash=key_hash)
        .values_list("version", flat=True)
        .get()
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--databases", default="sqlite,postgresql,mysql")
    parser.add_argument("--rounds", type=int, default=30, help="batches per side")
    parser.add_argument("--size", type=int, default=200, help="operations per batch")
    parser.add_argument("--data-dir", default=tempfile.gettempdir())
    args = parser.parse_args()
    names = [name for name in args.databases.split(",") if name]
    configure(names, Path(args.data_dir))
    results: dict[str, dict[str, tuple[float, float]]] = {}
    for alias in names:
        prepare(alias)
        results[alias] = measure(alias, args.rounds, args.size)
    print(f"{'database':<12}{'op':<6}{'engine µs':>11}{'baseline µs':>13}{'overhead':>10}")
    for alias, ops in results.items():
        for op, (engine, baseline) in ops.items():
            overhead = engine - baseline
            verdict = "ok" if overhead <= TARGETS[alias] else f"over {TARGETS[alias]:.0f}"
            print(
                f"{alias:<12}{op:<6}{engine:>11.1f}{baseline:>13.1f}{overhead:>10.1f}  {verdict}"
            )


if __name__ == "__main__":
    main()
