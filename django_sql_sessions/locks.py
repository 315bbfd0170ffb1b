"""
One cleanup at a time across every process and node that shares the table:
the database's own lock, tied to the connection (or, inside atomic(), the
transaction), so a killed runner leaves nothing behind; a lease row where
that lock holds on one node only (Galera, CockroachDB). See docs/deployment.rst,
"Scheduling the cleanup", and docs/scaling.rst.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import logging
import os
import secrets
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.db import DatabaseError
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone

from django_sql_sessions.cursors import execute, fetch_one
from django_sql_sessions.dialects import dialect
from django_sql_sessions.models import CleanupLease
from django_sql_sessions.sql import to_db_datetime

logger = logging.getLogger("django_sql_sessions")


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
