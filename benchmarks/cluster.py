"""
Cluster benchmark: session throughput on one MariaDB server against a
3-node Galera cluster behind HAProxy, and the cleanup on the cluster under
live traffic.

    clusters/galera.sh start && eval "$(clusters/galera.sh env)"
    MYSQL_HOST=127.0.0.1 MYSQL_USER=root python benchmarks/cluster.py --databases mysql,galera

"galera" is the cluster through HAProxy (GALERA_HOST, GALERA_PORT, GALERA_USER,
GALERA_PASSWORD), which spreads the clients' connections, and so their
writes, over all three nodes. Each of --clients processes holds one
connection and its own sessions, and runs each workload for --seconds:

- read: load a session;
- read, no sync wait: the same, with the engine's reads compiled without
  ``SET STATEMENT wsrep_sync_wait = 1`` (what the causal reads cost, and
  what they prevent: see the stale-read test in tests/cluster/);
- write: load a session, change it, save it;
- create: save a new session.

Then, with --expired expired sessions in the table (the live ones are the
clients'), the clients keep writing while purgesessions' batched cleanup
runs: rows deleted per second, the p99 of the live writes meanwhile, the
conflicts the engine retried, errors, and lost writes (a write that
returned but is not in the stored session: the target is 0).

With --docs DIR it also writes DIR/cluster.rst and DIR/cluster.svg.
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path[:0] = [str(Path(__file__).resolve().parent.parent)]

from benchmarks import report  # noqa: E402
from benchmarks.cleanup import percentile, populate  # noqa: E402
from benchmarks.run import SESSION, TABLE, configure, create_database, key  # noqa: E402

WORKLOADS = ("read", "read, no sync wait", "write", "create")
# The clients' own sessions: client c owns key(c * PER_CLIENT) onwards.
PER_CLIENT = 1000


@dataclasses.dataclass
class Tally:
    """What one client saw."""

    latencies_ms: list[float] = dataclasses.field(default_factory=list)
    errors: Counter[str] = dataclasses.field(default_factory=Counter)
    conflict_retries: int = 0
    # Session key -> how many writes to it returned.
    writes: Counter[str] = dataclasses.field(default_factory=Counter)

    def add(self, other: Tally) -> None:
        self.latencies_ms += other.latencies_ms
        self.errors += other.errors
        self.conflict_retries += other.conflict_retries
        self.writes += other.writes


def error_name(exc: Exception) -> str:
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    return f"{type(exc).__name__} {code}" if code else type(exc).__name__


def client(
    alias: str, workload: str, number: int, sessions: int, until: float, stop: Any
) -> Tally:
    """Run one workload on its own connection until the clock passes `until` or `stop` is set."""
    from django.db import DatabaseError, connections
    from django.test import override_settings

    from django_sql_sessions import cursors
    from django_sql_sessions.backends.db import SessionStore

    tally = Tally()
    rng = random.Random(number)
    restore = None
    if workload == "read, no sync wait":
        # Pool processes run the next workloads too: put the statements back.
        restore = without_sync_wait(alias)
        workload = "read"
    mine = [key(number * PER_CLIENT + i) for i in range(sessions)]
    retries_before = cursors.conflict_retries[alias]
    with override_settings(SQL_SESSIONS_DB_ALIAS=alias):
        try:
            while time.time() < until and not stop.is_set():
                session_key = rng.choice(mine)
                started = time.perf_counter()
                try:
                    if workload == "read":
                        SessionStore(session_key).load()
                    elif workload == "write":
                        store = SessionStore(session_key)
                        if "n" not in store:
                            # A live session that loads as missing: its user
                            # would be logged out. Not written (a save would
                            # start a new session under a new key).
                            tally.errors["session missing on load"] += 1
                            continue
                        store["n"] += 1
                        store.save()
                    else:
                        store = SessionStore()
                        store.update(SESSION)
                        store.save()
                except DatabaseError as exc:
                    tally.errors[error_name(exc)] += 1
                    continue
                tally.latencies_ms.append((time.perf_counter() - started) * 1000)
                if workload == "write":
                    tally.writes[session_key] += 1
        finally:
            connections.close_all()
            if restore:
                restore()
    tally.conflict_retries = cursors.conflict_retries[alias] - retries_before
    return tally


def without_sync_wait(alias: str) -> Callable[[], None]:
    """
    In this process, the alias's statements as on a server that is not
    MariaDB; return what puts them back.
    """
    from django.db import connections

    from django_sql_sessions import dialects

    connection = connections[alias]
    key = (dialects.MARIADB, TABLE, ())
    causal = dialects.statements(connection, TABLE)
    mysql = dialects.DIALECTS["mysql"]
    dialects._compiled[key] = mysql.compile(connection.ops.quote_name(TABLE))

    def put_back() -> None:
        dialects._compiled[key] = causal

    return put_back


def start_clients(
    pool: Any, alias: str, workload: str, clients: int, sessions: int, until: float, stop: Any
) -> list[Any]:
    return [
        pool.apply_async(client, (alias, workload, number, sessions, until, stop))
        for number in range(clients)
    ]


def seed(alias: str, clients: int, sessions: int) -> None:
    """The clients' sessions, logged in, with n = 0."""
    from django.test import override_settings

    from django_sql_sessions.backends.db import SessionStore
    from django_sql_sessions.models import Session
    from django_sql_sessions.storage import hash_key

    with override_settings(SQL_SESSIONS_DB_ALIAS=alias):
        Session.objects.filter(
            key_hash__in=[
                hash_key(key(c * PER_CLIENT + i)) for c in range(clients) for i in range(sessions)
            ]
        ).delete()
        for c in range(clients):
            for i in range(sessions):
                store = SessionStore()
                store.update({**SESSION, "n": 0})
                # A key of our choosing (the engine never adopts one itself).
                store._session_key = key(c * PER_CLIENT + i)
                store.save(must_create=True)


