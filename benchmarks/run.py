"""
Session engine benchmark: django-sql-sessions against Django's own engines and
the raw-driver floor, through Django's real SessionMiddleware.

    python benchmarks/run.py --databases sqlite,postgresql,mysql --rows 100000

PostgreSQL and MariaDB/MySQL use the test suite's environment variables
(POSTGRES_HOST, MYSQL_HOST, ...) and a database named bench_sql_sessions, or
SQL_SESSIONS_BENCH_DATABASE if set (also for lost_updates.py and cleanup.py).
Every run measures all engines back to back on the same data; the table
reports medians over --runs runs, and ratios are paired run by run. The
"limit" row is signed_cookies' request (Django's, with no database) plus the
floor's statements (prepared, on PostgreSQL): "x limit" is each engine's
time over it.

The cache-fronted engines (our "cached" and Django's "cached_db") read
through Django's cache: "read" times them on sessions already in the cache
(a hit; one untimed pass fills it), "fill" on an emptied cache (a miss
that reads the row and fills the entry). The other engines do the same in
both. With --redis URL the cache is Django's RedisCache at URL (a database
of its own: "fill" empties it), otherwise a local-memory cache; --redis adds
_redis to the fragment's name.

With --docs DIR it also writes DIR/requests.rst and DIR/requests.svg (see
benchmarks/report.py); --growth, --sqlite-wal and --pg-prepare add
_growth, _wal and _prepared to the name.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import os
import random
import re
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from django.http import HttpResponse  # noqa: E402

from benchmarks import report  # noqa: E402

ENGINES = {
    "ours": "django_sql_sessions.backends.db",
    "cached": "django_sql_sessions.backends.cached_db",
    "db": "django.contrib.sessions.backends.db",
    "cached_db": "django.contrib.sessions.backends.cached_db",
    "signed_cookies": "django.contrib.sessions.backends.signed_cookies",
}
# Measured unless --engines says otherwise: our cached engine needs --redis
# to be measured the way it is deployed.
DEFAULT_ENGINES = ["ours", "db", "cached_db", "signed_cookies"]
# Engines that read through SESSION_CACHE_ALIAS (see the module docstring).
CACHED = {"cached", "cached_db"}
WORKLOADS = ["read", "fill", "miss", "write", "touch", "new", "cycle"]
DEFAULT_WORKLOADS = ["read", "miss", "write", "touch", "new", "cycle"]
REDIS_TIMEOUT = 0.25  # seconds
TABLE = "bench_sessions"
DATABASE_NAME = os.environ.get("SQL_SESSIONS_BENCH_DATABASE", "bench_sql_sessions")
if not re.fullmatch(r"[a-z_][a-z0-9_]*", DATABASE_NAME):
    sys.exit(f"SQL_SESSIONS_BENCH_DATABASE={DATABASE_NAME!r}: lower-case letters, digits, _")
# A typical logged-in session: user id, backend, auth hash and a little state.
SESSION = {
    "_auth_user_id": "4711",
    "_auth_user_backend": "django.contrib.auth.backends.ModelBackend",
    "_auth_user_hash": "9c4f1b8a" * 8,
    "cart": [101, 202, 303],
    "theme": "dark",
}


# The stored rows belong to SESSION's user, as the engine's first save of
# them would record.
USER_ID = SESSION["_auth_user_id"]
OUR_COLUMNS = "key_hash, data, expire_date, created_at, updated_at, version, user_id"


def key(i: int) -> str:
    return f"{i:032x}"


def databases(
    names: list[str], data_dir: Path, wal: bool, pg_options: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {
        "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}
    }
    for name in names:
        if name == "sqlite":
            options: dict[str, Any] = {"timeout": 30}
            if wal:
                options["init_command"] = "PRAGMA journal_mode=WAL"
            found[name] = {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": data_dir / ("bench-wal.db" if wal else "bench.db"),
                "OPTIONS": options,
            }
            continue
        found[name] = server_database(name, DATABASE_NAME, pg_options)
    return found


def server_database(name: str, database: str, pg_options: dict[str, Any]) -> dict[str, Any]:
    """
    DATABASES settings for "postgresql", "mysql", "galera" (a Galera cluster,
    see clusters/galera.sh) or "pg_standby" (the primary of
    clusters/pg-standby.sh), from the test suite's variables and those the
    scripts' "env" commands print.
    """
    prefix, engine, port = {
        "postgresql": ("POSTGRES", "django.db.backends.postgresql", "5432"),
        "mysql": ("MYSQL", "django.db.backends.mysql", "3306"),
        "galera": ("GALERA", "django.db.backends.mysql", "3306"),
        "pg_standby": ("PG_PRIMARY", "django.db.backends.postgresql", "5452"),
    }[name]
    if not os.environ.get(f"{prefix}_HOST"):
        sys.exit(f"{name}: set {prefix}_HOST (and {prefix}_USER, ...) to benchmark it")
    return {
        "ENGINE": engine,
        "HOST": os.environ[f"{prefix}_HOST"],
        "PORT": os.environ.get(f"{prefix}_PORT", port),
        "USER": os.environ.get(f"{prefix}_USER", ""),
        "PASSWORD": os.environ.get(f"{prefix}_PASSWORD", ""),
        "NAME": database,
        "CONN_MAX_AGE": None,
        # Behind HAProxy a connection to a node that died is replaced at the
        # next use instead of failing it.
        "CONN_HEALTH_CHECKS": name == "galera",
        "OPTIONS": dict(pg_options) if engine.endswith("postgresql") else {"charset": "utf8mb4"},
    }


def configure(
    names: list[str],
    data_dir: Path,
    *,
    wal: bool = False,
    prepare: bool = False,
    redis: str | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Configure Django for a benchmark; `extra` settings are added or replace these."""
    import django
    from django.conf import settings

    cache: dict[str, Any] = {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "OPTIONS": {"MAX_ENTRIES": 10_000_000},
    }
    if redis:
        cache = {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": redis,
            # docs/cache.rst's advice; cache_down.py measures what it costs.
            "OPTIONS": {"socket_timeout": REDIS_TIMEOUT, "socket_connect_timeout": REDIS_TIMEOUT},
        }

    settings.configure(
        **{
            "DEBUG": False,
            "SECRET_KEY": "benchmark",
            "USE_TZ": True,
            "INSTALLED_APPS": ["django.contrib.sessions", "django_sql_sessions"],
            "DATABASES": databases(
                names, data_dir, wal, {"prepare_threshold": 1} if prepare else {}
            ),
            "DATABASE_ROUTERS": [ROUTER],
            "CACHES": {"default": cache},
            "SQL_SESSIONS_TABLE": TABLE,
            "SESSION_ENGINE": ENGINES["ours"],
            **(extra or {}),
        }
    )
    django.setup()


