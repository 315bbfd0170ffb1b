"""
manage.py importsessions: copy the live sessions of Django's own session
table into ours, so that switching SESSION_ENGINE logs nobody out.
"""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand

from django_sql_sessions import conf
from django_sql_sessions.importing import (
    DEFAULT_SOURCE_TABLE,
    ImportProblem,
    ImportResult,
    import_django_sessions,
)
from django_sql_sessions.management._common import batch_size, command_errors, plural


class Command(BaseCommand):
    help = (
        "Copy live sessions from Django's session table (db and cached_db engines) into "
        "SQL_SESSIONS_TABLE, keys hashed, users and expiry kept."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--from-database",
            default="default",
            help="The DATABASES alias that holds Django's session table (default: 'default').",
        )
        parser.add_argument(
            "--from-table",
            default=DEFAULT_SOURCE_TABLE,
            help=f"Django's session table (default: {DEFAULT_SOURCE_TABLE!r}).",
        )
        parser.add_argument(
            "--batch-size",
            type=batch_size,
            default=1000,
            help=f"Rows read and written per query, 1 to {conf.MAX_CLEANUP_BATCH_SIZE} "
            "(default: 1000).",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Report what would be copied, and copy nothing.",
        )

    def handle(
        self,
        *args: Any,
        from_database: str,
        from_table: str,
        batch_size: int,
        dry_run: bool,
        **options: Any,
    ) -> None:
        on_terminal = self.stdout.isatty()
        verbose = options["verbosity"] >= 2

        def progress(result: ImportResult) -> None:
            line = f"Copied {result.imported:,}, {result.present:,} already present"
            if on_terminal and not verbose:
                self.stdout.write(f"\r{line}   ", ending="")
                self.stdout.flush()
            elif verbose:
                self.stdout.write(f"Batch {result.batches}: {line}")

        with command_errors(ImportProblem) as alias:
            target = f"'{alias}'.{conf.TABLE.get()}"
            result = import_django_sessions(
                source_alias=from_database,
                source_table=from_table,
                batch_size=batch_size,
                dry_run=dry_run,
                progress=progress,
            )
        if on_terminal and not verbose and result.batches:
            self.stdout.write("")
        verb = "Would copy" if dry_run else "Copied"
        self.stdout.write(
            f"{verb} {plural(result.imported, 'session')} from '{from_database}'.{from_table} "
            f"into {target}; skipped {result.present:,} already present, "
            f"{result.gone:,} logged out or revoked since an earlier import, "
            f"{result.unreadable:,} unreadable, {result.too_large:,} larger than "
            f"SQL_SESSIONS_MAX_SIZE and {result.expired:,} expired."
        )
        revoked = "Would delete" if dry_run else "Deleted"
        self.stdout.write(
            f"{revoked} {plural(result.vanished, 'copied session')} that Django's engine "
            "deleted since an earlier import (logged out before the switch)."
        )
