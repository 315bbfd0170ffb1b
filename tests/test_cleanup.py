from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.utils import timezone

from django_sql_sessions import cursors
from django_sql_sessions.cleanup import CleanupResult, count_expired, delete_expired
from django_sql_sessions.models import Session
from tests.counting import count_statements


def populate(live: int, expired: int, *, now: datetime.datetime) -> None:
    expire_dates = [now + datetime.timedelta(minutes=i + 1) for i in range(live)] + [
        now - datetime.timedelta(minutes=i) for i in range(expired)
    ]
    Session.objects.bulk_create(
        Session(key_hash=f"{i:064x}", data="e30:x", expire_date=expire_date)
        for i, expire_date in enumerate(expire_dates)
    )


def test_deletes_expired_rows_in_batches_and_keeps_live_ones(alias: str) -> None:
    now = timezone.now()
    populate(live=3, expired=7, now=now)
    assert count_expired(now=now) == 7

    connections[alias].close()  # a new connection, which asks whether it is Galera
    with count_statements(alias) as statements:
        result = delete_expired(batch_size=3, now=now)
    assert (result.alias, result.deleted, result.batches) == (alias, 7, 3)
    # A SELECT that finds where the batch ends and a DELETE of that range,
    # plus taking and releasing the lock on servers, and on MariaDB/MySQL
    # asking (once per connection) whether the server is a Galera node.
    locking = {"sqlite": 0, "mysql": 3}.get(connections[alias].vendor, 2)
    assert statements.count == 3 * 2 + locking
    assert Session.objects.count() == 3
    assert count_expired(now=now) == 0


def test_exact_multiple_of_the_batch_size_needs_one_more_empty_batch(alias: str) -> None:
    now = timezone.now()
    populate(live=1, expired=4, now=now)
    result = delete_expired(batch_size=2, now=now)
    assert (result.deleted, result.batches) == (4, 3)


def test_a_row_expiring_exactly_now_is_deleted(alias: str) -> None:
    now = timezone.now()
    Session.objects.create(key_hash="a" * 64, data="e30:x", expire_date=now)
    Session.objects.create(
        key_hash="b" * 64, data="e30:x", expire_date=now + datetime.timedelta(microseconds=1)
    )
    assert delete_expired(now=now).deleted == 1
    assert list(Session.objects.values_list("key_hash", flat=True)) == ["b" * 64]


def test_nothing_to_do(alias: str) -> None:
    result = delete_expired()
    assert (result.deleted, result.batches, result.finished) == (0, 1, True)


def test_batch_size_from_settings(alias: str, settings: Any) -> None:
    now = timezone.now()
    populate(live=0, expired=5, now=now)
    settings.SQL_SESSIONS_CLEANUP_BATCH_SIZE = 2
    assert delete_expired(now=now).batches == 3


@pytest.mark.parametrize("size", [0, -5, 10**6, 2.5, "10", True])
def test_bad_batch_size_argument(size: Any) -> None:
    with pytest.raises(ValueError, match="batch_size is"):
        delete_expired(batch_size=size)


def test_bad_batch_size_setting(settings: Any) -> None:
    settings.SQL_SESSIONS_CLEANUP_BATCH_SIZE = 0
    with pytest.raises(ImproperlyConfigured, match="SQL_SESSIONS_CLEANUP_BATCH_SIZE"):
        delete_expired()


def test_use_tz_false(alias: str, settings: Any) -> None:
    settings.USE_TZ = False
    now = timezone.now()
    assert timezone.is_naive(now)
    populate(live=2, expired=3, now=now)
    assert count_expired(now=now) == 3
    assert delete_expired(now=now).deleted == 3
    assert Session.objects.count() == 2


