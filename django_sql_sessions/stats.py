"""
What the session table holds, for manage.py sessionstats: within seconds on
ten million rows, by estimates, a sample and one walk of the user index
(docs/operations.rst, "How it stays fast").
"""

from __future__ import annotations

import dataclasses
import datetime
from collections import Counter
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connections
from django.db.models import Count, Max, Min, Q, QuerySet
from django.utils import timezone

from django_sql_sessions import conf
from django_sql_sessions.base_session import AbstractSession
from django_sql_sessions.devices import device_name, parser_installed
from django_sql_sessions.dialects import Dialect, Size, dialect
from django_sql_sessions.storage import plain_table, session_model
from django_sql_sessions.user_sessions import users_by_id

# An index range of this many entries takes some milliseconds everywhere.
EXACT_UP_TO = 100_000
SAMPLE_ROWS = 10_000
# Naming a user agent costs ua-parser about a millisecond.
USER_AGENTS_NAMED = 200
_BOUND_DIGITS = 8  # of a key hash, for a sample bound


@dataclasses.dataclass(frozen=True)
class Number:
    count: int
    exact: bool  # False: the database's estimate


@dataclasses.dataclass(frozen=True)
class UserSessions:
    user_id: str
    username: str | None  # None: no such user, or users unreachable
    sessions: int  # expired ones not yet purged included


@dataclasses.dataclass(frozen=True)
class DeviceSessions:
    name: str  # "Firefox on Windows", see devices.device_name()
    sessions: int  # among the live sessions read
    share: float  # of the live sessions read, 0 to 1


@dataclasses.dataclass(frozen=True)
class Stats:
    alias: str
    vendor: str
    table: str
    generated_at: datetime.datetime
    live: Number
    expired: Number
    total: Number
    # Rows read for the oldest, newest and devices: None when all were.
    sampled_rows: int | None
    oldest: datetime.datetime | None  # created_at of the oldest live session
    newest: datetime.datetime | None
    top_users: list[UserSessions] | None  # None for top=0
    usernames_note: str | None  # why usernames are missing
    devices: list[DeviceSessions] | None  # None when not recorded
    devices_named: bool  # by ua-parser
    size: Size
    # The oldest expired row's expiry: no cleanup has finished since.
    expired_waiting_since: datetime.datetime | None

    def as_json(self) -> dict[str, Any]:
        """The JSON document of `sessionstats --json` (its keys are documented)."""

        def moment(value: datetime.datetime | None) -> str | None:
            return None if value is None else value.isoformat()

        waiting = self.expired_waiting_since
        fields = dataclasses.asdict(self)  # the nested dataclasses as dicts
        return {
            "format": 1,
            "alias": self.alias,
            "vendor": self.vendor,
            "table": self.table,
            "generated_at": moment(self.generated_at),
            "sessions": {name: fields[name] for name in ("live", "expired", "total")},
            "sampled_rows": self.sampled_rows,
            "oldest_created_at": moment(self.oldest),
            "newest_created_at": moment(self.newest),
            "top_users": fields["top_users"],
            "usernames_note": self.usernames_note,
            "devices": fields["devices"],
            "devices_named": self.devices_named,
            "size": fields["size"],
            "cleanup": {
                "expired_waiting_since": moment(waiting),
                "waiting_seconds": (
                    None
                    if waiting is None
                    else round((self.generated_at - waiting).total_seconds())
                ),
            },
        }


