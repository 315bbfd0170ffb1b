from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from django_sql_sessions.cleanup import count_expired, delete_expired
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

    with count_statements(alias) as statements:
        result = delete_expired(batch_size=3, now=now)
    assert (result.alias, result.deleted, result.batches) == (alias, 7, 3)
    assert statements.count == 3
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
    assert (result.deleted, result.batches) == (0, 1)


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
