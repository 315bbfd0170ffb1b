"""
Deleting expired sessions, shared by clear_expired() (and so Django's
clearsessions) and the purgesessions command.

Rows go in batches of at most SQL_SESSIONS_CLEANUP_BATCH_SIZE, oldest expiry
first. In autocommit each batch is its own short transaction, so live logins
wait at most one batch for a lock, and an interrupted run has committed whole
batches only.
"""

from __future__ import annotations

import dataclasses
import datetime

from django.db import connections
from django.utils import timezone

from .conf import batch_size_problem, cleanup_batch_size, db_alias
from .sql import run, statements


@dataclasses.dataclass(frozen=True)
class CleanupResult:
    alias: str
    deleted: int
    batches: int


def count_expired(*, now: datetime.datetime | None = None) -> int:
    """Return how many sessions have expired (expire_date <= now)."""
    connection = connections[db_alias()]
    cutoff = connection.ops.adapt_datetimefield_value(now or timezone.now())
    _rowcount, (count,) = run(
        connection, statements(connection).count_expired, [cutoff], fetch=True
    )
    return int(count)


def delete_expired(
    *, batch_size: int | None = None, now: datetime.datetime | None = None
) -> CleanupResult:
    """
    Delete every session that expired at or before ``now``.

    ``now`` is fixed for the whole run, so sessions that expire while it runs
    are left for the next one and the run always ends.
    """
    alias = db_alias()
    connection = connections[alias]
    if batch_size is None:
        batch_size = cleanup_batch_size()
    elif problem := batch_size_problem(batch_size, "batch_size"):
        raise ValueError(problem)
    sql = statements(connection).delete_expired_batch
    cutoff = connection.ops.adapt_datetimefield_value(now or timezone.now())
    deleted = batches = 0
    while True:
        batch, _row = run(connection, sql, [cutoff, batch_size])
        batches += 1
        deleted += batch
        if batch < batch_size:
            return CleanupResult(alias=alias, deleted=deleted, batches=batches)
