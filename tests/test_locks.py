from __future__ import annotations

from typing import Any

import pytest
from django.db import connections

from django_sql_sessions import locks
from django_sql_sessions.locks import lock_name, single_runner
from django_sql_sessions.models import session_table
from tests.mssql_offline import offline_connection


def test_lock_names_fit_mysql_and_differ_per_table() -> None:
    connection = connections["default"]
    first, second = lock_name(connection, "a"), lock_name(connection, "b")
    assert first != second
    assert len(first) <= 64


def test_held_lock_is_refused_to_another_connection(threaded_alias: str) -> None:
    from django.db import connections as per_thread

    if per_thread[threaded_alias].vendor == "sqlite":
        pytest.skip("SQLite needs no lock")
    with single_runner(per_thread[threaded_alias], "t") as mine:
        theirs = taken_by_another_connection(threaded_alias, "t")
    assert (mine, theirs) == (True, False)
    with single_runner(per_thread[threaded_alias], "t") as again:
        assert again  # released on exit


def taken_by_another_connection(alias: str, table: str) -> bool:
    """Whether another connection (another thread's) gets the cleanup lock now."""
    import threading

    from django.db import connections as per_thread

    seen: list[bool] = []

    def other() -> None:
        try:
            with single_runner(per_thread[alias], table) as theirs:
                seen.append(theirs)
        finally:
            per_thread.close_all()

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    return seen == [True]


def test_sql_server_applock(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[tuple[str, Any]] = []

    def fake_fetch_one(connection: Any, statement: Any, **values: Any) -> Any:
        sent.append((statement.format, values))
        return (1,)

    monkeypatch.setattr(locks, "fetch_one", fake_fetch_one)
    connection = offline_connection()
    with single_runner(connection, "web_sessions") as holding:
        assert holding
    (acquire, params), (release, same) = sent
    assert "sp_getapplock @Resource = %s" in acquire
    assert "@LockOwner = 'Session', @LockTimeout = 0" in acquire
    assert release.startswith("EXEC sp_releaseapplock @Resource = %s, @LockOwner = 'Session'")
    assert params == same == {"name": lock_name(connection, "web_sessions")}


def test_a_failed_batch_in_a_callers_transaction_leaves_no_lock(
    threaded_alias: str, monkeypatch: pytest.MonkeyPatch
) -> None:

    from django.db import DatabaseError, transaction
    from django.db import connections as per_thread

    from django_sql_sessions import cleanup

    connection = per_thread[threaded_alias]
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only: elsewhere a failed statement leaves the transaction usable")

    def failing_batch(connection: Any, *args: Any) -> Any:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1/0")  # aborts the caller's transaction

    monkeypatch.setattr(cleanup, "_delete_batch", failing_batch)
    with pytest.raises(DatabaseError), transaction.atomic(using=threaded_alias):
        cleanup.delete_expired()
    assert taken_by_another_connection(threaded_alias, session_table())