class CurrentAlias:
    """Routes Django's session model (and migrations) to the database under test."""

    alias = "default"

    def db_for_read(self, model: Any, **hints: Any) -> str:
        return self.alias

    def db_for_write(self, model: Any, **hints: Any) -> str:
        return self.alias


ROUTER = CurrentAlias()


def create_database(alias: str) -> None:
    """Create the alias's server database (its NAME) if it does not exist."""
    from django.db import connections

    connection = connections[alias]
    if connection.vendor == "sqlite":
        return
    name = connection.settings_dict["NAME"]
    with connection._nodb_cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
            if cursor.fetchone() is None:
                cursor.execute(f"CREATE DATABASE {name}")
        else:
            cursor.execute(f"CREATE DATABASE IF NOT EXISTS {name} CHARACTER SET utf8mb4")


def populate(alias: str, rows: int, payload: str, *, django_table: bool = True) -> None:
    """Fill both session tables with the same `rows` live sessions, keys key(0..rows-1)."""
    from django.core.management import call_command
    from django.db import connections

    connection = connections[alias]
    call_command("migrate", database=alias, verbosity=0)
    tables = [TABLE, "django_session"] if django_table else [TABLE]
    with connection.cursor() as cursor:
        for table in tables:
            # Always anew: an earlier run's cycle workload moved keys.
            cursor.execute(f"DELETE FROM {table}")
            _insert(connection, cursor, table, rows, payload)
        if connection.vendor == "postgresql":
            cursor.execute(f"VACUUM ANALYZE {TABLE}")
            cursor.execute("VACUUM ANALYZE django_session")
        elif connection.vendor == "mysql":
            cursor.execute(f"ANALYZE TABLE {TABLE}, django_session")
            cursor.fetchall()


