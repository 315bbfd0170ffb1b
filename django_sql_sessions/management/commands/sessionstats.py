"""manage.py sessionstats: what the session table holds (stats.collect()), for operators."""

from __future__ import annotations

import argparse
import datetime
import json
from typing import Any

from django.core.management.base import BaseCommand
from django.utils import timezone
from django.utils.timesince import timesince

from django_sql_sessions.dialects import Size
from django_sql_sessions.management._common import command_errors, plural
from django_sql_sessions.stats import EXACT_UP_TO, Number, Stats, collect


def whole_number(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"{value!r} must be 0 or more")
    return number


class Command(BaseCommand):
    help = (
        "Report the session table: live and expired sessions, the users and devices with "
        "the most, the oldest and newest, its size, and how long expired sessions have "
        f"waited for the cleanup. Estimated past {EXACT_UP_TO:,} rows unless --exact."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--top",
            type=whole_number,
            default=10,
            help="How many users and devices to list (default: 10; 0 lists none).",
        )
        parser.add_argument(
            "--exact",
            action="store_true",
            help="Count and read every row instead of estimating (slow on large tables).",
        )
        parser.add_argument(
            "--json",
            action="store_true",
            dest="as_json",
            help="Print one JSON document instead of text.",
        )

    def handle(self, *args: Any, top: int, exact: bool, as_json: bool, **options: Any) -> None:
        with command_errors():
            stats = collect(top=top, exact=exact)
        if as_json:
            self.stdout.write(json.dumps(stats.as_json(), indent=2))
        else:
            self.stdout.write("\n".join(report(stats)))


def report(stats: Stats) -> list[str]:
    now = stats.generated_at
    sample = "" if stats.sampled_rows is None else f", in a sample of {stats.sampled_rows:,} live"
    lines = [
        f"Sessions in database '{stats.alias}' ({stats.vendor}), table {stats.table}:",
        f"  Live:     {_number(stats.live)}",
        f"  Expired:  {_number(stats.expired)}",
        f"  Total:    {_number(stats.total)}",
        f"  Oldest:   {_moment(stats.oldest, now, 'no live session')}{sample}",
        f"  Newest:   {_moment(stats.newest, now, 'no live session')}{sample}",
        f"  Cleanup:  {_cleanup(stats.expired_waiting_since, now)}",
        f"  Size:     {_size(stats.size)}",
    ]
    if stats.top_users is not None:
        lines += ["", "Users with the most sessions (expired ones not yet deleted included):"]
        width = len(f"{stats.top_users[0].sessions:,}") if stats.top_users else 0
        for user in stats.top_users:
            who = (
                f"{user.username} (user id {user.user_id})"
                if user.username is not None
                else f"user id {user.user_id}"
                + ("" if stats.usernames_note else " (no such user)")
            )
            lines.append(f"  {user.sessions:>{width},}  {who}")
        if not stats.top_users:
            lines.append("  none: no session belongs to a user")
        if stats.usernames_note:
            lines.append(f"  ({stats.usernames_note})")
    if stats.devices is not None:
        named = (
            "named by ua-parser"
            if stats.devices_named
            else "guessed: install django-sql-sessions[devices] to name them with ua-parser"
        )
        read = "" if stats.sampled_rows is None else f", in a sample of {stats.sampled_rows:,}"
        lines += ["", f"Devices of live sessions ({named}{read}):"]
        for device in stats.devices:
            lines.append(f"  {device.share:>6.1%}  {device.name}")
        if not stats.devices:
            lines.append("  none: no live session")
    elif stats.top_users is not None:
        lines += ["", "Devices: not recorded (SQL_SESSIONS_DEVICE_DETAILS is off)."]
    return lines


def _number(number: Number) -> str:
    return f"{number.count:,}" + ("" if number.exact else " (estimated)")


def _moment(value: datetime.datetime | None, now: datetime.datetime, none: str) -> str:
    if value is None:
        return none
    return f"created {_local(value):%Y-%m-%d %H:%M} ({_ago(value, now)})"


def _local(value: datetime.datetime) -> datetime.datetime:
    return timezone.localtime(value) if timezone.is_aware(value) else value


def _ago(value: datetime.datetime, now: datetime.datetime) -> str:
    if abs((now - value).total_seconds()) < 60:
        return "just now"
    # Django's timesince joins number and unit with a no-break space.
    return timesince(value, now, depth=1).replace("\xa0", " ") + " ago"


def _cleanup(waiting_since: datetime.datetime | None, now: datetime.datetime) -> str:
    if waiting_since is None:
        return "no expired session is waiting to be deleted"
    return (
        f"expired sessions waiting since {_local(waiting_since):%Y-%m-%d %H:%M} "
        f"({_ago(waiting_since, now)}): no cleanup has finished since then"
    )


def _size(size: Size) -> str:
    if size.total_bytes is None:
        return f"unknown ({size.note or size.source})"
    parts = [
        f"{_bytes(value)} {what}"
        for value, what in ((size.table_bytes, "rows"), (size.index_bytes, "indexes"))
        if value is not None
    ]
    detail = f": {', '.join(parts)}" if parts else ""
    note = f"; {size.note}" if size.note else ""
    return f"{_bytes(size.total_bytes)}{detail} (from {size.source}{note})"


def _bytes(count: int) -> str:
    if count < 1024:
        return plural(count, "byte")
    value = float(count)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            break
    return f"{value:,.1f} {unit}"
