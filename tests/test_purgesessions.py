from __future__ import annotations

import datetime
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from django_sql_sessions.models import Session


def purge(*args: str) -> str:
    out = StringIO()
    call_command("purgesessions", *args, stdout=out)
    return out.getvalue()


def add(count: int, *, expired: bool) -> None:
    offset = datetime.timedelta(hours=-1 if expired else 1)
    start = Session.objects.count()
    Session.objects.bulk_create(
        Session(key_hash=f"{start + i:064x}", data="e30:x", expire_date=timezone.now() + offset)
        for i in range(count)
    )


def test_deletes_expired_sessions(alias: str) -> None:
    add(5, expired=True)
    add(2, expired=False)
    assert purge("--batch-size", "2") == (
        f"Deleted 5 expired sessions from database '{alias}' in 3 batches.\n"
    )
    assert Session.objects.count() == 2


def test_singular_wording(alias: str) -> None:
    add(1, expired=True)
    assert purge() == f"Deleted 1 expired session from database '{alias}' in 1 batch.\n"


def test_dry_run_deletes_nothing(alias: str) -> None:
    add(3, expired=True)
    add(1, expired=False)
    assert purge("--dry-run") == f"Would delete 3 expired sessions from database '{alias}'.\n"
    assert Session.objects.count() == 4


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "--batch-size is 0; it must be between 1 and 4000"),
        ("-3", "--batch-size is -3"),
        ("4001", "--batch-size is 4001"),
        ("ten", "'ten' is not a whole number"),
        ("2.5", "'2.5' is not a whole number"),
    ],
)
def test_bad_batch_size(value: str, message: str) -> None:
    with pytest.raises(CommandError, match=message):
        purge("--batch-size", value)


def test_unknown_alias(settings: Any) -> None:
    settings.SQL_SESSIONS_DB_ALIAS = "nope"
    with pytest.raises(CommandError, match="SQL_SESSIONS_DB_ALIAS is 'nope'"):
        purge()


def test_djangos_clearsessions_uses_the_engine(alias: str) -> None:
    add(2, expired=True)
    add(1, expired=False)
    call_command("clearsessions")
    assert Session.objects.count() == 1
