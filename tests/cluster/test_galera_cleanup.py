"""
One cleanup at a time across the cluster: a cleanup started on one node
keeps a cleanup started on another from deleting anything.
"""

from __future__ import annotations

import datetime
import subprocess
import sys
import threading
from typing import Any

from django.db import connections
from django.utils import timezone

from django_sql_sessions.cleanup import CleanupResult, delete_expired
from django_sql_sessions.models import Session
from django_sql_sessions.sql import to_db_datetime
from django_sql_sessions.storage import session_table
from tests.cluster import galera as cluster

LIVE = 20
EXPIRED = 3000
BATCH = 500


def test_a_cleanup_on_one_node_locks_out_a_cleanup_on_another(
    galera: str, settings: Any, report: Any
) -> None:
    now = timezone.now()
    settings.SQL_SESSIONS_DB_ALIAS = cluster.node_alias(1)
    Session.objects.bulk_create(
        Session(
            key_hash=f"{i:064x}",
            data="e30:x",
            expire_date=now + datetime.timedelta(minutes=i + 1 - EXPIRED),
        )
        for i in range(LIVE + EXPIRED)
    )
    table = session_table()

    def remaining(alias: str) -> tuple[int, int]:
        """(expired, live) rows, as the whole cluster has them."""
        cutoff = to_db_datetime(connections[alias], now)
        [(expired, live)] = cluster.causal_query(
            alias,
            f"SELECT SUM(expire_date <= %s), SUM(expire_date > %s) FROM `{table}`",
            [cutoff, cutoff],
        )
        return int(expired), int(live)

    assert remaining(cluster.node_alias(2)) == (EXPIRED, LIVE)

    # The first runner, on node 1, stops after its first batch until the
    # second has run.
    first_batch_done, second_done = threading.Event(), threading.Event()
    results: dict[str, CleanupResult] = {}

    def wait_after_first_batch(_deleted: int, batches: int, _elapsed: float) -> None:
        if batches == 1:
            first_batch_done.set()
            second_done.wait(60)

    def first() -> None:
        try:
            results["first"] = delete_expired(
                batch_size=BATCH, now=now, progress=wait_after_first_batch
            )
        finally:
            connections.close_all()

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert first_batch_done.wait(60)
        # The second, on node 2: the command a cron job on another machine
        # runs, in its own process.
        second = subprocess.run(
            [sys.executable, "-m", "django", "purgesessions"],
            env=cluster.subprocess_env(SQL_SESSIONS_TEST_DB_ALIAS=cluster.node_alias(2)),
            cwd=cluster.ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        after_second = remaining(cluster.node_alias(1))
    finally:
        second_done.set()
        thread.join(60)
    report(
        f"cleanup: node 1 deleted {BATCH} rows and paused; purgesessions on node 2 then said "
        f"{second.stdout.strip()!r}; {after_second[0]} expired rows were left"
    )
    assert second.returncode == 0, second.stdout + second.stderr
    # The second deleted nothing and said so; the first did all the work.
    assert after_second == (EXPIRED - BATCH, LIVE)
    assert "already running" in second.stdout
    assert not results["first"].locked_out
    assert results["first"].deleted == EXPIRED
    assert remaining(cluster.node_alias(3)) == (0, LIVE)
