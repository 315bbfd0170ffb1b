"""
benchmarks/cleanup.py: the table it fills, what it makes of the servers'
answers, the tables, findings and chart it reports, and a --smoke run.
"""

from __future__ import annotations

import datetime
import hashlib
import importlib.util
import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import docutils.core
import pytest
from django.db import connections
from django.utils import timezone
from docutils import nodes

from benchmarks import cleanup, report
from benchmarks.cleanup import BATCHED, LOGIN, NONE, REVOKE, SAVE, UNBATCHED, Run, Sample, Write
from benchmarks.run import key
from django_sql_sessions.storage import session_table

# -- The table it fills ------------------------------------------------------


def fill(alias: str, live: int, expired: int, near: int, users: int, chunk: int) -> None:
    """Run populate()'s statements, `chunk` rows at a time, into the test session table."""
    connection = connections[alias]
    table = connection.ops.quote_name(session_table())
    total = live + expired
    with connection.cursor() as cursor:
        for first in range(0, total, chunk):
            last = min(first + chunk, total) - 1
            sql = cleanup.insert_sql(
                connection.vendor, table, first, last, live, expired, near, users
            )
            cursor.execute(sql, ["payload"] if users else ["payload", "4711"])


def cleanup_now(**delta: float) -> datetime.datetime:
    return timezone.now() + datetime.timedelta(**delta)


def key_hashes(numbers: range) -> set[str]:
    return {hashlib.sha256(key(i).encode()).hexdigest() for i in numbers}


@pytest.mark.parametrize("chunk", [7, 1000], ids=["chunked", "whole"])
def test_filled_table_has_the_layout(alias: str, chunk: int, settings: Any) -> None:
    connection = connections[alias]
    if connection.vendor not in cleanup.SERIES:
        pytest.skip("the benchmark fills PostgreSQL and MariaDB/MySQL tables only")
    if not settings.USE_TZ:
        # The fill dates rows by the server's clock (NOW()), which is UTC on
        # the benchmark's connections (USE_TZ = True) and not otherwise.
        pytest.skip("the benchmark runs with USE_TZ = True")
    fill(alias, live=13, expired=30, near=4, users=5, chunk=chunk)
    table = connection.ops.quote_name(session_table())
    now = connection.ops.adapt_datetimefield_value(cleanup_now())
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT key_hash, expire_date > %s, user_id FROM {table}", [now])
        rows = cursor.fetchall()
        soon = connection.ops.adapt_datetimefield_value(cleanup_now(minutes=21))
        cursor.execute(
            f"SELECT key_hash FROM {table} WHERE expire_date > %s AND expire_date <= %s",
            [now, soon],
        )
        near = {row[0] for row in cursor.fetchall()}
    live = {row[0] for row in rows if row[1]}
    expired = {row[0] for row in rows if not row[1]}
    # Live sessions key(0..12), the first 4 of them 15-minute ones; expired
    # sessions follow.
    assert live == key_hashes(range(13))
    assert near == key_hashes(range(4))
    assert expired == key_hashes(range(13, 43))
    # Every row belongs to one of 5 users, who each own live and expired ones.
    assert sorted({row[2] for row in rows}) == ["0", "1", "2", "3", "4"]
    assert len({row[2] for row in rows if row[1]}) > 1


def test_near_sessions_are_refreshed_after_a_slow_fill(alias: str, settings: Any) -> None:
    connection = connections[alias]
    if connection.vendor not in cleanup.SERIES:
        pytest.skip("the benchmark fills PostgreSQL and MariaDB/MySQL tables only")
    if not settings.USE_TZ:
        pytest.skip("the benchmark runs with USE_TZ = True")
    fill(alias, live=6, expired=4, near=3, users=2, chunk=100)
    table = connection.ops.quote_name(session_table())
    adapt = connection.ops.adapt_datetimefield_value
    with connection.cursor() as cursor:
        # As if the fill had taken 14 minutes: its near sessions nearly due.
        cursor.execute(
            f"UPDATE {table} SET expire_date = %s WHERE expire_date > %s AND expire_date < %s",
            [adapt(cleanup_now(minutes=1)), adapt(cleanup_now()), adapt(cleanup_now(hours=1))],
        )
        cursor.execute(cleanup.refresh_near_sql(connection.vendor, table))
        cursor.execute(
            f"SELECT key_hash FROM {table} WHERE expire_date > %s AND expire_date <= %s",
            [adapt(cleanup_now(minutes=14)), adapt(cleanup_now(minutes=21))],
        )
        near = {row[0] for row in cursor.fetchall()}
        cursor.execute(
            f"SELECT key_hash FROM {table} WHERE expire_date > %s", [adapt(cleanup_now(days=13))]
        )
        long_lived = {row[0] for row in cursor.fetchall()}
    assert near == key_hashes(range(3))
    assert long_lived == key_hashes(range(3, 6))


