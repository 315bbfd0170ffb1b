"""
Deleting expired sessions in batches along the expiry index, one runner at a
time (locks.py), for clear_expired() and purgesessions (docs/design.rst, "The
cleanup").
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
    finished: bool = True  # False: stopped at its time or batch budget
    locked_out: bool = False  # another runner held the lock


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
    Delete sessions that expired at or before ``now`` (fixed for the run, so
    it always ends), one batch at a time, pausing ``sleep`` seconds between
    batches and stopping between them after ``max_seconds`` or
    ``max_batches``. If another runner holds the lock, it deletes nothing.
    ``via`` names the caller in the sessions_purged signal; ``clock`` and
    ``pause`` are for tests.
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
    if limit := dialect(connection).rows_per_transaction(connection, conf.MAX_SIZE.get()):
        batch_size = min(batch_size, limit)
    try:
        with single_runner(connection, session_table.name) as hold:
            if not hold.held:
                return CleanupResult(alias, 0, 0, clock() - started, False, locked_out=True)
            after = None  # the (expire_date, key_hash) where the last batch ended
            while True:
                if batches and not hold.keep():  # the lease ran out: another may run
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
                # Would the pause and another batch like the last overrun the budget?
                next_end = elapsed + sleep + (finished - batch_started)
                out_of_time = max_seconds is not None and next_end > max_seconds
                if out_of_time or (max_batches is not None and batches >= max_batches):
                    return CleanupResult(alias, deleted, batches, elapsed, finished=False)
                if sleep:
                    pause(sleep)
    finally:
        send_purged(Session, count=deleted, seconds=clock() - started, via=via, using=alias)


# No digest sorts after it: a range to (cutoff, LAST_KEY_HASH) takes all at cutoff.
LAST_KEY_HASH = "f" * HASH_LENGTH


def _delete_batch(
    connection: BaseDatabaseWrapper,
    sql: Statements,
    cutoff: Any,
    after: tuple[Any, str] | None,
    size: int,
) -> tuple[int, tuple[Any, str] | None]:
    """
    Delete the next ``size`` expired rows, in (expire_date, key_hash) order:
    how many went and the row where the batch ended, None for the last batch.
    """
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
