"""What the package's management commands share: option types and output."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import CommandError
from django.db import DatabaseError

from django_sql_sessions import conf
from django_sql_sessions.exceptions import SessionTableMissing


def batch_size(value: str) -> int:
    try:
        size = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if problem := conf.cleanup_batch_size_rule("--batch-size", size):
        raise argparse.ArgumentTypeError(problem)
    return size


def seconds(minimum: float, inclusive: bool) -> Callable[[str], float]:
    def parse(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from None
        if not (number >= minimum if inclusive else number > minimum) or number == float("inf"):
            bound = "0 or more" if inclusive else "more than 0"
            raise argparse.ArgumentTypeError(f"{value!r} must be {bound} seconds")
        return number

    return parse


def add_batch_options(parser: argparse.ArgumentParser, per_batch: str) -> None:
    """--batch-size (`per_batch` says of what) and --sleep, for commands that work in batches."""
    parser.add_argument(
        "--batch-size",
        type=batch_size,
        help=f"{per_batch}, 1 to {conf.MAX_CLEANUP_BATCH_SIZE} "
        "(default: SQL_SESSIONS_CLEANUP_BATCH_SIZE).",
    )
    parser.add_argument(
        "--sleep",
        type=seconds(0, inclusive=True),
        default=0.0,
        help="Pause this many seconds between batches, to leave room for live traffic.",
    )


@contextmanager
def command_errors(*also: type[Exception]) -> Iterator[str]:
    """
    Yield SQL_SESSIONS_DB_ALIAS; report a settings problem, a database error
    (with where to look) or one of `also` in one line, not a traceback.
    """
    # SessionTableMissing names the alias and the fix already.
    one_line: tuple[type[Exception], ...] = (ImproperlyConfigured, SessionTableMissing, *also)
    try:
        alias = conf.DB_ALIAS.get()
        yield alias
    except one_line as exc:
        raise CommandError(str(exc)) from exc
    except DatabaseError as exc:
        raise CommandError(
            f"Database {alias!r}: {exc} (for a missing session table, "
            f"'manage.py check --database {alias}' says why)."
        ) from exc


def plural(count: int, singular: str, plural: str | None = None) -> str:
    return f"{count} {singular if count == 1 else plural or singular + 's'}"
