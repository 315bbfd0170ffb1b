from __future__ import annotations

import datetime
import logging
from typing import Any

import pytest
from django.core.signals import request_finished
from django.db import OperationalError, connections
from django.utils import timezone

from django_sql_sessions import cleanup
from django_sql_sessions.cleanup import GarbageCollector
from django_sql_sessions.models import Session


def expired(count: int) -> None:
    Session.objects.bulk_create(
        Session(
            key_hash=f"{i:064x}",
            data="e30:x",
            expire_date=timezone.now() - datetime.timedelta(minutes=1),
        )
        for i in range(count)
    )


@pytest.fixture
def gc_on(settings: Any, alias: str) -> str:
    settings.SQL_SESSIONS_GC_FREQUENCY = 10
    settings.SQL_SESSIONS_CLEANUP_BATCH_SIZE = 2
    return alias


def test_about_one_request_in_n_deletes_one_batch(gc_on: str) -> None:
    expired(5)
    GarbageCollector(draw=lambda: 0.1)()  # 0.1 * 10 = 1: not drawn
    assert Session.objects.count() == 5
    GarbageCollector(draw=lambda: 0.099)()  # drawn: one batch only
    assert Session.objects.count() == 3


def test_zero_turns_it_off(gc_on: str, settings: Any) -> None:
    settings.SQL_SESSIONS_GC_FREQUENCY = 0
    expired(1)
    GarbageCollector(draw=lambda: 0.0)()
    assert Session.objects.count() == 1


def test_runs_after_each_request_through_the_signal(
    gc_on: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    expired(1)
    monkeypatch.setattr(cleanup.collector, "draw", lambda: 0.0)
    request_finished.send(sender=None)
    assert Session.objects.count() == 0


def test_never_twice_at_once_in_a_process(gc_on: str) -> None:
    expired(1)
    collector = GarbageCollector(draw=lambda: 0.0)
    with collector.running:
        collector()
    assert Session.objects.count() == 1


def test_errors_are_logged_not_raised(
    gc_on: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(**kwargs: Any) -> None:
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(cleanup, "delete_expired", broken)
    with caplog.at_level(logging.ERROR, logger="django_sql_sessions"):
        GarbageCollector(draw=lambda: 0.0)()
    assert caplog.records[0].getMessage() == "Expired-session garbage collection failed"
    assert "server closed" in str(caplog.records[0].exc_info)


def test_a_bad_setting_is_logged_not_raised(
    settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.SQL_SESSIONS_GC_FREQUENCY = "often"
    with caplog.at_level(logging.ERROR, logger="django_sql_sessions"):
        GarbageCollector(draw=lambda: 0.0)()
    assert "SQL_SESSIONS_GC_FREQUENCY" in str(caplog.records[0].exc_info)


def test_a_connection_it_opened_is_closed(threaded_alias: str, settings: Any) -> None:
    # threaded_alias: Django never closes an in-memory SQLite database.
    settings.SQL_SESSIONS_GC_FREQUENCY = 10
    expired(1)
    connection = connections[threaded_alias]
    connection.close()
    GarbageCollector(draw=lambda: 0.0)()
    assert connection.connection is None
    assert Session.objects.count() == 0
