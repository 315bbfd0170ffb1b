"""
Cleanup benchmark: purgesessions' batched delete against one unbatched DELETE
(what Django's own clear_expired() runs), each under live traffic.

    python benchmarks/cleanup.py --databases postgresql,mysql \\
        --live 200000 --expired 1000000 --mysql-buffer-pool-mb 1024

The table holds --expired sessions that expired up to 14 days ago and --live
live ones, inserted interleaved, so that live rows share pages with expired
ones as in a real table (on MariaDB/MySQL they always do: rows are stored in
key-hash order). A tenth of the live sessions are 15-minute sessions, expiring
in 15 to 20 minutes: in the expiry index they sit right after the expired
rows. Every ten rows belong to one user, live and expired alike.

Live traffic runs on connections of its own, one thread per kind, each paced
to a fixed rate (LIVE_WRITES), through Django's SessionMiddleware:

- save: a live session changed and saved (an UPDATE of its row);
- save of a 15-minute session: the same for a 15-minute session, which stays
  one (an UPDATE of a row next to the expired ones in the expiry index);
- login: a new session saved (an INSERT);
- revoke a user's sessions: user_sessions.revoke_users_sessions() of a
  random user ("log out other devices", after a password change), which
  deletes the user's rows, expired ones included: the rows the cleanup
  deletes too.

Then, in this order: the traffic alone for --baseline seconds ("none");
purgesessions' batched cleanup (cleanup.delete_expired()); the table filled
anew; one unbatched DELETE. For each it reports rows deleted per second, and
for the writes that started while it ran, by kind: p50, p99 and the longest
(max) latency, counted from when the write started, how many took over
1 s, deadlocks and lock wait timeouts. Every 50 ms it samples the backends
waiting for a lock (PostgreSQL: pg_stat_activity's wait_event_type 'Lock';
MariaDB/MySQL: Innodb_row_lock_current_waits) and reports the most at once
and the total waiting time; on MariaDB/MySQL also the Innodb_row_lock_waits
and Innodb_row_lock_time deltas.

Replicas are measured where there are any:

- PostgreSQL with streaming standbys (pg_stat_replication has rows), for
  example --databases pg_standby, the primary of clusters/pg-standby.sh
  (PG_PRIMARY_HOST, PG_PRIMARY_PORT, ...: eval "$(clusters/pg-standby.sh
  env)"; start it with PG_STANDBY_DELAY=0, or the standby replays 2 s late
  by design): WAL not yet replayed (MB, sampled), and the seconds after the
  cleanup ended until every standby had replayed it all.
- --databases galera, the 3-node cluster of clusters/galera.sh through
  HAProxy (GALERA_HOST, GALERA_PORT, GALERA_NODE_PORTS, ...: eval
  "$(clusters/galera.sh env)"): each node's wsrep_local_recv_queue
  (sampled), the time flow control paused replication
  (wsrep_flow_control_paused_ns), the bytes replicated
  (wsrep_replicated_bytes), the seconds after the cleanup ended until every
  node had applied it (wsrep_last_committed), and whether a cleanup failed
  (one DELETE over wsrep_max_ws_rows or wsrep_max_ws_size fails at commit).
  --galera-max-ws-rows N sets wsrep_max_ws_rows on every node for the run.

With --docs DIR it also writes DIR/cleanup.rst and DIR/cleanup.svg (see
benchmarks/report.py), DIR/cleanup_replicas.* when a replica set-up
(pg_standby, galera) is among the databases. --smoke runs tiny sizes that
prove the pipeline in seconds, and says so in the fragment.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

sys.path[:0] = [str(Path(__file__).resolve().parent.parent)]

from benchmarks import report  # noqa: E402
from benchmarks.run import (  # noqa: E402
    GENERATED,
    OUR_COLUMNS,
    SESSION,
    TABLE,
    USER_ID,
    alias_under_test,
    buffer_pool,
    configure,
    create_database,
    describe,
    key,
)

NONE, BATCHED, UNBATCHED = "none", "batched purge", "one DELETE"
# Live writes per second, by kind (see the module docstring).
SAVE, SHORT_SAVE, LOGIN, REVOKE = (
    "save",
    "save of a 15-minute session",
    "login",
    "revoke a user's sessions",
)
LIVE_WRITES = {SAVE: 100.0, SHORT_SAVE: 50.0, LOGIN: 50.0, REVOKE: 5.0}
SHORT_AGE = 15 * 60  # seconds: a 15-minute session's expiry
ROWS_PER_USER = 10
SAMPLE_EVERY = 0.05  # seconds
SLOW = 1000.0  # ms: a write slower than this is counted
# Inserted per statement when filling the table: each its own transaction,
# well under any Galera writeset limit.
CHUNK = 50_000
# How long to wait for replicas to apply a cleanup before giving up.
CATCH_UP_TIMEOUT = 300.0
REPLICA_SETUPS = {"pg_standby", "galera"}


@dataclass(frozen=True)
class Sizes:
    live: int
    expired: int
    near: int  # live 15-minute sessions: keys key(0)..key(near - 1)
    users: int  # 0: every row belongs to benchmarks.run.USER_ID
    baseline: float  # seconds of traffic with no cleanup
    warm_up: float  # seconds of traffic before each measurement

    @classmethod
    def of(cls, live: int, expired: int, *, baseline: float, warm_up: float) -> Sizes:
        users = max(1, (live + expired) // ROWS_PER_USER)
        return cls(live, expired, live // 10, users, baseline, warm_up)


def populate(
    alias: str, live: int, expired: int, payload: str, *, near: int = 0, users: int = 0
) -> None:
    """
    Empty the table and fill it: live sessions get keys key(0..live-1), the
    first `near` of them expiring in 15 to 20 minutes, the others in 14 days;
    expired ones key(live..live+expired-1), expired up to 14 days ago. Rows
    go in interleaved (Bresenham's spacing of the live ones among all), so
    that live and expired rows share pages. Row n belongs to user mod(n, users),
    or to every row's USER_ID when `users` is 0.
    """
    from django.core.management import call_command
    from django.db import DatabaseError, connections

    call_command("migrate", database=alias, verbosity=0)
    connection = connections[alias]
    vendor = connection.vendor
    table = connection.ops.quote_name(TABLE)
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE TABLE {table}")
        total = live + expired
        for first in range(0, total, CHUNK):
            last = min(first + CHUNK, total) - 1
            sql = insert_sql(vendor, table, first, last, live, expired, near, users)
            cursor.execute(sql, [payload] if users else [payload, str(USER_ID)])
        if near:
            # From now, not from the fill's start: a fill can take minutes
            # (Galera: 7 for 1,200,000 rows), and a near session that
            # expired before the runs would be purged under its writer.
            cursor.execute(refresh_near_sql(vendor, table))
        if vendor == "postgresql":
            cursor.execute(f"VACUUM ANALYZE {table}")
            # The next writes of each page start from a checkpoint: every
            # cleanup pays the same full-page images in the WAL. Superusers
            # (and pg_checkpoint) only: without, the timing of the last one
            # decides.
            with suppress(DatabaseError):
                cursor.execute("CHECKPOINT")
        else:
            cursor.execute(f"ANALYZE TABLE {table}")
            cursor.fetchall()


# Per vendor: the series of row numbers n from {first} to {last}, and a
# number as text.
SERIES = {
    "postgresql": "generate_series({first}::bigint, {last}::bigint) AS n",
    "mysql": "(SELECT seq AS n FROM seq_{first}_to_{last}) AS series",
}
AS_TEXT = {"postgresql": "({value})::text", "mysql": "CAST({value} AS CHAR)"}
EXPIRY = {
    "postgresql": {
        "expired": "now() - random() * interval '14 days' - interval '1 second'",
        "near": "now() + interval '15 minutes' + random() * interval '5 minutes'",
        "now": "now()",
        "in_a_day": "now() + interval '1 day'",
    },
    "mysql": {
        "expired": "NOW(6) - INTERVAL FLOOR(1 + RAND() * 1209600) SECOND",
        "near": "NOW(6) + INTERVAL FLOOR(900 + RAND() * 300) SECOND",
        "now": "NOW(6)",
        "in_a_day": "NOW(6) + INTERVAL 1 DAY",
    },
}
# The column GENERATED's key expression numbers sessions by.
NUMBER = {"postgresql": "i", "mysql": "seq"}
DIVIDE = {"postgresql": "/", "mysql": "DIV"}


def refresh_near_sql(vendor: str, table: str) -> str:
    """The UPDATE that makes the live rows due within a day 15-minute sessions again."""
    expiry = EXPIRY[vendor]
    return (
        f"UPDATE {table} SET expire_date = {expiry['near']} "
        f"WHERE expire_date > {expiry['now']} AND expire_date < {expiry['in_a_day']}"
    )


def insert_sql(
    vendor: str,
    table: str,
    first: int,
    last: int,
    live: int,
    expired: int,
    near: int,
    users: int,
) -> str:
    """
    The INSERT ... SELECT of rows first..last of populate()'s layout, with
    parameters (payload,) or (payload, user id) when `users` is 0.

    Row n is live when ((n + 1) * live) // total > (n * live) // total; it
    is then live session (n * live) // total, otherwise expired session
    n - ((n + 1) * live) // total.
    """
    generated = GENERATED[vendor]
    total = live + expired
    div = DIVIDE[vendor]
    number = NUMBER[vendor]
    key_hash = generated["hash"].format(key=generated["key"])
    user = AS_TEXT[vendor].format(value=f"mod(n, {users})") if users else "%s"
    expiry = (
        f"CASE WHEN live = 0 THEN {EXPIRY[vendor]['expired']} "
        f"WHEN {number} < {near} THEN {EXPIRY[vendor]['near']} "
        f"ELSE {generated['in_14_days']} END"
    )
    is_live = (
        f"CASE WHEN (n + 1) * {live} {div} {total} > n * {live} {div} {total} THEN 1 ELSE 0 END"
    )
    numbered = (
        f"CASE WHEN live = 1 THEN n * {live} {div} {total} "
        f"ELSE {live} + n - (n + 1) * {live} {div} {total} END"
    )
    series = SERIES[vendor].format(first=first, last=last)
    return (
        f"INSERT INTO {table} ({OUR_COLUMNS}) "
        f"SELECT {key_hash}, %s, {expiry}, {generated['now']}, {generated['now']}, 1, {user} "
        f"FROM (SELECT n, live, {numbered} AS {number} "
        f"FROM (SELECT n, {is_live} AS live FROM {series}) AS marked) AS numbered"
    )


# -- Live traffic ------------------------------------------------------------


@dataclass(frozen=True)
class Write:
    """One live write: its kind, when it started (time.perf_counter()), how long it took."""

    kind: str
    started: float
    ms: float
    error: str = ""  # "", or error_kind()'s name for the DatabaseError it raised


DEADLOCK, LOCK_TIMEOUT, OTHER = "deadlock", "lock wait timeout", "other error"


def error_kind(exc: BaseException) -> str:
    """A deadlock, a lock wait timeout, or another error, by driver error code."""
    cause = exc.__cause__ or exc
    sqlstate = getattr(cause, "sqlstate", None)
    code = cause.args[0] if cause.args and isinstance(cause.args[0], int) else None
    if sqlstate == "40P01" or code == 1213:
        return DEADLOCK
    if sqlstate == "55P03" or code == 1205:
        return LOCK_TIMEOUT
    return OTHER


class Writer(threading.Thread):
    """Makes one kind of live write, on its own connection, at `rate` a second until stopped."""

    def __init__(self, kind: str, rate: float, sizes: Sizes, stop: threading.Event) -> None:
        super().__init__(name=f"writer {kind}", daemon=True)
        self.kind = kind
        self.interval = 1 / rate
        self.sizes = sizes
        self.stop = stop
        self.writes: list[Write] = []
        self.rng = random.Random(f"{kind}-{sizes}")

    def run(self) -> None:
        from django.contrib.sessions.exceptions import SessionInterrupted
        from django.db import DatabaseError, connections

        write = self.write_function()
        due = time.perf_counter()
        try:
            while not self.stop.is_set():
                wait = due - time.perf_counter()
                if wait > 0 and self.stop.wait(wait):
                    break
                started = time.perf_counter()
                error = ""
                try:
                    write()
                # A session gone under its save (a cleanup that deleted it)
                # is a failed write, not the end of the writer.
                except (DatabaseError, SessionInterrupted) as exc:
                    error = error_kind(exc)
                finished = time.perf_counter()
                self.writes.append(Write(self.kind, started, (finished - started) * 1000, error))
                # Paced, with no burst to catch up after a slow write.
                due = max(due + self.interval, finished)
        finally:
            connections.close_all()

    def write_function(self) -> Callable[[], object]:
        from django.contrib.sessions.middleware import SessionMiddleware
        from django.http import HttpRequest, HttpResponse
        from django.test import RequestFactory

        from django_sql_sessions.user_sessions import revoke_users_sessions

        sizes, rng = self.sizes, self.rng
        factory = RequestFactory()

        def count(request: HttpRequest) -> HttpResponse:
            request.session["counter"] = request.session.get("counter", 0) + 1
            return HttpResponse()

        def count_short(request: HttpRequest) -> HttpResponse:
            request.session.set_expiry(SHORT_AGE)
            return count(request)

        def log_in(request: HttpRequest) -> HttpResponse:
            request.session.update(SESSION)
            return HttpResponse()

        if self.kind == REVOKE:
            return lambda: revoke_users_sessions(
                str(rng.randrange(sizes.users)), None, via="api", actor=None
            )
        if self.kind == LOGIN:
            login = SessionMiddleware(log_in)
            return lambda: login(factory.get("/"))
        view, low, high = {
            SAVE: (count, sizes.near, sizes.live),
            SHORT_SAVE: (count_short, 0, sizes.near),
        }[self.kind]
        middleware = SessionMiddleware(view)
        return lambda: middleware(
            factory.get("/", HTTP_COOKIE=f"sessionid={key(rng.randrange(low, high))}")
        )


def writers(sizes: Sizes, stop: threading.Event) -> list[Writer]:
    """The live writes this layout has sessions for."""
    found = []
    for kind, rate in LIVE_WRITES.items():
        if kind == SAVE and sizes.live <= sizes.near:
            continue
        if kind == SHORT_SAVE and not sizes.near:
            continue
        found.append(Writer(kind, rate, sizes, stop))
    return found


# -- What the servers say ----------------------------------------------------


@dataclass(frozen=True)
class Sample:
    at: float  # time.perf_counter()
    waiting: int  # backends waiting for a lock
    behind: float | None  # how far the furthest replica is behind, in Probe.behind_unit


class Probe(Protocol):
    """A server (or a cluster's nodes) as the benchmark watches it, on connections of its own."""

    replicas: str  # "" when there are none; else what they are, for captions
    behind_unit: str  # what Sample.behind counts: "MB" (of WAL), "writesets"

    def sample(self) -> Sample: ...

    # Cumulative counters, one mapping per node: see counter_deltas().
    def counters(self) -> list[dict[str, float]]: ...

    # Where the primary is now, for caught_up().
    def position(self) -> object: ...

    def caught_up(self, position: object) -> bool: ...

    def close(self) -> None: ...


class PostgresProbe:
    behind_unit = "MB"

    def __init__(self, params: Mapping[str, Any]) -> None:
        import psycopg

        self.connection = psycopg.connect(**params, autocommit=True)
        standbys = int(self.one("SELECT count(*) FROM pg_stat_replication"))
        plural = "s" if standbys > 1 else ""
        self.replicas = f"{standbys} streaming standby{plural}" if standbys else ""

    def one(self, sql: str, params: Sequence[object] = ()) -> Any:
        row = self.connection.execute(sql, params).fetchone()
        assert row is not None
        return row[0]

    def sample(self) -> Sample:
        row = self.connection.execute(
            "SELECT (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'), (SELECT max(pg_wal_lsn_diff(pg_current_wal_lsn(), "
            "coalesce(replay_lsn, '0/0'))) FROM pg_stat_replication)"
        ).fetchone()
        assert row is not None
        behind = None if row[1] is None else float(row[1]) / 2**20
        return Sample(time.perf_counter(), int(row[0]), behind if self.replicas else None)

    def counters(self) -> list[dict[str, float]]:
        return []

    def position(self) -> object:
        return self.one("SELECT pg_current_wal_lsn()::text")

    def caught_up(self, position: object) -> bool:
        return bool(
            self.one(
                "SELECT coalesce(bool_and(coalesce(replay_lsn >= %s::pg_lsn, false)), true) "
                "FROM pg_stat_replication",
                [position],
            )
        )

    def close(self) -> None:
        self.connection.close()


# Status counters read from every MariaDB/MySQL node: see counter_deltas().
STATUS = (
    "Innodb_row_lock_waits",
    "Innodb_row_lock_time",
    "wsrep_flow_control_paused_ns",
    "wsrep_replicated_bytes",
    "wsrep_last_committed",
)


class MariaDBProbe:
    """One MariaDB/MySQL server, or every node of a Galera cluster."""

    def __init__(self, nodes: Sequence[Mapping[str, Any]], galera: bool) -> None:
        import MySQLdb

        self.galera = galera
        self.connections = []
        for params in nodes:
            connection = MySQLdb.connect(**params)
            connection.autocommit(True)
            self.connections.append(connection)
        self.replicas = f"{len(nodes)} Galera nodes" if galera else ""
        self.behind_unit = "writesets"

    def rows(self, connection: Any, sql: str) -> list[tuple[Any, ...]]:
        cursor = connection.cursor()
        try:
            cursor.execute(sql)
            return list(cursor.fetchall())
        finally:
            cursor.close()

    def status(self, connection: Any, names: Sequence[str]) -> dict[str, float]:
        listed = ", ".join(f"'{name}'" for name in names)
        return status_values(
            self.rows(connection, f"SHOW GLOBAL STATUS WHERE Variable_name IN ({listed})")
        )

    def sample(self) -> Sample:
        # Not information_schema.INNODB_TRX: InnoDB refreshes it only after
        # 100 ms without a read, so sampling it every 50 ms reads one frozen
        # copy. This counter is live.
        names = ["Innodb_row_lock_current_waits", "wsrep_local_recv_queue"]
        nodes = [self.status(connection, names) for connection in self.connections]
        waiting = sum(int(node.get(names[0], 0)) for node in nodes)
        queue = max(node.get(names[1], 0.0) for node in nodes) if self.galera else None
        return Sample(time.perf_counter(), waiting, queue)

    def counters(self) -> list[dict[str, float]]:
        return [self.status(connection, STATUS) for connection in self.connections]

    def position(self) -> object:
        return max(node.get("wsrep_last_committed", 0.0) for node in self.counters())

    def caught_up(self, position: object) -> bool:
        assert isinstance(position, float)
        return all(node.get("wsrep_last_committed", 0.0) >= position for node in self.counters())

    def variables(self, names: Sequence[str]) -> dict[str, str]:
        listed = ", ".join(f"'{name}'" for name in names)
        rows = self.rows(
            self.connections[0], f"SHOW GLOBAL VARIABLES WHERE Variable_name IN ({listed})"
        )
        return {str(name): str(value) for name, value in rows}

    def set_global(self, name: str, value: str) -> None:
        for connection in self.connections:
            self.rows(connection, f"SET GLOBAL {name} = {int(value)}")

    def close(self) -> None:
        for connection in self.connections:
            connection.close()


def status_values(rows: Sequence[Sequence[Any]]) -> dict[str, float]:
    """SHOW STATUS rows as numbers; values that are not numbers are left out."""
    found = {}
    for name, value in rows:
        try:
            found[str(name)] = float(value)
        except (TypeError, ValueError):
            continue
    return found


def counter_deltas(
    before: Sequence[Mapping[str, float]], after: Sequence[Mapping[str, float]]
) -> dict[str, float]:
    """
    What the nodes' counters moved by: lock waits and bytes replicated
    summed over the nodes; the time flow control paused replication, which
    pauses the whole cluster, as the most any node saw.
    """
    found: dict[str, float] = {}
    for old, new in zip(before, after, strict=True):
        for name in new.keys() & old.keys():
            if name == "wsrep_last_committed":
                continue
            delta = new[name] - old[name]
            if name == "wsrep_flow_control_paused_ns":
                found[name] = max(found.get(name, 0.0), delta)
            else:
                found[name] = found.get(name, 0.0) + delta
    return found


def probe_for(alias: str) -> Probe:
    from django.db import connections

    connection = connections[alias]
    settings = connection.settings_dict
    host, user, password = settings["HOST"], settings["USER"], settings["PASSWORD"]
    if connection.vendor == "postgresql":
        params = {"host": host, "port": int(settings["PORT"] or 5432), "dbname": settings["NAME"]}
        return PostgresProbe({**params, "user": user, "password": password})
    ports = [int(settings["PORT"] or 3306)]
    if alias == "galera":
        ports = node_ports(os.environ.get("GALERA_NODE_PORTS", ""))
    database = settings["NAME"]
    nodes = [
        {"host": host, "port": port, "user": user, "password": password, "database": database}
        for port in ports
    ]
    return MariaDBProbe(nodes, galera=alias == "galera")


def node_ports(value: str) -> list[int]:
    """GALERA_NODE_PORTS ("14301,14302,14303") as ports."""
    ports = [int(port) for port in value.replace(" ", "").split(",") if port]
    if not ports:
        sys.exit('galera: set GALERA_NODE_PORTS: eval "$(clusters/galera.sh env)"')
    return ports


class Sampler(threading.Thread):
    def __init__(self, probe: Probe, stop: threading.Event) -> None:
        super().__init__(name="sampler", daemon=True)
        self.probe = probe
        self.stop = stop
        self.samples: list[Sample] = []

    def run(self) -> None:
        while not self.stop.is_set():
            self.samples.append(self.probe.sample())
            self.stop.wait(SAMPLE_EVERY)


# -- One measurement ---------------------------------------------------------


@dataclass
class Run:
    cleanup: str
    seconds: float
    writes: list[Write]  # those that started while the cleanup ran
    samples: list[Sample]  # taken while it ran, and until the replicas caught up
    deleted: int = 0
    error: str = ""  # why the cleanup failed; "" if it did not
    counters: dict[str, float] = field(default_factory=dict)
    caught_up: float | None = None  # seconds after the end; None: no replicas
    caught_up_timed_out: bool = False
    behind_unit: str = ""
    started: float = 0.0  # time.perf_counter() when it started

    @property
    def rate(self) -> float:
        return self.deleted / self.seconds if self.seconds and not self.error else 0.0

    def during(self) -> list[Sample]:
        end = self.started + self.seconds
        return [sample for sample in self.samples if self.started <= sample.at <= end]

    def waiting_max(self) -> int:
        return max((sample.waiting for sample in self.during()), default=0)

    def waiting_seconds(self) -> float:
        """
        Connection-seconds spent waiting for locks: each sample's waiters
        times the time since the sample before.
        """
        total = 0.0
        for previous, sample in itertools.pairwise(self.during()):
            total += sample.waiting * (sample.at - previous.at)
        return total

    def behind_max(self) -> float | None:
        values = [sample.behind for sample in self.samples if sample.behind is not None]
        return max(values) if values else None


@dataclass(frozen=True)
class Latencies:
    writes: int
    p50: float
    p99: float
    max: float
    slow: int  # over SLOW ms
    errors: Mapping[str, int]

    @classmethod
    def of(cls, writes: Sequence[Write]) -> Latencies:
        ms = [write.ms for write in writes] or [0.0]
        errors = dict.fromkeys((DEADLOCK, LOCK_TIMEOUT, OTHER), 0)
        for write in writes:
            if write.error:
                errors[write.error] += 1
        return cls(
            len(writes),
            statistics.median(ms),
            percentile(ms, 0.99),
            max(ms),
            sum(1 for write in writes if write.ms > SLOW),
            errors,
        )


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


def measure_one(
    alias: str, sizes: Sizes, cleanup: str, work: Callable[[list[int]], int] | None
) -> Run:
    """
    Start the live writes and the sampler, warm up, then run `work` (None:
    wait sizes.baseline seconds) and wait for the replicas to catch up. `work`
    gets a one-item list to keep its count of rows deleted in, so that a
    cleanup that fails still says how far it got.
    """
    from django.db import DatabaseError

    stop = threading.Event()
    started_writers = writers(sizes, stop)
    watcher = probe_for(alias)
    sampler = Sampler(probe_for(alias), stop)
    for thread in [*started_writers, sampler]:
        thread.start()
    run = Run(cleanup, 0.0, [], [], behind_unit=watcher.behind_unit)
    try:
        time.sleep(sizes.warm_up)
        before = watcher.counters()
        run.started = time.perf_counter()
        progress = [0]
        if work is None:
            time.sleep(sizes.baseline)
        else:
            try:
                progress[0] = work(progress)
            except DatabaseError as exc:
                run.error = one_line(exc)
        run.seconds = time.perf_counter() - run.started
        run.deleted = progress[0] if not (run.error and cleanup == UNBATCHED) else 0
        run.counters = counter_deltas(before, watcher.counters())
        if watcher.replicas and work is not None:
            position = watcher.position()
            while not watcher.caught_up(position):
                if time.perf_counter() - run.started - run.seconds > CATCH_UP_TIMEOUT:
                    run.caught_up_timed_out = True
                    break
                time.sleep(SAMPLE_EVERY)
            run.caught_up = time.perf_counter() - run.started - run.seconds
    finally:
        stop.set()
        for thread in [*started_writers, sampler]:
            thread.join()
        watcher.close()
        sampler.probe.close()
    end = run.started + run.seconds
    run.writes = sorted(
        (w for t in started_writers for w in t.writes if run.started <= w.started <= end),
        key=lambda write: write.started,
    )
    run.samples = sampler.samples
    return run


def one_line(exc: BaseException) -> str:
    """The error in a line: MySQL's code and message, or the message."""
    args = exc.args
    coded = len(args) == 2 and isinstance(args[0], int)
    text = " ".join((f"{args[0]} {args[1]}" if coded else str(exc)).split())
    return text if len(text) <= 100 else text[:97] + "..."


def measure(alias: str, sizes: Sizes, payload: str, max_ws_rows: int | None = None) -> list[Run]:
    """
    The three runs on `alias`; `max_ws_rows`, if given, is Galera's
    wsrep_max_ws_rows while they run (not while the table is filled).
    """
    from django_sql_sessions.cleanup import delete_expired

    def fill() -> None:
        started = time.perf_counter()
        populate(
            alias,
            sizes.live,
            sizes.expired,
            payload,
            near=sizes.near,
            users=sizes.users,
        )
        say(f"{alias}: filled {sizes.live + sizes.expired:,} rows", started)

    def batched(progress: list[int]) -> int:
        def kept(deleted: int, batches: int, seconds: float) -> None:
            progress[0] = deleted

        return delete_expired(progress=kept).deleted

    def one(cleanup: str, work: Callable[[list[int]], int] | None) -> Run:
        with writeset_rows(alias, max_ws_rows):
            run = measure_one(alias, sizes, cleanup, work)
        say(f"{alias}: {cleanup}", run.started, run.seconds)
        return run

    fill()
    runs = [one(NONE, None), one(BATCHED, batched)]
    fill()
    runs.append(one(UNBATCHED, lambda _progress: unbatched_delete(alias)))
    return runs


def say(what: str, started: float, seconds: float | None = None) -> None:
    took = time.perf_counter() - started if seconds is None else seconds
    print(f"... {what} in {took:,.1f} s", flush=True)


# -- Tables, chart and findings ----------------------------------------------

WRITE_HEADERS = [
    "cleanup",
    "live write",
    "writes",
    "p50 ms",
    "p99 ms",
    "max ms",
    "over 1 s",
    "deadlocks",
    "lock wait timeouts",
    "other errors",
]


def write_rows(runs: Sequence[Run]) -> list[list[report.Cell]]:
    rows: list[list[report.Cell]] = []
    for run in runs:
        for kind in LIVE_WRITES:
            writes = [write for write in run.writes if write.kind == kind]
            if not writes:
                continue
            found = Latencies.of(writes)
            rows.append(
                [
                    run.cleanup,
                    kind,
                    found.writes,
                    f"{found.p50:,.1f}",
                    f"{found.p99:,.1f}",
                    f"{found.max:,.0f}",
                    found.slow,
                    found.errors[DEADLOCK],
                    found.errors[LOCK_TIMEOUT],
                    found.errors[OTHER],
                ]
            )
    return rows


def cleanup_table(runs: Sequence[Run]) -> tuple[list[str], list[list[report.Cell]]]:
    """
    Headers and rows of the cleanups' table: the columns that some run has a
    value for (InnoDB's counters on MariaDB/MySQL, replicas where there are).
    """
    columns: list[tuple[str, Callable[[Run], report.Cell]]] = [
        ("cleanup", lambda run: run.cleanup),
        ("result", result),
        ("rows deleted", lambda run: run.deleted if run.cleanup != NONE else None),
        ("rows/s", lambda run: f"{run.rate:,.0f}" if run.rate else None),
        ("seconds", lambda run: f"{run.seconds:,.1f}"),
        ("lock waiters (max)", lambda run: run.waiting_max()),
        ("lock wait s", lambda run: f"{run.waiting_seconds():,.1f}"),
        ("InnoDB row lock waits", counter("Innodb_row_lock_waits", 1, "{:,.0f}")),
        ("InnoDB row lock wait s", counter("Innodb_row_lock_time", 1e-3, "{:,.1f}")),
        ("replica behind (max)", behind),
        ("replica caught up after s", caught_up),
        ("flow control paused s", counter("wsrep_flow_control_paused_ns", 1e-9, "{:,.1f}")),
        ("replicated MB", counter("wsrep_replicated_bytes", 2**-20, "{:,.1f}")),
    ]
    cells = [[value(run) for _header, value in columns] for run in runs]
    kept = [
        i for i in range(len(columns)) if i < 2 or any(row[i] not in (None, "") for row in cells)
    ]
    return [columns[i][0] for i in kept], [[row[i] for i in kept] for row in cells]


def result(run: Run) -> str:
    if run.cleanup == NONE:
        return "no cleanup"
    return f"failed: {run.error}" if run.error else "done"


def counter(name: str, scale: float, form: str) -> Callable[[Run], report.Cell]:
    def cell(run: Run) -> report.Cell:
        return form.format(run.counters[name] * scale) if name in run.counters else None

    return cell


def behind(run: Run) -> report.Cell:
    value = run.behind_max()
    if value is None:
        return None
    if run.behind_unit == "MB":
        return f"{value:,.1f} MB of WAL"
    return f"{value:,.0f} writeset{'' if value == 1 else 's'}"


def behind_phrase(run: Run) -> str:
    value = run.behind_max() or 0.0
    if run.behind_unit == "MB":
        return f"{value:,.1f} MB of WAL behind"
    return f"{value:,.0f} writeset{'' if value == 1 else 's'} waiting to be applied"


def caught_up(run: Run) -> report.Cell:
    if run.caught_up is None:
        return None
    return f"over {run.caught_up:,.0f}" if run.caught_up_timed_out else f"{run.caught_up:,.1f}"


def live_p99(run: Run) -> float | None:
    """p99 of the saves and logins, the writes every request may make; None if none started."""
    ms = [write.ms for write in run.writes if write.kind != REVOKE]
    return percentile(ms, 0.99) if ms else None


def longest(run: Run) -> Write | None:
    """The longest live write of the run."""
    return max(run.writes, key=lambda write: write.ms, default=None)


def during(run: Run) -> str:
    return {
        NONE: "with no cleanup",
        BATCHED: "during the batched purge",
        UNBATCHED: "during one DELETE",
    }[run.cleanup]


def findings(runs: Sequence[Run]) -> list[str]:
    """What the numbers of one database say, as sentences."""
    by = {run.cleanup: run for run in runs}
    if not {NONE, BATCHED, UNBATCHED} <= by.keys():
        return []
    none, batched, unbatched = by[NONE], by[BATCHED], by[UNBATCHED]
    said = []
    if unbatched.error:
        said.append(
            f"One DELETE failed after {unbatched.seconds:,.1f} s and deleted nothing "
            f"({unbatched.error}); the batched purge deleted {batched.deleted:,} rows "
            f"at {batched.rate:,.0f} a second."
        )
    elif batched.error:
        said.append(
            f"The batched purge failed after {batched.deleted:,} rows "
            f"({batched.error}); one DELETE deleted {unbatched.rate:,.0f} rows a second."
        )
    elif batched.rate and unbatched.rate:
        ratio = unbatched.rate / batched.rate
        faster = (
            f"{ratio:,.1f} times the batched purge's {batched.rate:,.0f}"
            if ratio >= 1
            else f"{1 / ratio:,.1f} times fewer than the batched purge's {batched.rate:,.0f}"
        )
        said.append(
            f"One DELETE deleted {unbatched.rate:,.0f} expired rows a second "
            f"({unbatched.seconds:,.1f} s), {faster} ({batched.seconds:,.1f} s)."
        )
    ordered = [unbatched, batched, none]
    worst = []
    for run in ordered:
        slowest = longest(run)
        if slowest is None:
            worst.append(f"none started {during(run)}")
        else:
            worst.append(f"{slowest.ms:,.0f} ms ({slowest.kind}) {during(run)}")
    said.append("Longest live write: " + ", ".join(worst) + ".")
    slow = [f"{Latencies.of(run.writes).slow:,} {during(run)}" for run in ordered]
    said.append("Live writes over 1 s: " + ", ".join(slow) + ".")
    p99s = []
    for run in ordered:
        p99 = live_p99(run)
        p99s.append(
            f"none started {during(run)}" if p99 is None else f"{p99:,.1f} ms {during(run)}"
        )
    said.append("p99 of the saves and logins: " + ", ".join(p99s) + ".")
    said.append(
        f"Lock waits, sampled every {SAMPLE_EVERY * 1000:.0f} ms: up to "
        f"{unbatched.waiting_max()} at once and {unbatched.waiting_seconds():,.1f} s in all "
        f"during one DELETE, up to {batched.waiting_max()} and "
        f"{batched.waiting_seconds():,.1f} s during the batched purge."
    )
    failed = [
        f"{count:,} {kind}{'' if count == 1 else 's'} {during(run)}"
        for run in (unbatched, batched)
        for kind, count in Latencies.of(run.writes).errors.items()
        if count and kind != OTHER
    ]
    if failed:
        said.append("Live writes that failed: " + ", ".join(failed) + ".")
    if unbatched.caught_up is not None and batched.caught_up is not None:
        said.append(
            f"Replicas: at most {behind_phrase(unbatched)} during one DELETE, "
            f"{behind_phrase(batched)} during the batched purge; all caught up "
            f"{caught_up(unbatched)} s after one DELETE ended and "
            f"{caught_up(batched)} s after the batched purge ended."
        )
    paused = "wsrep_flow_control_paused_ns"
    if paused in unbatched.counters and paused in batched.counters:
        said.append(
            f"Flow control paused the cluster for {unbatched.counters[paused] / 1e9:,.1f} s "
            f"during one DELETE and {batched.counters[paused] / 1e9:,.1f} s during the "
            "batched purge."
        )
    return said


def chart_panels(groups: Mapping[str, Sequence[Run]]) -> dict[str, dict[str, dict[str, float]]]:
    panels: dict[str, dict[str, dict[str, float]]] = {
        "Expired rows deleted per second (higher is faster)": {},
        "p99 of live saves and logins, ms (lower is better)": {},
        "Longest live write, ms (lower is better)": {},
    }
    rates, p99s, longest_writes = panels.values()
    replicas: dict[str, dict[str, float]] = {}
    for name, runs in groups.items():
        rates[name] = {run.cleanup: run.rate for run in runs if run.cleanup != NONE}
        p99s[name] = {run.cleanup: live_p99(run) or 0.0 for run in runs}
        longest_writes[name] = {
            run.cleanup: slowest.ms if (slowest := longest(run)) else 0.0 for run in runs
        }
        found = {run.cleanup: run.caught_up for run in runs if run.caught_up is not None}
        if found:
            replicas[name] = {cleanup: value for cleanup, value in found.items() if value}
    if replicas:
        panels["Seconds until the replicas had applied the cleanup (lower is better)"] = replicas
    return panels


def findings_rst(notes: Mapping[str, Sequence[str]], *, smoke: bool) -> str:
    """The findings by database as an RST list, for the fragment's introduction."""
    parts = [
        f"- {report.escape(caption)}:\n\n"
        + "\n".join(f"  - {report.escape(sentence)}" for sentence in sentences)
        for caption, sentences in notes.items()
    ]
    if smoke:
        parts.insert(
            0,
            "**Smoke-test sizes**: these numbers prove that the benchmark runs, "
            "not how fast anything is.",
        )
    return "\n\n".join(parts)


def fragment_name(names: Sequence[str]) -> str:
    return "cleanup_replicas" if REPLICA_SETUPS & set(names) else "cleanup"


# -- Where it runs ---------------------------------------------------------


def setup_description(alias: str, probe: Probe, max_ws_rows: int | None = None) -> str:
    """
    What the database under test is made of, beyond its server, for the
    caption; `max_ws_rows` is the wsrep_max_ws_rows the runs set, if any.
    """
    if alias == "galera":
        assert isinstance(probe, MariaDBProbe)
        limits = probe.variables(["wsrep_max_ws_rows", "wsrep_max_ws_size"])
        rows = int(limits.get("wsrep_max_ws_rows", "0")) if max_ws_rows is None else max_ws_rows
        size = int(limits.get("wsrep_max_ws_size", "0"))
        return (
            f"{probe.replicas} through HAProxy, wsrep_max_ws_rows "
            f"{rows:,}{' (no limit)' if not rows else ''}, wsrep_max_ws_size {size:,} bytes"
        )
    if probe.replicas and isinstance(probe, PostgresProbe):
        delay = standby_delay()
        late = f", recovery_min_apply_delay {delay}" if delay not in ("", "0") else ""
        return probe.replicas + late
    return probe.replicas


def standby_delay() -> str:
    """clusters/pg-standby.sh's standby's recovery_min_apply_delay, if its variables are set."""
    if not os.environ.get("PG_STANDBY_PORT"):
        return ""
    import psycopg

    with psycopg.connect(
        host=os.environ.get("PG_STANDBY_HOST", "127.0.0.1"),
        port=int(os.environ["PG_STANDBY_PORT"]),
        user=os.environ.get("PG_STANDBY_USER", "postgres"),
        dbname="postgres",
    ) as connection:
        row = connection.execute("SHOW recovery_min_apply_delay").fetchone()
    return str(row[0]) if row else ""


@contextmanager
def writeset_rows(alias: str, rows: int | None) -> Iterator[None]:
    """wsrep_max_ws_rows = `rows` on every Galera node for the run, then as it was."""
    with on_every_node(alias, "wsrep_max_ws_rows", rows):
        yield


@contextmanager
def on_every_node(alias: str, name: str, value: int | None) -> Iterator[None]:
    """The global `name` = `value` on every Galera node, then as it was."""
    if alias != "galera" or value is None:
        yield
        return
    probe = probe_for(alias)
    assert isinstance(probe, MariaDBProbe)
    previous = probe.variables([name])[name]
    probe.set_global(name, str(value))
    try:
        yield
    finally:
        probe.set_global(name, previous)
        probe.close()


# The scripts that start the replica set-ups (see clusters/README.rst).
CLUSTER_SCRIPTS = {"pg_standby": "clusters/pg-standby.sh", "galera": "clusters/galera.sh"}


@contextmanager
def started_clusters(names: Sequence[str]) -> Iterator[None]:
    """
    Start the clusters of the replica set-ups among `names` (the standby
    with no apply delay unless PG_STANDBY_DELAY says otherwise), put their
    settings in the environment, and stop afterwards those that were not
    running at all before.
    """
    root = report.ROOT
    env = {**os.environ, "PG_STANDBY_DELAY": os.environ.get("PG_STANDBY_DELAY", "0")}
    started: list[str] = []
    try:
        for name in names:
            if name not in CLUSTER_SCRIPTS:
                continue
            script = ["bash", str(root / CLUSTER_SCRIPTS[name])]
            status = subprocess.run(
                [*script, "status"], capture_output=True, text=True, env=env, check=False
            )
            # galera.sh: exit status 3 when nothing runs; pg-standby.sh: "stopped" twice.
            stopped = status.returncode == 3 or status.stdout.count(": stopped") == 2
            subprocess.run([*script, "start"], env=env, check=True)
            if stopped:
                started.append(name)
            exports = subprocess.run(
                [*script, "env"], capture_output=True, text=True, env=env, check=True
            ).stdout
            os.environ.update(exported(exports))
        yield
    finally:
        for name in reversed(started):
            subprocess.run(
                ["bash", str(root / CLUSTER_SCRIPTS[name]), "stop"], env=env, check=False
            )


def exported(script_output: str) -> dict[str, str]:
    """The variables of a script's "export NAME=VALUE ..." lines."""
    found = {}
    for line in script_output.splitlines():
        words = shlex.split(line)
        if words[:1] == ["export"]:
            for assignment in words[1:]:
                name, _, value = assignment.partition("=")
                found[name] = value
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--databases",
        default="postgresql,mysql",
        help="postgresql, mysql, pg_standby (clusters/pg-standby.sh), galera (clusters/galera.sh)",
    )
    parser.add_argument("--live", type=int, default=200_000)
    parser.add_argument("--expired", type=int, default=1_000_000)
    parser.add_argument(
        "--baseline", type=float, default=10.0, help="seconds of live writes with no cleanup"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes that prove the pipeline: 2,000 + 3,000"
    )
    parser.add_argument(
        "--mysql-buffer-pool-mb",
        type=int,
        help="set MariaDB/MySQL's innodb_buffer_pool_size for the run (restored after)",
    )
    parser.add_argument(
        "--galera-max-ws-rows",
        type=int,
        help="set wsrep_max_ws_rows on every Galera node for the run (restored after)",
    )
    parser.add_argument(
        "--start-clusters",
        action="store_true",
        help="start the clusters of pg_standby and galera if needed (and stop them after)",
    )
    parser.add_argument("--data-dir", default=tempfile.gettempdir())
    parser.add_argument(
        "--docs",
        metavar="DIR",
        help="also write the RST fragment and SVG chart there (e.g. docs/perf)",
    )
    args = parser.parse_args()
    names = args.databases.split(",")
    if args.start_clusters:
        with started_clusters(names):
            run_benchmark(args, names)
    else:
        run_benchmark(args, names)


def run_benchmark(args: argparse.Namespace, names: list[str]) -> None:
    if args.smoke:
        sizes = Sizes.of(2_000, 3_000, baseline=1.0, warm_up=0.3)
    else:
        sizes = Sizes.of(args.live, args.expired, baseline=args.baseline, warm_up=1.0)
    configure(names, Path(args.data_dir))
    from django_sql_sessions.backends.db import SessionStore

    payload = SessionStore().encode(SESSION)
    for alias in names:
        create_database(alias)
    stamp = report.Stamp.collect(aliases=names)
    print(stamp.text(), end="\n\n", flush=True)
    what = (
        f"{sizes.expired:,} expired among {sizes.live:,} live sessions ({sizes.near:,} of them "
        f"15-minute sessions) of {sizes.users:,} users; live writes meanwhile, per second: "
        + ", ".join(f"{rate:g} {kind}" for kind, rate in LIVE_WRITES.items())
    )
    tables: list[report.Table] = []
    groups: dict[str, list[Run]] = {}
    notes: dict[str, list[str]] = {}
    for alias in names:
        with (
            alias_under_test(alias),
            buffer_pool(alias, args.mysql_buffer_pool_mb),
            # Each Galera node applies every writeset: each needs the pool.
            on_every_node(
                alias,
                "innodb_buffer_pool_size",
                args.mysql_buffer_pool_mb and args.mysql_buffer_pool_mb * 1024 * 1024,
            ),
        ):
            name = describe(alias, stamp.servers.get(alias, ""))
            probe = probe_for(alias)
            try:
                setup = setup_description(alias, probe, args.galera_max_ws_rows)
            finally:
                probe.close()
            caption = f"{name}, {setup}" if setup else name
            runs = measure(alias, sizes, payload, args.galera_max_ws_rows)
        groups[caption] = runs
        headers, rows = cleanup_table(runs)
        found = [
            report.Table(f"{caption}: the cleanups; {what}", headers, rows),
            report.Table(f"{caption}: the live writes, by kind", WRITE_HEADERS, write_rows(runs)),
        ]
        notes[caption] = findings(runs)
        for table in found:
            text = report.text_table(table.headers, table.rows)
            print(table.caption, text, sep="\n", end="\n\n")
        tables += found
        sys.stdout.flush()
    for caption, sentences in notes.items():
        print(caption, *(f"- {sentence}" for sentence in sentences), sep="\n", end="\n\n")
    if args.docs:
        title = f"Cleanup of {sizes.expired:,} expired among {sizes.live:,} live sessions"
        panels = chart_panels(groups)

        def chart(path: Path) -> Path:
            return report.panel_chart(
                path,
                title,
                panels,
                dict(zip(panels, ["rows/s", "ms", "ms", "s"], strict=False)),
                colors={NONE: "#7f7f7f", BATCHED: "#1f77b4", UNBATCHED: "#d62728"},
                labels=True,
            )

        alt = (
            "Bar charts by database: expired rows deleted per second by the batched purge "
            "and by one unbatched DELETE; the p99 of the live saves and logins and the "
            "longest live write during each, and with no cleanup"
        )
        if len(panels) > 3:
            alt += "; the seconds until the replicas had applied each cleanup"
        path = report.write_fragment(
            args.docs,
            fragment_name(names),
            stamp,
            tables,
            chart=chart,
            alt=alt,
            intro=findings_rst(notes, smoke=args.smoke),
        )
        print(f"Wrote {path} and {path.with_suffix('.svg')}")


if __name__ == "__main__":
    main()
