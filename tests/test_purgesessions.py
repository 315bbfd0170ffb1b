from __future__ import annotations

import datetime
import os
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from django_sql_sessions import cursors
from django_sql_sessions.cleanup import delete_expired
from django_sql_sessions.models import Session

ROOT = Path(__file__).resolve().parent.parent


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
    ("option", "value", "message"),
    [
        ("--batch-size", "0", "--batch-size is 0; it must be a whole number, from 1 to 4000"),
        ("--batch-size", "-3", "--batch-size is -3"),
        ("--batch-size", "4001", "--batch-size is 4001"),
        ("--batch-size", "ten", "'ten' is not a whole number"),
        ("--batch-size", "2.5", "'2.5' is not a whole number"),
        ("--max-seconds", "0", "'0' must be more than 0 seconds"),
        ("--max-seconds", "-1", "'-1' must be more than 0 seconds"),
        ("--max-seconds", "soon", "'soon' is not a number of seconds"),
        ("--max-seconds", "nan", "'nan' must be more than 0 seconds"),
        ("--sleep", "-0.1", "'-0.1' must be 0 or more seconds"),
        ("--sleep", "inf", "'inf' must be 0 or more seconds"),
    ],
)
def test_bad_options(option: str, value: str, message: str) -> None:
    with pytest.raises(CommandError, match=message):
        purge(option, value)


def test_bad_options_exit_2_from_the_command_line() -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "django", "purgesessions", "--batch-size", "0"],
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "--batch-size is 0" in result.stderr


def test_time_budget(alias: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from django_sql_sessions import cleanup
    from django_sql_sessions.management.commands import purgesessions

    add(5, expired=True)
    clock = [0.0]
    real_execute = cursors.execute

    def one_second_per_batch(*args: Any, **kwargs: Any) -> Any:
        if args[1].sql.startswith("DELETE"):  # one per batch
            clock[0] += 1.0
        return real_execute(*args, **kwargs)

    monkeypatch.setattr(cleanup, "execute", one_second_per_batch)
    monkeypatch.setattr(
        purgesessions,
        "delete_expired",
        lambda **kwargs: delete_expired(**kwargs, clock=lambda: clock[0]),
    )
    assert purge("--batch-size", "1", "--max-seconds", "2.5") == (
        f"Deleted 2 expired sessions from database '{alias}' in 2 batches, "
        "then stopped at the time budget; expired sessions remain.\n"
    )


def test_a_line_per_batch_with_verbosity_2(alias: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from django_sql_sessions import cleanup
    from django_sql_sessions.management.commands import purgesessions

    # 2,500 sessions that expired at the same moment, as after an import.
    expired = timezone.now() - datetime.timedelta(hours=1)
    Session.objects.bulk_create(
        Session(key_hash=f"{i:064x}", data="e30:x", expire_date=expired) for i in range(2500)
    )
    add(1, expired=False)
    # Each DELETE takes half a second, and the pauses between them count
    # against no batch's rate.
    clock = [0.0]
    real_execute = cursors.execute

    def half_a_second_per_batch(*args: Any, **kwargs: Any) -> Any:
        if args[1].sql.startswith("DELETE"):
            clock[0] += 0.5
        return real_execute(*args, **kwargs)

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    monkeypatch.setattr(cleanup, "execute", half_a_second_per_batch)
    monkeypatch.setattr("time.sleep", sleep)
    monkeypatch.setattr(
        purgesessions,
        "delete_expired",
        lambda **kwargs: delete_expired(**kwargs, clock=lambda: clock[0]),
    )
    assert purge("--batch-size", "1000", "--sleep", "3", "-v", "2") == (
        "Batch 1: deleted 1,000 (2,000/s), 1,000 in all\n"
        "Batch 2: deleted 1,000 (2,000/s), 2,000 in all\n"
        "Batch 3: deleted 500 (1,000/s), 2,500 in all\n"
        f"Deleted 2500 expired sessions from database '{alias}' in 3 batches.\n"
    )
    assert Session.objects.count() == 1


def test_sleep_between_batches(alias: str, monkeypatch: pytest.MonkeyPatch) -> None:
    add(3, expired=True)
    pauses: list[float] = []
    monkeypatch.setattr("time.sleep", pauses.append)
    purge("--batch-size", "1", "--sleep", "0.25")
    assert pauses == [0.25, 0.25, 0.25]


def test_another_runner_holds_the_lock(alias: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from contextlib import contextmanager

    from django_sql_sessions import cleanup
    from django_sql_sessions.cleanup import NOT_HELD

    @contextmanager
    def held_elsewhere(*args: Any) -> Any:
        yield NOT_HELD

    add(2, expired=True)
    monkeypatch.setattr(cleanup, "single_runner", held_elsewhere)
    assert purge() == (
        f"Cleanup already running on database '{alias}' (another process holds the lock); "
        "nothing to do.\n"
    )
    assert Session.objects.count() == 2


def test_progress_on_a_terminal(alias: str) -> None:
    class Terminal(StringIO):
        def isatty(self) -> bool:
            return True

    add(3, expired=True)
    out = Terminal()
    call_command("purgesessions", "--batch-size", "2", stdout=out)
    lines = out.getvalue().split("\r")
    assert lines[1].startswith("Deleted 2 (")
    assert "about 1 left" in lines[1]
    assert lines[-1].endswith(
        f"\nDeleted 3 expired sessions from database '{alias}' in 2 batches.\n"
    )
    # With -v 2, a line per batch instead, on a terminal too.
    add(3, expired=True)
    out = Terminal()
    call_command("purgesessions", "--batch-size", "2", "-v", "2", stdout=out)
    assert "\r" not in out.getvalue()
    assert [line.split(" (")[0] for line in out.getvalue().splitlines()] == [
        "Batch 1: deleted 2",
        "Batch 2: deleted 1",
        f"Deleted 3 expired sessions from database '{alias}' in 2 batches.",
    ]


def test_interrupted(alias: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from django_sql_sessions.management.commands import purgesessions

    add(4, expired=True)
    real = delete_expired

    def interrupted(**kwargs: Any) -> Any:
        def progress(deleted: int, batches: int, elapsed: float) -> None:
            kwargs["progress"](deleted, batches, elapsed)
            if batches == 2:
                raise KeyboardInterrupt

        return real(**{**kwargs, "progress": progress})

    monkeypatch.setattr(purgesessions, "delete_expired", interrupted)
    with pytest.raises(CommandError, match="after deleting 2 expired sessions in 2 whole") as e:
        purge("--batch-size", "1")
    assert e.value.returncode == 130
    assert Session.objects.count() == 2


def test_unknown_alias(settings: Any) -> None:
    settings.SQL_SESSIONS_DB_ALIAS = "nope"
    with pytest.raises(CommandError, match="SQL_SESSIONS_DB_ALIAS is 'nope'"):
        purge()


def test_djangos_clearsessions_uses_the_engine(alias: str) -> None:
    add(2, expired=True)
    add(1, expired=False)
    call_command("clearsessions")
    assert Session.objects.count() == 1