def test_a_writer_survives_a_session_deleted_under_it() -> None:
    from django.contrib.sessions.exceptions import SessionInterrupted

    stop = threading.Event()
    writer = cleanup.Writer(
        SAVE, 1000.0, cleanup.Sizes.of(10, 10, baseline=1.0, warm_up=0.1), stop
    )
    calls = []

    def write() -> None:
        calls.append(1)
        if len(calls) == 3:
            stop.set()
        raise SessionInterrupted("gone")

    writer.write_function = lambda: write  # type: ignore[method-assign]
    writer.run()
    assert len(calls) == 3
    assert [w.error for w in writer.writes] == [cleanup.OTHER] * 3


def test_filled_table_without_users_belongs_to_one(alias: str) -> None:
    connection = connections[alias]
    if connection.vendor not in cleanup.SERIES:
        pytest.skip("the benchmark fills PostgreSQL and MariaDB/MySQL tables only")
    fill(alias, live=2, expired=3, near=0, users=0, chunk=100)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT DISTINCT user_id FROM {connection.ops.quote_name(session_table())}"
        )
        assert cursor.fetchall() in ([("4711",)], (("4711",),))


def test_live_rows_are_spread_among_the_expired_ones() -> None:
    # The rule insert_sql() states, in Python: row n is live when the
    # count of live rows up to it moves on.
    live, total = 3, 10
    marks = [(n + 1) * live // total > n * live // total for n in range(total)]
    assert sum(marks) == live
    assert marks != sorted(marks, reverse=True)  # not all at the start
    first_live = [n * live // total for n in range(total) if marks[n]]
    assert first_live == [0, 1, 2]


# -- The servers' answers ----------------------------------------------------


class DriverError(Exception):
    def __init__(self, *args: object, sqlstate: str | None = None) -> None:
        super().__init__(*args)
        self.sqlstate = sqlstate


def wrapped(cause: Exception) -> Exception:
    """As Django raises it: its own class, the driver's error as the cause."""
    error = Exception("wrapped")
    error.__cause__ = cause
    return error


@pytest.mark.parametrize(
    ("cause", "kind"),
    [
        (DriverError("deadlock detected", sqlstate="40P01"), cleanup.DEADLOCK),
        (DriverError(1213, "Deadlock found when trying to get lock"), cleanup.DEADLOCK),
        (DriverError("canceling statement", sqlstate="55P03"), cleanup.LOCK_TIMEOUT),
        (DriverError(1205, "Lock wait timeout exceeded"), cleanup.LOCK_TIMEOUT),
        (DriverError(1180, "wsrep_max_ws_rows exceeded"), cleanup.OTHER),
        (DriverError("no such table", sqlstate="42P01"), cleanup.OTHER),
    ],
)
def test_error_kind(cause: Exception, kind: str) -> None:
    assert cleanup.error_kind(wrapped(cause)) == kind
    assert cleanup.error_kind(cause) == kind


def test_one_line() -> None:
    assert cleanup.one_line(DriverError(1180, "wsrep_max_ws_rows\n exceeded")) == (
        "1180 wsrep_max_ws_rows exceeded"
    )
    assert cleanup.one_line(DriverError("x" * 150)) == "x" * 97 + "..."


def test_status_values_keeps_numbers() -> None:
    rows = [("Innodb_row_lock_waits", "12"), ("wsrep_cluster_status", "Primary"), ("x", None)]
    assert cleanup.status_values(rows) == {"Innodb_row_lock_waits": 12.0}


def test_counter_deltas_sum_the_nodes_but_take_the_longest_pause() -> None:
    waits, paused, committed = (
        "Innodb_row_lock_waits",
        "wsrep_flow_control_paused_ns",
        "wsrep_last_committed",
    )
    before = [{waits: 1, paused: 10, committed: 5}, {waits: 2, paused: 0}]
    after = [{waits: 4, paused: 30, committed: 9}, {waits: 3, paused: 25}]
    # The nodes pause together: the longest pause is the cluster's.
    assert cleanup.counter_deltas(before, after) == {waits: 4.0, paused: 25.0}


def test_exported_reads_the_cluster_scripts_env_output() -> None:
    output = (
        "export PG_PRIMARY_HOST=127.0.0.1 PG_PRIMARY_PORT=5452\n"
        "export GALERA_PASSWORD='a b'\n"
        "\n"
        "not an export\n"
    )
    assert cleanup.exported(output) == {
        "PG_PRIMARY_HOST": "127.0.0.1",
        "PG_PRIMARY_PORT": "5452",
        "GALERA_PASSWORD": "a b",
    }


def test_node_ports() -> None:
    assert cleanup.node_ports("14301, 14302,14303") == [14301, 14302, 14303]
    with pytest.raises(SystemExit, match="GALERA_NODE_PORTS"):
        cleanup.node_ports("")


# -- What it reports ---------------------------------------------------------


def run(
    name: str,
    writes: Sequence[tuple[str, float, float, str]] = (),
    *,
    deleted: int = 0,
    seconds: float = 10.0,
    error: str = "",
    samples: Sequence[tuple[float, int, float | None]] = (),
    counters: dict[str, float] | None = None,
    caught_up: float | None = None,
    behind_unit: str = "",
) -> Run:
    return Run(
        name,
        seconds,
        [Write(kind, started, ms, write_error) for kind, started, ms, write_error in writes],
        [Sample(at, waiting, behind) for at, waiting, behind in samples],
        deleted=deleted,
        error=error,
        counters=counters or {},
        caught_up=caught_up,
        behind_unit=behind_unit,
        started=100.0,
    )


def runs() -> list[Run]:
    return [
        run(NONE, [(SAVE, 101, 2.0, ""), (LOGIN, 102, 1.0, ""), (REVOKE, 103, 4.0, "")]),
        run(
            BATCHED,
            [(SAVE, 101, 3.0, ""), (SAVE, 102, 5.0, ""), (REVOKE, 103, 150.0, "")],
            deleted=1000,
            seconds=4.0,
            samples=[(100, 0, 0.5), (101, 1, 2.0), (102, 0, 0.0)],
            caught_up=0.2,
            behind_unit="MB",
        ),
        run(
            UNBATCHED,
            [(SAVE, 101, 2.0, ""), (REVOKE, 101, 1900.0, ""), (REVOKE, 102, 50.0, "deadlock")],
            deleted=1000,
            seconds=1.0,
            samples=[(100.0, 1, 10.0), (100.5, 2, 30.0), (101.0, 1, 0.0)],
            caught_up=3.0,
            behind_unit="MB",
        ),
    ]


def test_run_measures() -> None:
    batched, unbatched = runs()[1:]
    assert batched.rate == 250.0
    assert unbatched.waiting_max() == 2
    # Each sample's waiters times the time since the sample before.
    assert unbatched.waiting_seconds() == pytest.approx(2 * 0.5 + 1 * 0.5)
    assert unbatched.behind_max() == 30.0
    assert run(NONE).behind_max() is None
    failed = run(UNBATCHED, deleted=5, error="1180 wsrep_max_ws_rows exceeded")
    assert failed.rate == 0.0


def test_latencies() -> None:
    found = cleanup.Latencies.of(runs()[2].writes)
    assert (found.writes, found.max, found.slow) == (3, 1900.0, 1)
    assert found.errors == {cleanup.DEADLOCK: 1, cleanup.LOCK_TIMEOUT: 0, cleanup.OTHER: 0}


def test_cleanup_table_leaves_out_what_no_run_has() -> None:
    headers, rows = cleanup.cleanup_table(runs())
    assert headers == [
        "cleanup",
        "result",
        "rows deleted",
        "rows/s",
        "seconds",
        "lock waiters (max)",
        "lock wait s",
        "replica behind (max)",
        "replica caught up after s",
    ]
    assert rows[0] == [NONE, "no cleanup", None, None, "10.0", 0, "0.0", None, None]
    assert rows[2] == [UNBATCHED, "done", 1000, "1,000", "1.0", 2, "1.5", "30.0 MB of WAL", "3.0"]


def test_cleanup_table_with_innodb_and_galera_counters() -> None:
    galera = run(
        UNBATCHED,
        error="1180 wsrep_max_ws_rows exceeded",
        counters={
            "Innodb_row_lock_waits": 3,
            "Innodb_row_lock_time": 2500,
            "wsrep_flow_control_paused_ns": 1.5e9,
            "wsrep_replicated_bytes": 3 * 2**20,
        },
        samples=[(100, 0, 12.0)],
        caught_up=400.0,
        behind_unit="writesets",
    )
    galera.caught_up_timed_out = True
    headers, (row,) = cleanup.cleanup_table([galera])
    cells = dict(zip(headers, row, strict=True))
    assert cells["result"] == "failed: 1180 wsrep_max_ws_rows exceeded"
    assert cells["InnoDB row lock waits"] == "3"
    assert cells["InnoDB row lock wait s"] == "2.5"
    assert cells["flow control paused s"] == "1.5"
    assert cells["replicated MB"] == "3.0"
    assert cells["replica behind (max)"] == "12 writesets"
    assert cells["replica caught up after s"] == "over 400"


def test_write_rows_by_cleanup_and_kind() -> None:
    rows = cleanup.write_rows(runs())
    assert [row[:3] for row in rows] == [
        [NONE, SAVE, 1],
        [NONE, LOGIN, 1],
        [NONE, REVOKE, 1],
        [BATCHED, SAVE, 2],
        [BATCHED, REVOKE, 1],
        [UNBATCHED, SAVE, 1],
        [UNBATCHED, REVOKE, 2],
    ]
    assert rows[-1][3:] == ["975.0", "1,900.0", "1,900", 1, 1, 0, 0]
    assert all(len(row) == len(cleanup.WRITE_HEADERS) for row in rows)


def test_findings() -> None:
    said = cleanup.findings(runs())
    assert said[0] == (
        "One DELETE deleted 1,000 expired rows a second (1.0 s), 4.0 times the batched "
        "purge's 250 (4.0 s)."
    )
    assert said[1] == (
        "Longest live write: 1,900 ms (revoke a user's sessions) during one DELETE, 150 ms "
        "(revoke a user's sessions) during the batched purge, 4 ms (revoke a user's "
        "sessions) with no cleanup."
    )
    assert said[2] == (
        "Live writes over 1 s: 1 during one DELETE, 0 during the batched purge, 0 with no cleanup."
    )
    # Saves and logins only: the revokes are left out.
    assert said[3] == (
        "p99 of the saves and logins: 2.0 ms during one DELETE, 5.0 ms during the batched "
        "purge, 2.0 ms with no cleanup."
    )
    assert "up to 2 at once and 1.5 s in all during one DELETE" in said[4]
    assert said[5] == "Live writes that failed: 1 deadlock during one DELETE."
    assert said[6] == (
        "Replicas: at most 30.0 MB of WAL behind during one DELETE, 2.0 MB of WAL behind "
        "during the batched purge; all caught up 3.0 s after one DELETE ended and 0.2 s "
        "after the batched purge ended."
    )


def test_findings_when_one_delete_fails() -> None:
    found = runs()
    found[2] = run(UNBATCHED, error="1180 wsrep_max_ws_rows exceeded", seconds=2.5)
    said = cleanup.findings(found)
    assert said[0] == (
        "One DELETE failed after 2.5 s and deleted nothing (1180 wsrep_max_ws_rows "
        "exceeded); the batched purge deleted 1,000 rows at 250 a second."
    )
    assert said[1].startswith("Longest live write: none started during one DELETE, 150 ms")
    assert said[3].startswith("p99 of the saves and logins: none started during one DELETE")


def test_chart_panels() -> None:
    panels = cleanup.chart_panels({"PostgreSQL 15": runs()})
    rates, p99s, longest, replicas = panels.values()
    assert rates == {"PostgreSQL 15": {BATCHED: 250.0, UNBATCHED: 1000.0}}
    assert p99s["PostgreSQL 15"] == {NONE: 2.0, BATCHED: 5.0, UNBATCHED: 2.0}
    assert longest["PostgreSQL 15"] == {NONE: 4.0, BATCHED: 150.0, UNBATCHED: 1900.0}
    assert replicas == {"PostgreSQL 15": {BATCHED: 0.2, UNBATCHED: 3.0}}
    no_replicas = [run(NONE), run(BATCHED, deleted=1), run(UNBATCHED, deleted=1)]
    assert len(cleanup.chart_panels({"MariaDB": no_replicas})) == 3


def test_fragment_name() -> None:
    assert cleanup.fragment_name(["postgresql", "mysql"]) == "cleanup"
    assert cleanup.fragment_name(["pg_standby", "galera"]) == "cleanup_replicas"


def render(text: str) -> nodes.document:
    return docutils.core.publish_doctree(
        text, settings_overrides={"halt_level": 2, "report_level": 2}
    )


def test_fragment_with_the_findings_renders(tmp_path: Path) -> None:
    headers, rows = cleanup.cleanup_table(runs())
    notes = {"PostgreSQL 15.20, 1 streaming standby": cleanup.findings(runs())}
    stamp = report.Stamp.collect(command="python benchmarks/cleanup.py --smoke")
    path = report.write_fragment(
        tmp_path,
        "cleanup",
        stamp,
        [
            report.Table("the cleanups", headers, rows),
            report.Table("the live writes", cleanup.WRITE_HEADERS, cleanup.write_rows(runs())),
        ],
        intro=cleanup.findings_rst(notes, smoke=True),
    )
    document = render(path.read_text(encoding="utf-8"))
    text = document.astext()
    assert "Smoke-test sizes: these numbers prove" in text
    items = [item.astext() for item in document.findall(nodes.list_item)]
    assert items[0].startswith("PostgreSQL 15.20, 1 streaming standby:")
    assert items[1] == cleanup.findings(runs())[0]
    assert len(list(document.findall(nodes.table))) == 2


def test_regenerate_runs_it_at_the_documented_sizes() -> None:
    from benchmarks import regenerate

    full = regenerate.commands(smoke=False, variants=False, replicas=True)
    cleanups = [command for command in full if command[0] == "cleanup.py"]
    assert cleanups == [
        [
            *["cleanup.py", "--databases", "postgresql,mysql", "--live", "200000"],
            *["--expired", "1000000", "--mysql-buffer-pool-mb", "1024"],
        ],
        [
            *["cleanup.py", "--databases", "pg_standby,galera", "--start-clusters"],
            *["--live", "200000", "--expired", "1000000", "--mysql-buffer-pool-mb", "1024"],
        ],
    ]
    smoke = regenerate.commands(smoke=True, variants=False)
    assert [c for c in smoke if c[0] == "cleanup.py"] == [
        ["cleanup.py", "--databases", "postgresql,mysql", "--smoke"]
    ]


# -- A smoke run -------------------------------------------------------------

SERVERS = {"postgresql": "POSTGRES_HOST", "mysql": "MYSQL_HOST"}


@pytest.mark.parametrize("database", list(SERVERS))
def test_smoke_run(database: str, tmp_path: Path) -> None:
    """The whole benchmark at --smoke sizes, in its own database: a few seconds."""
    if not os.environ.get(SERVERS[database]):
        pytest.skip(f"{database} not configured: {SERVERS[database]} is not set")
    name = f"bench_cleanup_smoke_{os.getpid()}"
    command = [sys.executable, "benchmarks/cleanup.py", "--smoke", "--databases", database]
    charts = importlib.util.find_spec("matplotlib") is not None
    if charts:
        command += ["--docs", str(tmp_path)]
    env = {**os.environ, "SQL_SESSIONS_BENCH_DATABASE": name}
    try:
        done = subprocess.run(
            command,
            cwd=report.ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        drop_database(database, name)
    assert done.returncode == 0, done.stderr
    for line in [f"... {database}: {UNBATCHED} in", "the live writes, by kind", "- One DELETE"]:
        assert line in done.stdout
    if charts:
        document = render((tmp_path / "cleanup.rst").read_text(encoding="utf-8"))
        assert "Smoke-test sizes" in document.astext()
        assert (tmp_path / "cleanup.svg").is_file()


def drop_database(database: str, name: str) -> None:
    if database == "postgresql":
        import psycopg

        with psycopg.connect(
            host=os.environ["POSTGRES_HOST"],
            port=int(os.environ.get("POSTGRES_PORT", "5432")),
            user=os.environ.get("POSTGRES_USER", ""),
            password=os.environ.get("POSTGRES_PASSWORD", ""),
            dbname="postgres",
            autocommit=True,
        ) as connection:
            connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        return
    import MySQLdb

    connection = MySQLdb.connect(
        host=os.environ["MYSQL_HOST"],
        port=int(os.environ.get("MYSQL_PORT", "3306")),
        user=os.environ.get("MYSQL_USER", ""),
        password=os.environ.get("MYSQL_PASSWORD", ""),
    )
    try:
        connection.cursor().execute(f"DROP DATABASE IF EXISTS {name}")
    finally:
        connection.close()