def lost_writes(alias: str, writes: Counter[str]) -> tuple[int, int]:
    """Writes that returned but are not stored, and sessions missing altogether."""
    from django.test import override_settings

    from django_sql_sessions.backends.db import SessionStore

    lost = missing = 0
    with override_settings(SQL_SESSIONS_DB_ALIAS=alias):
        for session_key, count in writes.items():
            data = SessionStore(session_key).load()
            if not data:
                missing += 1
            elif data["n"] < count:
                lost += count - data["n"]
    return lost, missing


@dataclasses.dataclass
class Row:
    alias: str
    workload: str
    seconds: float
    tally: Tally
    deleted_per_second: float | None = None
    lost: int | None = None
    missing: int | None = None

    def cells(self) -> list[report.Cell]:
        latencies = self.tally.latencies_ms or [0.0]
        errors = ", ".join(f"{n} {name}" for name, n in self.tally.errors.most_common()) or "0"
        return [
            self.alias,
            self.workload,
            f"{len(self.tally.latencies_ms) / self.seconds:,.0f}",
            f"{statistics.median(latencies):.2f}",
            f"{percentile(latencies, 0.99):.2f}",
            str(self.tally.conflict_retries),
            errors,
            "" if self.deleted_per_second is None else f"{self.deleted_per_second:,.0f}",
            "" if self.lost is None else f"{self.lost} / {self.missing}",
        ]


HEADERS = [
    "database",
    "workload",
    "operations/s",
    "p50 ms",
    "p99 ms",
    "conflicts retried",
    "errors",
    "cleanup rows/s",
    "lost writes / missing sessions",
]


def measure(alias: str, clients: int, sessions: int, seconds: float, expired: int) -> list[Row]:
    from django.core.management import call_command
    from django.db import connections

    from django_sql_sessions.backends.db import SessionStore
    from django_sql_sessions.cleanup import delete_expired

    call_command("migrate", "django_sql_sessions", database=alias, verbosity=0)
    seed(alias, clients, sessions)
    connections.close_all()
    rows = []
    context = multiprocessing.get_context("fork")
    with context.Manager() as manager, context.Pool(clients) as pool:
        stop = manager.Event()
        for workload in WORKLOADS:
            until = time.time() + seconds
            tally = Tally()
            for result in start_clients(pool, alias, workload, clients, sessions, until, stop):
                tally.add(result.get())
            rows.append(Row(alias, workload, seconds, tally))
            if workload == "write":
                rows[-1].lost, rows[-1].missing = lost_writes(alias, tally.writes)
                connections.close_all()

        if expired:
            # The clients' sessions stay; the expired rows follow them.
            payload = SessionStore().encode(SESSION)
            live = clients * PER_CLIENT
            populate(alias, live, expired, payload)
            seed(alias, clients, sessions)
            connections.close_all()
            stop.clear()
            results = start_clients(
                pool, alias, "write", clients, sessions, time.time() + 3600, stop
            )
            time.sleep(1)  # the clients are writing
            started = time.perf_counter()
            with override_alias(alias):
                cleaned = delete_expired()
            elapsed = time.perf_counter() - started
            stop.set()
            tally = Tally()
            for result in results:
                tally.add(result.get())
            row = Row(alias, "write during cleanup", elapsed + 1, tally)
            row.deleted_per_second = cleaned.deleted / elapsed
            row.lost, row.missing = lost_writes(alias, tally.writes)
            rows.append(row)
            connections.close_all()
    return rows


def override_alias(alias: str) -> Any:
    from django.test import override_settings

    return override_settings(SQL_SESSIONS_DB_ALIAS=alias)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--databases", default="mysql,galera")
    parser.add_argument("--clients", type=int, default=8, help="processes, one connection each")
    parser.add_argument("--sessions", type=int, default=20, help="per client")
    parser.add_argument("--seconds", type=float, default=10.0, help="per workload")
    parser.add_argument("--expired", type=int, default=200_000, help="0 to skip the cleanup")
    parser.add_argument("--data-dir", default=tempfile.gettempdir())
    parser.add_argument("--docs", metavar="DIR", help="also write cluster.rst and .svg there")
    args = parser.parse_args()
    if args.sessions > PER_CLIENT:
        parser.error(f"--sessions: at most {PER_CLIENT}")
    names = [name for name in args.databases.split(",") if name]
    configure(names, Path(args.data_dir))
    for alias in names:
        create_database(alias)
    stamp = report.Stamp.collect(aliases=names)
    rows: list[Row] = []
    for alias in names:
        rows += measure(alias, args.clients, args.sessions, args.seconds, args.expired)
    print(stamp.text())
    print(report.text_table(HEADERS, [row.cells() for row in rows]))
    if args.docs:
        caption = (
            f"{args.clients} client processes, each with its own connection and "
            f"{args.sessions} sessions, {args.seconds:g} s per workload; the cleanup deletes "
            f"{args.expired:,} expired sessions while the clients write."
        )
        groups = {
            workload: {
                row.alias: len(row.tally.latencies_ms) / row.seconds
                for row in rows
                if row.workload == workload
            }
            for workload in WORKLOADS
        }
        path = report.write_fragment(
            Path(args.docs),
            "cluster",
            stamp,
            tables=[report.Table(caption, HEADERS, [row.cells() for row in rows])],
            chart=lambda svg: report.bar_chart(
                svg, "Session operations per second", groups, "operations/s"
            ),
            alt="Bars of session reads, writes and creates per second on one MariaDB "
            "server and on the Galera cluster.",
        )
        print(f"Wrote {path}")


if __name__ == "__main__":
    main()
