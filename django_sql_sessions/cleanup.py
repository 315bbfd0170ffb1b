"""
Deleting expired sessions in batches along the expiry index, for
clear_expired(), purgesessions and, without cron, about one request in
SQL_SESSIONS_GC_FREQUENCY (docs/design.rst, "The cleanup"); one runner at a
time across every process and node, by the database's own lock tied to the
connection (or, inside atomic(), the transaction), so a killed runner leaves
nothing behind, or by a lease row where that lock holds on one node only
(docs/deployment.rst, "Scheduling the cleanup"; docs/scaling.rst).
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import logging
import os
import random
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.db import DatabaseError, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone

from django_sql_sessions import conf
from django_sql_sessions.cursors import execute, fetch_one
from django_sql_sessions.dialects import dialect
from django_sql_sessions.keys import HASH_LENGTH
from django_sql_sessions.models import CleanupLease, Session
from django_sql_sessions.signals import send_purged
from django_sql_sessions.sql import Statements, to_db_datetime
from django_sql_sessions.storage import plain_table

logger = logging.getLogger("django_sql_sessions")


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
    clock: Callable[[], float] = time.monotonic,
    pause: Callable[[float], None] = time.sleep,
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


def lock_name(connection: BaseDatabaseWrapper, table: str) -> str:
    # GET_LOCK names are server-wide and at most 64 characters, so the
    # database and table are folded into a digest.
    digest = hashlib.sha256(f"{connection.settings_dict['NAME']}.{table}".encode()).hexdigest()
    return f"django_sql_sessions.cleanup.{digest[:32]}"


@dataclasses.dataclass(frozen=True)
class Hold:
    """Whether this runner holds the cleanup lock, and how it keeps holding it."""

    held: bool
    # Before each batch after the first: whether it still holds it (a lease is renewed).
    keep: Callable[[], bool] = lambda: True


NOT_HELD = Hold(False)


@contextmanager
def single_runner(connection: BaseDatabaseWrapper, table: str) -> Iterator[Hold]:
    """Yield whether this connection holds the cleanup lock for ``table``."""
    chosen = dialect(connection)
    if chosen.session_lock is None:  # one writer at a time
        yield Hold(True)
        return
    if chosen.needs_lease(connection):
        with _lease(connection, lock_name(connection, table)) as hold:
            yield hold
        return
    name = chosen.lock_key(lock_name(connection, table))
    if connection.in_atomic_block and chosen.transaction_lock:
        # A failed batch aborts the caller's transaction, after which no
        # unlock could run: this lock ends with the transaction.
        row = fetch_one(connection, chosen.transaction_lock, name=name)
        yield Hold(bool(row and row[0]))
        return
    acquire, release = chosen.session_lock
    row = fetch_one(connection, acquire, name=name)
    if not row or not row[0]:
        yield NOT_HELD
        return
    try:
        yield Hold(True)
    finally:
        try:
            fetch_one(connection, release, name=name)
        except DatabaseError:
            # The connection is gone, and the server dropped the lock with it.
            logger.warning("Could not release the session cleanup lock", exc_info=True)


# Longer than any batch takes; short enough that a killed runner's lease
# does not hold up the next run for long.
LEASE_SECONDS = 60


@contextmanager
def _lease(connection: BaseDatabaseWrapper, name: str) -> Iterator[Hold]:
    take, insert, renew, release = dialect(connection).lease_statements(
        connection.ops.quote_name(CleanupLease._meta.db_table)
    )
    holder = f"{socket.gethostname()[:24]}:{os.getpid()}:{secrets.token_hex(8)}"

    def times() -> dict[str, object]:
        now = timezone.now()
        until = now + datetime.timedelta(seconds=LEASE_SECONDS)
        return {"now": to_db_datetime(connection, now), "until": to_db_datetime(connection, until)}

    def keep() -> bool:
        if execute(connection, renew, name=name, holder=holder, **times()):
            return True
        logger.warning("The session cleanup lease %s expired and was not renewed", name)
        return False

    at = times()
    taken = execute(connection, take, name=name, holder=holder, **at) or execute(
        connection, insert, name=name, holder=holder, until=at["until"]
    )
    if not taken:
        yield NOT_HELD
        return
    try:
        yield Hold(True, keep)
    finally:
        try:
            execute(connection, release, name=name, holder=holder)
        except DatabaseError:
            logger.warning(
                "Could not release the session cleanup lease; it expires by itself",
                exc_info=True,
            )


# Cleanup without cron: a batch after about one response in
# SQL_SESSIONS_GC_FREQUENCY (request_finished), never raising into the request.
class GarbageCollector:
    def __init__(self, draw: Callable[[], float] = random.random) -> None:
        self.draw = draw  # tests inject a deterministic one
        self.running = threading.Lock()

    def __call__(self, sender: Any = None, **kwargs: Any) -> None:
        try:
            frequency = conf.GC_FREQUENCY.get()
            if not frequency or self.draw() * frequency >= 1:
                return
            if not self.running.acquire(blocking=False):
                return
            try:
                self.collect()
            finally:
                self.running.release()
        except Exception:
            logger.exception("Expired-session garbage collection failed")

    def collect(self) -> None:
        connection = connections[conf.DB_ALIAS.get()]
        was_open = connection.connection is not None
        try:
            delete_expired(max_batches=1, via="garbage_collection")
        finally:  # Django closed (or kept) the request's connection already
            if not was_open:
                connection.close()


collector = GarbageCollector()
