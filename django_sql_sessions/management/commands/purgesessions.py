from __future__ import annotations

import argparse
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from django_sql_sessions.cleanup import count_expired, delete_expired
from django_sql_sessions.conf import MAX_CLEANUP_BATCH_SIZE, batch_size_problem, db_alias


def batch_size(value: str) -> int:
    try:
        size = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if problem := batch_size_problem(size, "--batch-size"):
        raise argparse.ArgumentTypeError(problem)
    return size


class Command(BaseCommand):
    help = (
        "Delete expired sessions from SQL_SESSIONS_DB_ALIAS in batches of "
        "SQL_SESSIONS_CLEANUP_BATCH_SIZE rows, oldest first."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--batch-size",
            type=batch_size,
            help=f"Rows per DELETE, 1 to {MAX_CLEANUP_BATCH_SIZE} "
            "(default: SQL_SESSIONS_CLEANUP_BATCH_SIZE).",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Report how many sessions would be deleted, and delete none.",
        )

    def handle(self, *args: Any, batch_size: int | None, dry_run: bool, **options: Any) -> None:
        try:
            alias = db_alias()
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from exc
        if dry_run:
            count = count_expired()
            self.stdout.write(
                f"Would delete {plural(count, 'expired session')} from database '{alias}'."
            )
            return
        result = delete_expired(batch_size=batch_size)
        self.stdout.write(
            f"Deleted {plural(result.deleted, 'expired session')} from database '{alias}' "
            f"in {plural(result.batches, 'batch', 'batches')}."
        )


def plural(count: int, singular: str, plural: str | None = None) -> str:
    return f"{count} {singular if count == 1 else plural or singular + 's'}"