class FakeClock:
    """Time that passes only when a batch runs (each takes batch_seconds) or when paused."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, batch_seconds: float) -> None:
        from django_sql_sessions import cleanup

        self.now = 0.0
        self.pauses: list[float] = []
        real_execute = cursors.execute

        def timed_execute(*args: Any, **kwargs: Any) -> Any:
            if args[1].sql.startswith("DELETE"):  # one per batch
                self.now += batch_seconds
            return real_execute(*args, **kwargs)

        monkeypatch.setattr(cleanup, "execute", timed_execute)

    def __call__(self) -> float:
        return self.now

    def pause(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds


def test_time_budget_stops_between_batches(alias: str, monkeypatch: pytest.MonkeyPatch) -> None:
    now = timezone.now()
    populate(live=1, expired=10, now=now)
    clock = FakeClock(monkeypatch, batch_seconds=1.0)
    result = delete_expired(batch_size=2, now=now, max_seconds=3.5, clock=clock)
    # After 3 s, a fourth one-second batch would end past 3.5 s.
    assert (result.deleted, result.batches, result.finished) == (6, 3, False)
    assert count_expired(now=now) == 4


def test_sleep_between_batches_counts_against_the_budget(
    alias: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = timezone.now()
    populate(live=0, expired=10, now=now)
    clock = FakeClock(monkeypatch, batch_seconds=0.1)
    result = delete_expired(
        batch_size=3, now=now, sleep=1.0, max_seconds=2.0, clock=clock, pause=clock.pause
    )
    assert clock.pauses == [1.0]
    assert (result.deleted, result.batches, result.finished) == (6, 2, False)


def test_max_batches(alias: str) -> None:
    now = timezone.now()
    populate(live=0, expired=5, now=now)
    result = delete_expired(batch_size=2, now=now, max_batches=1)
    assert (result.deleted, result.finished) == (2, False)


def test_progress_reports_each_batch(alias: str) -> None:
    now = timezone.now()
    populate(live=0, expired=5, now=now)
    seen: list[tuple[int, int]] = []
    delete_expired(batch_size=2, now=now, progress=lambda d, b, _s: seen.append((d, b)))
    assert seen == [(2, 1), (4, 2), (5, 3)]


@pytest.mark.parametrize(
    ("option", "value"),
    [("max_seconds", 0), ("max_seconds", -1.0), ("max_batches", 0), ("sleep", -0.5)],
)
def test_bad_budget_arguments(option: str, value: float) -> None:
    with pytest.raises(ValueError, match=f"{option} is"):
        delete_expired(**{option: value})  # type: ignore[arg-type]


class TestSingleRunner:
    def test_a_second_runner_does_nothing_while_the_first_holds_the_lock(
        self, threaded_alias: str
    ) -> None:
        import threading

        from django.db import connections

        now = timezone.now()
        populate(live=0, expired=6, now=now)
        first_batch_done, second_finished = threading.Event(), threading.Event()
        results: dict[str, CleanupResult] = {}

        def slow_progress(_deleted: int, _batches: int, _elapsed: float) -> None:
            first_batch_done.set()
            second_finished.wait(10)

        def first() -> None:
            try:
                results["first"] = delete_expired(batch_size=2, now=now, progress=slow_progress)
            finally:
                connections.close_all()

        thread = threading.Thread(target=first)
        thread.start()
        assert first_batch_done.wait(10)
        try:
            results["second"] = delete_expired(batch_size=2, now=now)
        finally:
            second_finished.set()
            thread.join()

        vendor = connections[threaded_alias].vendor
        if vendor == "sqlite":  # no lock needed: the second simply ran too
            assert results["first"].deleted + results["second"].deleted == 6
        else:
            assert results["second"].locked_out
            assert results["second"].deleted == 0
            assert results["first"].deleted == 6
        assert count_expired(now=now) == 0

    def test_the_lock_is_released_after_a_run_and_after_an_error(self, alias: str) -> None:
        now = timezone.now()
        populate(live=0, expired=2, now=now)

        def fail(_deleted: int, _batches: int, _elapsed: float) -> None:
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            delete_expired(batch_size=1, now=now, progress=fail)
        assert not delete_expired(now=now).locked_out
        assert not delete_expired(now=now).locked_out


def test_a_connection_lost_mid_run_leaves_whole_batches_and_no_lock(alias: str) -> None:
    from django.db import DatabaseError

    from tests.servers import kill

    connection = connections[alias]
    if connection.vendor not in ("postgresql", "mysql"):
        pytest.skip("needs a database server")
    now = timezone.now()
    populate(live=1, expired=6, now=now)

    def lose_the_connection(_deleted: int, batches: int, _elapsed: float) -> None:
        if batches == 1:
            kill(alias)

    with pytest.raises(DatabaseError):
        delete_expired(batch_size=2, now=now, progress=lose_the_connection)
    connection.close()
    assert count_expired(now=now) == 4  # the first batch, whole
    result = delete_expired(now=now)  # the lock went with the connection
    assert (result.locked_out, result.deleted) == (False, 4)


def test_expiries_shared_by_many_rows_are_split_at_the_batch_size(alias: str) -> None:
    # An import or a deploy can give thousands of sessions one expiry: a
    # batch still takes no more than its size, in key hash order. These
    # expire at the cutoff itself, which the last batch reaches.
    now = timezone.now()
    Session.objects.bulk_create(
        Session(key_hash=f"{i:064x}", data="e30:x", expire_date=now) for i in range(2500)
    )
    live = Session.objects.create(
        key_hash="f" * 64, data="e30:x", expire_date=now + datetime.timedelta(microseconds=1)
    )
    batches: list[int] = []

    def progress(deleted: int, _batches: int, _elapsed: float) -> None:
        batches.append(deleted - sum(batches))

    result = delete_expired(batch_size=1000, now=now, progress=progress)
    assert batches == [1000, 1000, 500]
    assert (result.deleted, result.batches) == (2500, 3)
    assert list(Session.objects.values_list("key_hash", flat=True)) == [live.key_hash]


def test_a_batch_ending_inside_a_tie_deletes_that_ties_first_keys_only(alias: str) -> None:
    now = timezone.now()
    tied = now - datetime.timedelta(minutes=5)
    Session.objects.bulk_create(
        Session(key_hash=f"{i:064x}", data="e30:x", expire_date=tied) for i in range(5)
    )
    result = delete_expired(batch_size=2, now=now, max_batches=1)
    assert (result.deleted, result.finished) == (2, False)
    assert sorted(Session.objects.values_list("key_hash", flat=True)) == [
        f"{i:064x}" for i in range(2, 5)
    ]
    result = delete_expired(batch_size=2, now=now)
    assert (result.deleted, result.batches) == (3, 2)
    assert count_expired(now=now) == 0
