"""
Deleting expired sessions, shared by clear_expired() (and so Django's
clearsessions) and the purgesessions command.

Rows go in batches of at most SQL_SESSIONS_CLEANUP_BATCH_SIZE, oldest expiry
first and ties in key hash order (so rows sharing an expiry never make a
batch larger), walking the expire_date index. In autocommit each batch is
its own short transaction, so live logins wait at most one batch for a lock,
and an interrupted run has committed whole batches only. One runner at a time:
see locks.py.
"""

from __future__ import annotations

import dataclasses
import datetime
import time
from collections.abc import Callable
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone

from django_sql_sessions import conf
from django_sql_sessions.cursors import execute, fetch_one
from django_sql_sessions.dialects import dialect
from django_sql_sessions.keys import HASH_LENGTH
from django_sql_sessions.locks import single_runner
from django_sql_sessions.models import Session
from django_sql_sessions.signals import send_purged
from django_sql_sessions.sql import Statements, to_db_datetime
from django_sql_sessions.storage import plain_table


@dataclasses.dataclass(frozen=True)
class CleanupResult:
    alias: str
    deleted: int
    batches: int
    seconds: float
    # False when the run stopped at its time or batch budget with expired
    # sessions possibly left.
    finished: bool = True
    # True when another runner held the lock, so this one did nothing.
    locked_out: bool = False


# Called after each batch with (rows deleted so far, batches, seconds elapsed).
Progress = Callable[[int, int, float], None]


def count_expired(*, now: datetime.datetime | None = None) -> int:
    """Return how many sessions have expired (expire_date <= now)."""
    connection, sql = plain_table().statements()
    row = fetch_one(
        connection, sql.count_expired, cutoff=to_db_datetime(connection, now or timezone.now())
    )
    assert row is not None
    return int(row[0])


def delete_expired(
    *,
    batch_size: int | None = None,
    now: datetime.datetime | None = None,
    max_seconds: float | None = None,
    max_batches: int | None = None,
    sleep: float = 0.0,
    progress: Progress | None = None,
    clock: Callable[[], float] | None = None,
    pause: Callable[[float], None] | None = None,
    via: str = "api",
) -> CleanupResult:
    """
    Delete sessions that expired at or before ``now``, one batch at a time.

    ``now`` is fixed for the whole run, so sessions that expire while it runs
    are left for the next one and the run always ends. It stops early, between
    batches, once ``max_seconds`` have passed or ``max_batches`` have run, and
    pauses ``sleep`` seconds between batches to leave room for live traffic.
    If another runner holds the cleanup lock, it deletes nothing. ``clock``
    and ``pause`` (time.monotonic and time.sleep) are there for tests.
    ``via`` names the caller in the sessions_purged signal (signals.py),
    sent when the run deleted anything, even if it then failed.
    """
    if batch_size is None:
        batch_size = conf.CLEANUP_BATCH_SIZE.get()
    elif problem := conf.cleanup_batch_size_rule("batch_size", batch_size):
        raise ValueError(problem)
    if max_seconds is not None and not max_seconds > 0:
        raise ValueError(f"max_seconds is {max_seconds!r}; it must be more than 0.")
    if max_batches is not None and max_batches < 1:
        raise ValueError(f"max_batches is {max_batches!r}; it must be 1 or more.")
    if not sleep >= 0:
        raise ValueError(f"sleep is {sleep!r}; it must be 0 or more.")
    clock = clock or time.monotonic
    pause = pause or time.sleep
    session_table = plain_table()
    connection, sql = session_table.statements()
    alias = connection.alias
    cutoff = to_db_datetime(connection, now or timezone.now())
    started = clock()
    deleted = batches = 0
    # A Galera writeset larger than the cluster takes fails at commit.
    if limit := dialect(connection).rows_per_transaction(connection, conf.MAX_SIZE.get()):
        batch_size = min(batch_size, limit)
    try:
        with single_runner(connection, session_table.name) as hold:
            if not hold.held:
                return CleanupResult(alias, 0, 0, clock() - started, False, locked_out=True)
            after = None  # the (expire_date, key_hash) where the last batch ended
            while True:
                if batches and not hold.keep():
                    # The lease ran out (a pause longer than it lasts); another
                    # runner may have taken over.
                    return CleanupResult(
                        alias, deleted, batches, clock() - started, finished=False
                    )
                batch_started = clock()
                batch, end = _delete_batch(connection, sql, cutoff, after, batch_size)
                batches += 1
                deleted += batch
                finished = clock()
                elapsed = finished - started
                if progress:
                    progress(deleted, batches, elapsed)
                if end is None:
                    return CleanupResult(alias, deleted, batches, elapsed)
                after = end
                # Stop when the pause and another batch as long as the last one
                # would overrun the budget.
                next_end = elapsed + sleep + (finished - batch_started)
                out_of_time = max_seconds is not None and next_end > max_seconds
                if out_of_time or (max_batches is not None and batches >= max_batches):
                    return CleanupResult(alias, deleted, batches, elapsed, finished=False)
                if sleep:
                    pause(sleep)
    finally:
        send_purged(Session, count=deleted, seconds=clock() - started, via=via, using=alias)


# No SHA-256 hex digest sorts after it: a range that ends at (cutoff,
# LAST_KEY_HASH) takes every row expiring at the cutoff.
LAST_KEY_HASH = "f" * HASH_LENGTH


def _delete_batch(
    connection: BaseDatabaseWrapper,
    sql: Statements,
    cutoff: Any,
    after: tuple[Any, str] | None,
    size: int,
) -> tuple[int, tuple[Any, str] | None]:
    """
    Delete the next ``size`` expired rows, in (expire_date, key_hash) order.

    Return how many went and the (expire_date, key_hash) of the row where the
    batch ended, or None when fewer than ``size`` rows were left before
    ``cutoff``, which makes it the last batch.
    """
    # After the previous batch's last row, or from the start of the index.
    start = {} if after is None else {"after": after[0], "after_key": after[1]}
    row = fetch_one(
        connection,
        sql.batch_end if after is None else sql.batch_end_after,
        cutoff=cutoff,
        offset=size - 1,
        **start,
    )
    end = (row[0], row[1]) if row else None
    until, until_key = (cutoff, LAST_KEY_HASH) if end is None else end
    deleted = execute(
        connection,
        sql.delete_until if after is None else sql.delete_between,
        until=until,
        until_key=until_key,
        **start,
    )
    return deleted, end
