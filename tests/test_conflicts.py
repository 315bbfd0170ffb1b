"""
Statements the database aborted to resolve a conflict (an InnoDB deadlock, a
lost Galera certification, a PostgreSQL deadlock or serialization failure)
are sent again, a bounded number of times, only outside a caller's
transaction, and counted.

The conflicts are injected through execute_wrapper() as the drivers report
them; tests/cluster/ provokes real ones on a Galera cluster.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.db import OperationalError, connections, transaction

from django_sql_sessions import cursors, dialects
from django_sql_sessions.backends.db import SessionStore

# Each test runs on the db engine and on the cached engine (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("engine")


def conflict(alias: str) -> OperationalError:
    """The django.db error the alias's driver gives a statement rolled back by a conflict."""
    vendor = connections[alias].vendor
    if vendor == "mysql":
        return OperationalError(1213, "Deadlock found when trying to get lock")
    import psycopg

    error = OperationalError("deadlock detected")
    error.__cause__ = psycopg.errors.DeadlockDetected("deadlock detected")
    return error


@pytest.fixture
def server_alias(alias: str) -> str:
    if connections[alias].vendor not in ("postgresql", "mysql"):
        pytest.skip("PostgreSQL and MariaDB/MySQL: SQLite reports no conflicts of this kind")
    return alias


@contextmanager
def rejecting(
    alias: str, matches: Callable[[str], bool], times: int, error: Exception | None = None
) -> Iterator[list[str]]:
    """Fail the first `times` statements that match with `error` (a conflict by default)."""
    rejected: list[str] = []

    def wrapper(execute: Any, statement: str, params: Any, many: bool, context: Any) -> Any:
        if matches(statement) and len(rejected) < times:
            rejected.append(statement)
            raise error or conflict(alias)
        return execute(statement, params, many, context)

    with connections[alias].execute_wrapper(wrapper):
        yield rejected


def is_update(statement: str) -> bool:
    return statement.lstrip().startswith("UPDATE")


def saved_session(data: dict[str, Any]) -> SessionStore:
    store = SessionStore()
    store.update(data)
    store.save()
    return SessionStore(store.session_key)


def test_a_write_rejected_by_conflicts_is_sent_again(server_alias: str) -> None:
    store = saved_session({"n": 1})
    store["n"] = 2
    before = cursors.conflict_retries[server_alias]
    with rejecting(server_alias, is_update, times=2) as rejected:
        store.save()
    assert len(rejected) == 2
    assert cursors.conflict_retries[server_alias] - before == 2
    assert SessionStore(store.session_key).load() == {"n": 2}


def test_retries_are_bounded(server_alias: str) -> None:
    store = saved_session({"n": 1})
    store["n"] = 2
    before = cursors.conflict_retries[server_alias]
    with (
        rejecting(server_alias, is_update, times=100) as rejected,
        pytest.raises(OperationalError),
    ):
        store.save()
    assert len(rejected) == cursors.CONFLICT_RETRIES + 1
    assert cursors.conflict_retries[server_alias] - before == cursors.CONFLICT_RETRIES
    assert SessionStore(store.session_key).load() == {"n": 1}


def test_a_statement_in_the_callers_transaction_is_not_sent_again(server_alias: str) -> None:
    # The database rolled back the caller's earlier statements too; sending
    # this one again would commit it without them.
    store = saved_session({"n": 1})
    store["n"] = 2
    before = cursors.conflict_retries[server_alias]
    with (
        rejecting(server_alias, is_update, times=1) as rejected,
        pytest.raises(OperationalError),
        transaction.atomic(using=server_alias),
    ):
        store.save()
    assert len(rejected) == 1
    assert cursors.conflict_retries[server_alias] == before
    assert SessionStore(store.session_key).load() == {"n": 1}


def test_other_errors_are_not_sent_again(server_alias: str) -> None:
    store = saved_session({"n": 1})
    store["n"] = 2
    timeout = OperationalError(1205, "Lock wait timeout exceeded; try restarting transaction")
    with (
        rejecting(server_alias, is_update, times=1, error=timeout) as rejected,
        pytest.raises(OperationalError, match="Lock wait timeout"),
    ):
        store.save()
    assert len(rejected) == 1


def test_the_locked_merge_starts_again_after_a_conflict(server_alias: str) -> None:
    # A parallel request saved first, so this save merges under a row lock,
    # in a transaction of its own; a conflict there rolls it back whole, and
    # the whole read-merge-write runs again.
    store = saved_session({"mine": 0, "theirs": 0})
    assert store["mine"] == 0  # loaded before the other request saves
    other = SessionStore(store.session_key)
    other["theirs"] = 1
    other.save()
    store["mine"] = 1
    before = cursors.conflict_retries[server_alias]

    def locked_read(statement: str) -> bool:
        return "FOR UPDATE" in statement

    with rejecting(server_alias, locked_read, times=1) as rejected:
        store.save()
    assert len(rejected) == 1
    assert cursors.conflict_retries[server_alias] - before == 1
    assert SessionStore(store.session_key).load() == {"mine": 1, "theirs": 1}


@pytest.mark.parametrize(
    ("vendor", "error", "retried"),
    [
        ("mysql", OperationalError(1213, "Deadlock found"), True),
        ("mysql", OperationalError(9007, "Write conflict"), True),  # TiDB
        ("mysql", OperationalError(1205, "Lock wait timeout exceeded"), False),
        ("mysql", OperationalError(2013, "Lost connection to server during query"), False),
        ("postgresql", "40P01", True),
        ("postgresql", "40001", True),
        ("cockroachdb", "40001", True),
        ("cockroachdb", "40003", False),  # the write may have happened
        ("postgresql", "57P01", False),  # admin_shutdown
        ("sqlite", OperationalError("database is locked"), False),
    ],
)
def test_which_errors_are_conflicts(vendor: str, error: Any, retried: bool) -> None:
    class Connection:
        alias = "x"
        in_atomic_block = False
        autocommit = True

    connection = Connection()
    connection.__dict__[dialects.KEPT] = dialects.for_vendor(vendor)
    if isinstance(error, str):
        sqlstate, error = error, OperationalError("from the server")
        error.__cause__ = type("DriverError", (Exception,), {"sqlstate": sqlstate})()
    sleeps: list[float] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(time, "sleep", sleeps.append)
        assert cursors.retry_after(connection, error, 1) is retried  # type: ignore[arg-type]
    assert len(sleeps) == int(retried)