# Per server vendor: the row number, the key made from it, its SHA-256, and
# "now", as SQL over a generated series of row numbers.
GENERATED = {
    "postgresql": {
        "key": "lpad(to_hex(i), 32, '0')",
        "hash": "encode(sha256({key}::bytea), 'hex')",
        "now": "now()",
        "rows": "generate_series({first}, {last}) AS i",
        "in_14_days": "now() + interval '14 days'",
    },
    "mysql": {
        "key": "LPAD(LOWER(HEX(seq)), 32, '0')",
        "hash": "SHA2({key}, 256)",
        "now": "NOW(6)",
        "rows": "seq_{first}_to_{last}",
        "in_14_days": "NOW(6) + INTERVAL 14 DAY",
    },
}


def insert_generated(
    cursor: Any,
    vendor: str,
    table: str,
    *,
    first: int,
    count: int,
    payload: str,
    expiry: str,
    ours: bool = True,
) -> None:
    """Insert sessions key(first)..key(first + count - 1), generated by the server."""
    sql = GENERATED[vendor]
    rows = sql["rows"].format(first=first, last=first + count - 1)
    if ours:
        key_sql = sql["hash"].format(key=sql["key"])
        cursor.execute(
            f"INSERT INTO {table} ({OUR_COLUMNS}) SELECT {key_sql}, %s, {expiry}, "
            f"{sql['now']}, {sql['now']}, 1, %s FROM {rows}",
            [payload, USER_ID],
        )
    else:
        cursor.execute(
            f"INSERT INTO {table} SELECT {sql['key']}, %s, {expiry} FROM {rows}", [payload]
        )


def _insert(connection: Any, cursor: Any, table: str, rows: int, payload: str) -> None:
    ours = table == TABLE
    vendor = connection.vendor
    if vendor in GENERATED:
        expiry = GENERATED[vendor]["in_14_days"]
        insert_generated(
            cursor, vendor, table, first=0, count=rows, payload=payload, expiry=expiry, ours=ours
        )
        return
    expire = connection.ops.adapt_datetimefield_value(_now(days=14))
    created = connection.ops.adapt_datetimefield_value(_now())
    batch = 50_000
    for start in range(0, rows, batch):
        keys = [key(i) for i in range(start, min(start + batch, rows))]
        if ours:
            cursor.executemany(
                f"INSERT INTO {table} ({OUR_COLUMNS}) VALUES (%s, %s, %s, %s, %s, 1, %s)",
                [(_hash(k), payload, expire, created, created, USER_ID) for k in keys],
            )
        else:
            cursor.executemany(
                f"INSERT INTO {table} VALUES (%s, %s, %s)", [(k, payload, expire) for k in keys]
            )


def _now(**delta: float) -> Any:
    import datetime

    from django.utils import timezone

    return timezone.now() + datetime.timedelta(**delta)


def _hash(k: str) -> str:
    return hashlib.sha256(k.encode()).hexdigest()


def read_view(request: Any) -> HttpResponse:
    request.session.get("cart")
    return HttpResponse()


def write_view(request: Any) -> HttpResponse:
    request.session["counter"] = request.session.get("counter", 0) + 1
    return HttpResponse()


def cycle_view(request: Any) -> HttpResponse:
    request.session.cycle_key()
    request.session["_auth_user_id"] = "4711"
    return HttpResponse()


def view_for(workload: str) -> Callable[[Any], HttpResponse]:
    """The view a workload's requests go to: a read unless it writes."""
    return {"write": write_view, "new": write_view, "cycle": cycle_view}.get(workload, read_view)


@dataclass
class Result:
    micros: list[float] = field(default_factory=list)
    statements: int | None = None
    peak_kib: float | None = None