def collect(
    *,
    top: int = 10,
    exact: bool = False,
    now: datetime.datetime | None = None,
    exact_up_to: int | None = None,
    sample_rows: int | None = None,
) -> Stats:
    """The session table's statistics, estimated past exact_up_to rows unless exact."""
    now = now or timezone.now()
    exact_up_to = EXACT_UP_TO if exact_up_to is None else exact_up_to
    sample_rows = SAMPLE_ROWS if sample_rows is None else sample_rows
    alias = conf.DB_ALIAS.get()
    connection = connections[alias]
    table = plain_table().name
    sessions: QuerySet[AbstractSession] = session_model().objects.all()
    chosen = dialect(connection)
    size, catalog_rows = chosen.table_size(connection, table)

    # Read whole, the rows are filtered inside the aggregates rather than by
    # WHERE: a planner would walk the expire_date index for the live ones and
    # fetch nearly every row by its key, many times slower than one pass.
    live_only = Q(expire_date__gt=now)
    read_all = exact or _capped_count(sessions, exact_up_to) is not None
    if read_all:
        live, expired, total = _counts(now)
        sampled = None
        created = sessions.aggregate(
            oldest=Min("created_at", filter=live_only), newest=Max("created_at", filter=live_only)
        )
        oldest, newest = created["oldest"], created["newest"]
    else:
        live, expired, total = _estimated_counts(chosen, now, exact_up_to, catalog_rows)
        sample = list(
            sessions.filter(key_hash__lt=sample_bound(sample_rows, total.count))
            .filter(expire_date__gt=now)
            .values_list("created_at", "user_agent")
        )
        sampled = len(sample)
        oldest = min((row[0] for row in sample), default=None)
        newest = max((row[0] for row in sample), default=None)

    devices = None
    if conf.DEVICE_DETAILS.get() and top:
        if read_all:
            agents = Counter(
                dict(
                    sessions.values("user_agent")
                    .annotate(n=Count("pk", filter=live_only))
                    .filter(n__gt=0)
                    .order_by("-n", "user_agent")
                    .values_list("user_agent", "n")[:USER_AGENTS_NAMED]
                )
            )
            read = live.count
        else:
            agents = Counter(agent for _created, agent in sample)
            read = sampled or 0
        devices = device_breakdown(agents, read, top)

    top_users, usernames_note = (None, None) if not top else _top_users(top)
    first = sessions.order_by("expire_date").values_list("expire_date", flat=True).first()
    return Stats(
        alias=alias,
        vendor=connection.vendor,
        table=table,
        generated_at=now,
        live=live,
        expired=expired,
        total=total,
        sampled_rows=sampled,
        oldest=oldest,
        newest=newest,
        top_users=top_users,
        usernames_note=usernames_note,
        devices=devices,
        devices_named=parser_installed(),
        size=size,
        expired_waiting_since=first if first is not None and first <= now else None,
    )


def _counts(now: datetime.datetime) -> tuple[Number, Number, Number]:
    live = session_model().objects.filter(expire_date__gt=now).count()
    expired = session_model().objects.filter(expire_date__lte=now).count()
    return Number(live, True), Number(expired, True), Number(live + expired, True)


def _estimated_counts(
    chosen: Dialect, now: datetime.datetime, cap: int, catalog_rows: int | None
) -> tuple[Number, Number, Number]:
    """Live, expired and all sessions of a table larger than cap: the expired counted to cap."""
    rows = (
        catalog_rows if catalog_rows is not None else chosen.explain_rows(session_model().objects)
    )
    total = Number(session_model().objects.count(), True) if rows is None else Number(rows, False)
    expired_rows = session_model().objects.filter(expire_date__lte=now)
    counted = _capped_count(expired_rows, cap)
    estimated = None if counted is not None else chosen.explain_rows(expired_rows)
    if estimated is None:  # within the cap, or no estimate (SQL Server)
        expired = Number(counted if counted is not None else expired_rows.count(), True)
    else:
        expired = Number(estimated, False)
    live = Number(max(total.count - expired.count, 0), total.exact and expired.exact)
    return live, expired, total


def sample_bound(rows: int, total: int) -> str:
    """The key hash below which about `rows` of `total` evenly spread hashes lie."""
    space = 16**_BOUND_DIGITS
    bound = min(space - 1, max(1, rows * space // max(total, 1)))
    return f"{bound:0{_BOUND_DIGITS}x}"


def device_breakdown(agents: Counter[str | None], read: int, top: int) -> list[DeviceSessions]:
    """The `top` device names among `read` live sessions; the rest as "Other"."""
    names: Counter[str] = Counter()
    for agent, count in agents.most_common(USER_AGENTS_NAMED):
        names[device_name(agent, versions=False)] += count
    listed = names.most_common(top)
    other = read - sum(count for _name, count in listed)
    if other > 0:
        listed.append(("Other", other))
    return [DeviceSessions(name, count, count / read if read else 0.0) for name, count in listed]


def _capped_count(queryset: QuerySet[AbstractSession], cap: int) -> int | None:
    """The queryset's count if it is at most cap, reading at most cap + 1 rows; else None."""
    count = queryset[: cap + 1].count()
    return count if count <= cap else None


def top_users_query(top: int) -> QuerySet[Any, tuple[str | None, int]]:
    """(user_id, rows) of the `top` users with the most rows, by one walk of the user index."""
    return (
        session_model()
        .objects.filter(user_id__isnull=False)
        .values("user_id")
        .annotate(n=Count("*"))
        .order_by("-n", "user_id")
        .values_list("user_id", "n")[:top]
    )


def _top_users(top: int) -> tuple[list[UserSessions], str | None]:
    """The `top` user ids with the most rows, and their usernames (one query, no join)."""
    counted = [(str(user_id), n) for user_id, n in top_users_query(top)]
    note = None
    try:
        users = users_by_id({user_id for user_id, _n in counted})
    except (ImproperlyConfigured, LookupError, DatabaseError) as exc:
        # No django.contrib.auth, or its database out of reach: ids still say who.
        users, note = {}, f"usernames unavailable: {exc}"
    return [
        UserSessions(user_id, users[user_id].get_username() if user_id in users else None, n)
        for user_id, n in counted
    ], note
