"""
manage.py purgesessions: delete expired sessions in batches. Exit status: 0
when the run finished, stopped at --max-seconds, or found another runner; 1
on an error; 2 on invalid options; 130 when interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from django_sql_sessions.cleanup import CleanupResult, count_expired, delete_expired
from django_sql_sessions.management._common import (
    add_batch_options,
    command_errors,
    plural,
    seconds,
)


class Command(BaseCommand):
    help = (
        "Delete expired sessions from SQL_SESSIONS_DB_ALIAS in batches of "
        "SQL_SESSIONS_CLEANUP_BATCH_SIZE rows, oldest first, one runner at a time."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_batch_options(parser, "Rows per DELETE")
        parser.add_argument(
            "--max-seconds",
            type=seconds(0, inclusive=False),
            help="Stop between batches once this many seconds have passed.",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Report how many sessions would be deleted, and delete none.",
        )

    def handle(
        self,
        *args: Any,
        batch_size: int | None,
        max_seconds: float | None,
        sleep: float,
        dry_run: bool,
        **options: Any,
    ) -> None:
        # -v 2: a line per batch; else, on a terminal, one line that follows the run.
        verbose = options["verbosity"] >= 2
        on_terminal = self.stdout.isatty() and not verbose
        expected: int | None = None
        done = _Done()

        def pause(seconds: float) -> None:
            time.sleep(seconds)
            done.paused += seconds

        def progress(deleted: int, batches: int, elapsed: float) -> None:
            rows = deleted - done.deleted
            # The batch's own rate: without the --sleep pause before it.
            seconds = elapsed - done.elapsed - (done.paused - done.paused_then)
            done.deleted, done.batches = deleted, batches
            done.elapsed, done.paused_then = elapsed, done.paused
            if verbose:
                rate = rows / seconds if seconds > 0 else 0.0
                self.stdout.write(
                    f"Batch {batches}: deleted {rows:,} ({rate:,.0f}/s), {deleted:,} in all"
                )
            elif on_terminal:
                rate = deleted / elapsed if elapsed else 0.0
                left = f", about {max(expected - deleted, 0):,} left" if expected else ""
                self.stdout.write(f"\rDeleted {deleted:,} ({rate:,.0f}/s){left}   ", ending="")
                self.stdout.flush()

        with command_errors() as alias:
            if dry_run:
                count = count_expired()
                self.stdout.write(
                    f"Would delete {plural(count, 'expired session')} from database '{alias}'."
                )
                return
            expected = count_expired() if on_terminal else None
            try:
                result = delete_expired(
                    batch_size=batch_size,
                    max_seconds=max_seconds,
                    sleep=sleep,
                    progress=progress,
                    pause=pause,
                    via="command",
                )
            except KeyboardInterrupt:
                raise CommandError(
                    f"Interrupted after deleting {plural(done.deleted, 'expired session')} in "
                    f"{plural(done.batches, 'whole batch', 'whole batches')}.",
                    returncode=130,
                ) from None
        if on_terminal:
            self.stdout.write("")
        self.stdout.write(summary(result))


@dataclasses.dataclass
class _Done:
    """Where the run stood at the end of its last batch."""

    deleted: int = 0
    batches: int = 0
    elapsed: float = 0.0
    paused: float = 0.0  # seconds slept between batches so far
    paused_then: float = 0.0  # ... at the end of the last batch


def summary(result: CleanupResult) -> str:
    if result.locked_out:
        return (
            f"Cleanup already running on database '{result.alias}' (another process "
            "holds the lock); nothing to do."
        )
    text = (
        f"Deleted {plural(result.deleted, 'expired session')} from database "
        f"'{result.alias}' in {plural(result.batches, 'batch', 'batches')}"
    )
    if not result.finished:
        return f"{text}, then stopped at the time budget; expired sessions remain."
    return f"{text}."