class Bench:
    def __init__(self, alias: str, rows: int, requests: int, payload: str) -> None:
        from django.test import RequestFactory

        self.alias = alias
        self.rows = rows
        self.requests = requests
        self.payload = payload
        self.factory = RequestFactory()
        self.rng = random.Random(1)
        # Reads and writes use the first 90% of the keys. cycle moves keys, so
        # it gets the last 10%, in thirds: engines on different tables may
        # share a third (ours and Django's db, the floor and cached_db), ours
        # and cached (one table) may not.
        self.read_range = max(1, rows * 9 // 10)
        third = max(1, (rows - self.read_range) // 3)
        first, second, last = (
            [key(i) for i in range(start, start + third)]
            for start in range(self.read_range, self.read_range + 3 * third, third)
        )
        self.cookies = self._signed_cookie()
        self.cycle_pool = {
            "ours": first,
            "db": list(first),
            "floor": second,
            "cached_db": list(second),
            "cached": last,
            "signed_cookies": [self.cookies] * len(first),
        }
        self.moves = 0

    def _signed_cookie(self) -> str:
        from django.contrib.sessions.backends.signed_cookies import SessionStore

        store = SessionStore()
        store.update(SESSION)
        store.save()
        return str(store.session_key)

    def middleware(self, engine: str, view: Callable[[Any], Any]) -> Any:
        from django.contrib.sessions.middleware import SessionMiddleware
        from django.test import override_settings

        with override_settings(SESSION_ENGINE=ENGINES[engine]):
            return SessionMiddleware(view)

    def sample(self, workload: str) -> list[str]:
        if workload == "miss":
            return [f"{self.rows + i:032x}" for i in range(self.requests)]
        return [key(self.rng.randrange(self.read_range)) for _ in range(self.requests)]

    def run_engine(
        self, engine: str, workload: str, keys: list[str], *, prepare: bool = True
    ) -> float:
        """
        Return µs per request for `requests` requests through the middleware,
        after an untimed prepare_cache() unless told not to.
        """
        from django.test import override_settings

        created: list[str] = []
        middleware = self.middleware(engine, view_for(workload))
        pool = self.cycle_pool[engine]
        cookie_name = "sessionid"

        def cookie_for(k: str) -> str:
            return self.cookies if engine == "signed_cookies" else k

        headers: list[dict[str, Any]] = [
            {"HTTP_COOKIE": f"{cookie_name}={cookie_for(k)}"} for k in keys
        ]
        if workload == "new":
            headers = [{} for _ in keys]
        save_every = workload == "touch"
        get = self.factory.get
        with override_settings(SESSION_SAVE_EVERY_REQUEST=save_every):
            if prepare:
                self.prepare_cache(engine, workload, keys)
            gc.collect()
            if workload == "cycle":
                start = time.perf_counter_ns()
                for i in range(len(keys)):
                    slot = i % len(pool)
                    response = middleware(get("/", HTTP_COOKIE=f"{cookie_name}={pool[slot]}"))
                    pool[slot] = response.cookies[cookie_name].value
                elapsed = time.perf_counter_ns() - start
            else:
                start = time.perf_counter_ns()
                for extra in headers:
                    response = middleware(get("/", **extra))
                    if workload == "new":
                        created.append(response.cookies[cookie_name].value)
                elapsed = time.perf_counter_ns() - start
        self._forget(engine, created)
        return elapsed / len(keys) / 1000

    def prepare_cache(self, engine: str, workload: str, keys: list[str]) -> None:
        """Put the sessions about to be timed in the cache, or empty it, as the workload says."""
        if engine not in CACHED:
            return
        from django.conf import settings
        from django.core.cache import caches

        if workload == "fill":
            caches[settings.SESSION_CACHE_ALIAS].clear()
        elif workload in {"read", "write", "touch"}:
            middleware = self.middleware(engine, read_view)
            for k in keys:
                middleware(self.factory.get("/", HTTP_COOKIE=f"sessionid={k}"))

    def _forget(self, engine: str, created: list[str]) -> None:
        """Delete the sessions a `new` run created, so every run sees the same table."""
        if not created or engine == "signed_cookies":
            return
        from django.db import connections

        with connections[self.alias].cursor() as cursor:
            if engine in {"ours", "cached"}:
                rows = [(_hash(k),) for k in created]
                cursor.executemany(f"DELETE FROM {TABLE} WHERE key_hash = %s", rows)
            else:
                rows = [(k,) for k in created]
                cursor.executemany("DELETE FROM django_session WHERE session_key = %s", rows)

    def run_floor(self, floor: Any, workload: str, keys: list[str]) -> float:
        from django.db import connections

        expire = connections[self.alias].ops.adapt_datetimefield_value(_now(days=14))
        created: list[str] = []
        gc.collect()
        if workload == "cycle":
            pool = self.cycle_pool["floor"]
            start = time.perf_counter_ns()
            for i in range(len(keys)):
                slot = i % len(pool)
                self.moves += 1
                new_key = f"f{self.moves:031x}"
                floor.cycle(pool[slot], new_key, expire)
                pool[slot] = new_key
            elapsed = time.perf_counter_ns() - start
        else:
            operation = floor.operation(workload)
            if workload == "new":
                keys = [f"e{i:031x}" for i in range(len(keys))]
                created = keys
            start = time.perf_counter_ns()
            for k in keys:
                operation(k, expire)
            elapsed = time.perf_counter_ns() - start
        self._forget("ours", created)
        return elapsed / len(keys) / 1000

    def count(self, engine: str, workload: str) -> int:
        from tests.counting import count_statements

        keys = self.sample(workload)[:1]
        self.prepare_cache(engine, workload, keys)
        with count_statements(self.alias) as statements:
            self.run_engine(engine, workload, keys, prepare=False)
        if workload == "new":
            # _forget's cleanup DELETE ran inside the counter.
            return statements.count - 1
        return statements.count

    def peak_kib(self, engine: str, workload: str) -> float:
        keys = self.sample(workload)[:200]
        self.prepare_cache(engine, workload, keys)
        tracemalloc.start()
        try:
            self.run_engine(engine, workload, keys, prepare=False)
            return tracemalloc.get_traced_memory()[1] / 1024
        finally:
            tracemalloc.stop()


def measure(
    alias: str, rows: int, requests: int, runs: int, engines: list[str], workloads: list[str]
) -> dict[tuple[str, str], Result]:
    from django.db import connections

    from django_sql_sessions.backends.db import SessionStore

    payload = SessionStore().encode(SESSION)
    populate(alias, rows, payload)
    bench = Bench(alias, rows, requests, payload)
    connection = connections[alias]
    floor_connection = _floor_connection(alias)
    from benchmarks.floor import Floor

    floor = Floor(floor_connection, connection.vendor, TABLE, payload)
    results: dict[tuple[str, str], Result] = {}
    for workload in workloads:
        for engine in [*engines, "floor"]:
            results[(workload, engine)] = Result()
        # Warm up connections, caches and code paths once.
        for engine in engines:
            bench.run_engine(engine, workload, bench.sample(workload)[:50])
        for run in range(runs):
            keys = bench.sample(workload)
            order = [*engines, "floor"]
            order = order[run % len(order) :] + order[: run % len(order)]
            for engine in order:
                if engine == "floor":
                    micros = bench.run_floor(floor, workload, keys)
                else:
                    micros = bench.run_engine(engine, workload, keys)
                results[(workload, engine)].micros.append(micros)
        for engine in engines:
            result = results[(workload, engine)]
            if engine != "signed_cookies":
                result.statements = bench.count(engine, workload)
            else:
                result.statements = 0
            result.peak_kib = bench.peak_kib(engine, workload)
        from benchmarks.floor import STATEMENTS

        results[(workload, "floor")].statements = STATEMENTS[workload]
        if "signed_cookies" in engines:
            # The request limit: Django's request with no database plus the
            # statements a store cannot avoid, sent prepared through the raw
            # driver. Paired run by run, as the ratios are.
            limit = results[(workload, "limit")] = Result(statements=STATEMENTS[workload])
            limit.micros = [
                cookie + floor_micros
                for cookie, floor_micros in zip(
                    results[(workload, "signed_cookies")].micros,
                    results[(workload, "floor")].micros,
                    strict=True,
                )
            ]
    floor_connection.close()
    return results


def _floor_connection(alias: str) -> Any:
    from django.db import connections

    from benchmarks.floor import connect

    connection = connections[alias]
    return connect(connection.settings_dict, connection.vendor)


def paired_ratio(numerator: list[float], denominator: list[float]) -> float:
    return statistics.median(a / b for a, b in zip(numerator, denominator, strict=True))


HEADERS = [
    "workload",
    "engine",
    "µs/op",
    "ops/s",
    "x floor",
    "x limit",
    "speed-up vs db",
    "speed-up vs ours",
    "statements",
    "peak KiB",
]
# Fixed colours, the same in every chart: ours stands out, the floor is grey.
COLORS = {
    "ours": "#1f77b4",
    "cached": "#17becf",
    "db": "#ff7f0e",
    "cached_db": "#2ca02c",
    "signed_cookies": "#9467bd",
    "floor": "#7f7f7f",
    "limit": "#c7c7c7",
}


def describe(alias: str, server: str) -> str:
    """The database as a table caption names it: server, and how it was set up."""
    options = _options(alias)
    extras = [
        "WAL" if "init_command" in options else "",
        "prepared statements" if "prepare_threshold" in options else "",
        f"buffer pool {_buffer_pool_mb(alias)} MB" if connections_vendor(alias) == "mysql" else "",
        "Redis cache" if _redis_cache() else "",
    ]
    extra = ", ".join(e for e in extras if e)
    return f"{server or alias} ({extra})" if extra else server or alias


def table(
    caption: str, results: dict[tuple[str, str], Result], rows: int, requests: int
) -> report.Table:
    cells: list[list[report.Cell]] = []
    for (workload, engine), result in results.items():
        median = statistics.median(result.micros)
        floor = results[(workload, "floor")].micros
        vs_floor = paired_ratio(result.micros, floor)
        limit = results.get((workload, "limit"))
        vs_limit = f"{paired_ratio(result.micros, limit.micros):.2f}x" if limit else ""
        speedup = {}
        for other in ["db", "ours"]:
            speedup[other] = ""
            if (workload, other) in results and engine != other:
                ratio = paired_ratio(results[(workload, other)].micros, result.micros)
                speedup[other] = f"{ratio:.2f}x"
        peak = f"{result.peak_kib:.0f}" if result.peak_kib is not None else ""
        cells.append(
            [
                workload,
                engine,
                f"{median:,.0f}",
                f"{1e6 / median:,.0f}",
                f"{vs_floor:.2f}x",
                vs_limit,
                speedup["db"],
                speedup["ours"],
                result.statements,
                peak,
            ]
        )
    runs = len(next(iter(results.values())).micros)
    return report.Table(
        f"{caption}: {rows:,} live sessions, medians of {runs} runs of {requests:,} requests",
        HEADERS,
        cells,
    )


def medians(results: dict[tuple[str, str], Result]) -> dict[str, dict[str, float]]:
    """µs per request by workload, then engine, for the chart."""
    found: dict[str, dict[str, float]] = {}
    for (workload, engine), result in results.items():
        found.setdefault(workload, {})[engine] = statistics.median(result.micros)
    return found


def _redis_cache() -> bool:
    from django.conf import settings

    backend: str = settings.CACHES[settings.SESSION_CACHE_ALIAS]["BACKEND"]
    return backend.endswith(".RedisCache")


def connections_vendor(alias: str) -> str:
    from django.db import connections

    return str(connections[alias].vendor)


def _buffer_pool_mb(alias: str) -> int:
    from django.db import connections

    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT @@innodb_buffer_pool_size")
        return int(cursor.fetchone()[0]) // (1024 * 1024)


def _options(alias: str) -> dict[str, Any]:
    from django.db import connections

    options: dict[str, Any] = connections[alias].settings_dict.get("OPTIONS", {})
    return options


def growth(
    alias: str, caption: str, sizes: list[int], requests: int, runs: int
) -> tuple[report.Table, dict[str, dict[str, float]]]:
    """Our engine's median µs per read and write at each table size: the table and chart data."""
    from django_sql_sessions.backends.db import SessionStore

    payload = SessionStore().encode(SESSION)
    cells: list[list[report.Cell]] = []
    chart: dict[str, dict[str, float]] = {}
    for size in sizes:
        populate(alias, size, payload, django_table=False)
        bench = Bench(alias, size, requests, payload)
        row: list[report.Cell] = [size]
        for workload in ["read", "write"]:
            bench.run_engine("ours", workload, bench.sample(workload)[:100])
            micros = [
                bench.run_engine("ours", workload, bench.sample(workload)) for _ in range(runs)
            ]
            median = statistics.median(micros)
            row.append(f"{median:,.0f}")
            chart.setdefault(f"{size:,} rows", {})[workload] = median
        cells.append(row)
    caption = (
        f"{caption}: our engine as the table grows, "
        f"µs per request, medians of {runs} runs of {requests:,} requests"
    )
    return report.Table(caption, ["rows", "read", "write"], cells), chart


@contextmanager
def alias_under_test(alias: str) -> Iterator[None]:
    from django.test import override_settings

    ROUTER.alias = alias
    with override_settings(SQL_SESSIONS_DB_ALIAS=alias):
        yield


@contextmanager
def buffer_pool(alias: str, megabytes: int | None) -> Iterator[None]:
    from django.db import connections

    connection = connections[alias]
    if connection.vendor != "mysql" or not megabytes:
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT @@innodb_buffer_pool_size")
        (previous,) = cursor.fetchone()
        cursor.execute("SET GLOBAL innodb_buffer_pool_size = %s", [megabytes * 1024 * 1024])
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SET GLOBAL innodb_buffer_pool_size = %s", [previous])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--databases", default="sqlite,postgresql,mysql")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=1000, help="requests per run")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--engines", default=",".join(DEFAULT_ENGINES), help=", ".join(ENGINES))
    parser.add_argument(
        "--workloads", default=",".join(DEFAULT_WORKLOADS), help=", ".join(WORKLOADS)
    )
    parser.add_argument(
        "--redis",
        metavar="URL",
        help="Django's RedisCache at URL as the session cache (a Redis database of its own)",
    )
    parser.add_argument(
        "--growth",
        default="",
        help="comma-separated table sizes: measure our read and write at each instead",
    )
    parser.add_argument("--data-dir", default=tempfile.gettempdir())
    parser.add_argument("--sqlite-wal", action="store_true", help="SQLite in WAL mode")
    parser.add_argument(
        "--mysql-buffer-pool-mb",
        type=int,
        help="set MariaDB/MySQL's innodb_buffer_pool_size for the run (restored after)",
    )
    parser.add_argument(
        "--pg-prepare",
        action="store_true",
        help="PostgreSQL with OPTIONS prepare_threshold=1 (prepared statements)",
    )
    parser.add_argument(
        "--docs",
        metavar="DIR",
        help="also write the RST fragment and SVG chart there (e.g. docs/perf)",
    )
    args = parser.parse_args()
    names = args.databases.split(",")
    configure(
        names, Path(args.data_dir), wal=args.sqlite_wal, prepare=args.pg_prepare, redis=args.redis
    )
    for alias in names:
        create_database(alias)
    stamp = report.Stamp.collect(aliases=names)
    print(stamp.text(), end="\n\n", flush=True)
    tables: list[report.Table] = []
    panels: dict[str, dict[str, dict[str, float]]] = {}
    for alias in names:
        with alias_under_test(alias), buffer_pool(alias, args.mysql_buffer_pool_mb):
            caption = describe(alias, stamp.servers.get(alias, ""))
            if args.growth:
                sizes = [int(size) for size in args.growth.split(",")]
                found, panels[caption] = growth(alias, caption, sizes, args.requests, args.runs)
            else:
                results = measure(
                    alias,
                    args.rows,
                    args.requests,
                    args.runs,
                    args.engines.split(","),
                    args.workloads.split(","),
                )
                found = table(caption, results, args.rows, args.requests)
                panels[caption] = medians(results)
        tables.append(found)
        print(found.caption, report.text_table(found.headers, found.rows), sep="\n", end="\n\n")
        sys.stdout.flush()
    if args.docs:
        name = "requests" + "".join(
            suffix
            for suffix, used in [
                ("_growth", args.growth),
                ("_wal", args.sqlite_wal),
                ("_prepared", args.pg_prepare),
                ("_redis", args.redis),
            ]
            if used
        )
        if args.growth:
            title = f"Our engine as the table grows (median of {args.runs} runs; lower is faster)"
            alt = "our engine's µs per read and per write at each table size"
        else:
            title = f"Time per request by workload and engine (median of {args.runs} runs)"
            engines = ", ".join([*args.engines.split(","), "floor"])
            alt = f"µs per request of each engine ({engines}) for each workload"

        def chart(path: Path) -> Path:
            return report.panel_chart(
                path, title, panels, "µs per request", colors=COLORS, labels=bool(args.growth)
            )

        alt = f"Bar charts, one per database: {alt}; the tables below give the numbers"
        path = report.write_fragment(args.docs, name, stamp, tables, chart=chart, alt=alt)
        print(f"Wrote {path} and {path.with_suffix('.svg')}")


if __name__ == "__main__":
    main()
