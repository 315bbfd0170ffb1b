from __future__ import annotations

from typing import Any

import pytest
from django.db import connections

from django_sql_sessions import cleanup, dialects
from django_sql_sessions.cleanup import lock_name, single_runner
from django_sql_sessions.storage import session_table
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
    assert (mine.held, theirs) == (True, False)
    with single_runner(per_thread[threaded_alias], "t") as again:
        assert again.held  # released on exit


def taken_by_another_connection(alias: str, table: str) -> bool:
    """Whether another connection (another thread's) gets the cleanup lock now."""
    import threading

    from django.db import connections as per_thread

    seen: list[bool] = []

    def other() -> None:
        try:
            with single_runner(per_thread[alias], table) as theirs:
                seen.append(theirs.held)
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

    monkeypatch.setattr(cleanup, "fetch_one", fake_fetch_one)
    connection = offline_connection()
    with single_runner(connection, "web_sessions") as hold:
        assert hold.held
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


@pytest.fixture
def leased(threaded_alias: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The lease that a Galera cluster gets, on a single server."""
    from django.db import connections as per_thread

    if per_thread[threaded_alias].vendor not in ("mysql", "postgresql"):
        pytest.skip("the lease replaces server locks (Galera); SQLite needs none")
    monkeypatch.setattr(dialects.Dialect, "needs_lease", lambda self, connection: True)
    return threaded_alias


def lease_rows(alias: str) -> list[tuple[str, str]]:
    from django_sql_sessions.models import CleanupLease

    return list(CleanupLease.objects.using(alias).values_list("name", "holder"))


def test_a_held_lease_is_refused_to_another_runner_and_released(leased: str) -> None:
    from django.db import connections as per_thread

    table = session_table()
    with single_runner(per_thread[leased], table) as mine:
        assert mine.held
        ((name, holder),) = lease_rows(leased)
        assert name == lock_name(per_thread[leased], table)
        assert f":{__import__('os').getpid()}:" in holder  # says which runner holds it
        assert not taken_by_another_connection(leased, table)
        assert mine.keep()  # renewed
    assert lease_rows(leased) == []  # released
    assert taken_by_another_connection(leased, table)


def test_an_expired_lease_is_taken_over(leased: str) -> None:
    import datetime

    from django.db import connections as per_thread
    from django.utils import timezone

    from django_sql_sessions.models import CleanupLease

    table = session_table()
    name = lock_name(per_thread[leased], table)
    # A runner that was killed: its lease ran out and was never deleted.
    CleanupLease.objects.using(leased).create(
        name=name, holder="gone", expires_at=timezone.now() - datetime.timedelta(seconds=1)
    )
    with single_runner(per_thread[leased], table) as mine:
        assert mine.held
        assert [holder for _name, holder in lease_rows(leased)] != ["gone"]
    # Not expired: refused.
    CleanupLease.objects.using(leased).create(
        name=name, holder="busy", expires_at=timezone.now() + datetime.timedelta(seconds=60)
    )
    with single_runner(per_thread[leased], table) as refused:
        assert not refused.held
    CleanupLease.objects.using(leased).all().delete()


def test_a_runner_whose_lease_was_taken_over_stops(leased: str) -> None:
    import datetime

    from django.db import connections as per_thread
    from django.utils import timezone

    from django_sql_sessions import cleanup
    from django_sql_sessions.models import CleanupLease, Session

    now = timezone.now()
    Session.objects.bulk_create(
        Session(
            key_hash=f"{n:064x}", data="e30:x", expire_date=now - datetime.timedelta(hours=n + 1)
        )
        for n in range(6)
    )

    def pause(seconds: float) -> None:
        # While this runner sleeps past its lease, another takes it over.
        CleanupLease.objects.using(leased).update(
            holder="other", expires_at=timezone.now() + datetime.timedelta(seconds=60)
        )

    result = cleanup.delete_expired(batch_size=2, now=now, sleep=0.01, pause=pause)
    assert (result.deleted, result.batches, result.finished) == (2, 1, False)
    assert Session.objects.using(leased).count() == 4
    assert lease_rows(leased) == [(lock_name(per_thread[leased], session_table()), "other")]
    CleanupLease.objects.using(leased).all().delete()


def test_galera_batches_fit_a_writeset(monkeypatch: pytest.MonkeyPatch) -> None:
    limits: list[tuple[int, int]] = []

    class Cursor:
        def __enter__(self) -> Cursor:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def execute(self, sql: str) -> None:
            assert sql == "SELECT @@wsrep_max_ws_rows, @@wsrep_max_ws_size"

        def fetchone(self) -> tuple[int, int]:
            return limits[-1]

    connection: Any = type("Connection", (), {"cursor": lambda self: Cursor()})()
    mysql = dialects.DIALECTS["mysql"]
    monkeypatch.setattr(dialects.MySQL, "galera", lambda self, connection: False)
    assert mysql.rows_per_transaction(connection, 4096) is None
    monkeypatch.setattr(dialects.MySQL, "galera", lambda self, connection: True)
    limits.append((0, 2**31 - 1))  # the defaults: no row limit, 2 GB
    by_size = (2**31 - 1) // (1024 * 1024 + 1024)
    assert mysql.rows_per_transaction(connection, 1024 * 1024) == by_size
    limits.append((500, 2**31 - 1))
    assert mysql.rows_per_transaction(connection, 4096) == 500
    limits.append((0, 1000))  # smaller than one row: still one at a time
    assert mysql.rows_per_transaction(connection, 4096) == 1
