"""
One cleanup at a time across every process and node that shares the table.

The lock is the database's own, taken without waiting and tied to the
connection's session: PostgreSQL's advisory locks, MySQL/MariaDB's GET_LOCK
and SQL Server's sp_getapplock all go away with the connection, so a runner
that is killed leaves nothing behind. Inside a caller's atomic() block on
PostgreSQL the lock belongs to the transaction instead, so a batch that fails
there cannot leave it held. SQLite needs none: one file, one writer at a time.

Session-level locks do not mix with a transaction-mode pooler (PgBouncer's
pool_mode = transaction): the lock stays on whichever server connection took
it. Run the cleanup over a direct or session-mode connection there.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import DatabaseError
from django.db.backends.base.base import BaseDatabaseWrapper

from django_sql_sessions.sql import Statement, fetch_one

logger = logging.getLogger("django_sql_sessions")


def lock_name(connection: BaseDatabaseWrapper, table: str) -> str:
    # GET_LOCK names are server-wide and at most 64 characters, so the
    # database and table are folded into a digest.
    digest = hashlib.sha256(f"{connection.settings_dict['NAME']}.{table}".encode()).hexdigest()
    return f"django_sql_sessions.cleanup.{digest[:32]}"


# (acquire, release) by vendor: each acquire returns one row, true when this
# connection now holds the lock named %(name)s (a bigint key on PostgreSQL).
_SESSION_LOCKS = {
    "postgresql": (
        Statement.of("SELECT pg_try_advisory_lock(%(name)s)"),
        Statement.of("SELECT pg_advisory_unlock(%(name)s)"),
    ),
    "mysql": (
        Statement.of("SELECT GET_LOCK(%(name)s, 0)"),
        Statement.of("SELECT RELEASE_LOCK(%(name)s)"),
    ),
    "microsoft": (
        Statement.of(
            "DECLARE @result int; EXEC @result = sp_getapplock @Resource = %(name)s, "
            "@LockMode = 'Exclusive', @LockOwner = 'Session', @LockTimeout = 0; "
            "SELECT CASE WHEN @result >= 0 THEN 1 ELSE 0 END"
        ),
        Statement.of(
            "EXEC sp_releaseapplock @Resource = %(name)s, @LockOwner = 'Session'; SELECT 1"
        ),
    ),
}
# Inside a caller's transaction on PostgreSQL: see single_runner().
_PG_TRANSACTION_LOCK = Statement.of("SELECT pg_try_advisory_xact_lock(%(name)s)")


@contextmanager
def single_runner(connection: BaseDatabaseWrapper, table: str) -> Iterator[bool]:
    """Yield whether this connection holds the cleanup lock for ``table``."""
    vendor = connection.vendor
    if vendor == "sqlite":
        yield True
        return
    name: object = lock_name(connection, table)
    if vendor == "postgresql":
        name = _pg_key(str(name))
        if connection.in_atomic_block:
            # Inside a caller's transaction, a lock tied to the transaction: a
            # failed batch aborts the transaction, after which the unlock below
            # could not run and a session lock would outlive the run on that
            # connection. This one ends with the transaction, whatever happens.
            row = fetch_one(connection, _PG_TRANSACTION_LOCK, name=name)
            yield bool(row and row[0])
            return
    acquire, release = _SESSION_LOCKS[vendor]
    row = fetch_one(connection, acquire, name=name)
    if not row or not row[0]:
        yield False
        return
    try:
        yield True
    finally:
        try:
            fetch_one(connection, release, name=name)
        except DatabaseError:
            # The connection is gone, and the server dropped the lock with it.
            logger.warning("Could not release the session cleanup lock", exc_info=True)


def _pg_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
