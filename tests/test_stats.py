from __future__ import annotations

import datetime
from collections import Counter
from typing import Any

import pytest
from django.contrib.auth import SESSION_KEY, get_user_model
from django.db import DatabaseError, OperationalError, connections, router
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_sql_sessions import stats
from django_sql_sessions.dialects import DIALECTS, dialect
from django_sql_sessions.models import Session
from django_sql_sessions.stats import (
    DeviceSessions,
    collect,
    device_breakdown,
    sample_bound,
    top_users_query,
)
from tests.helpers import saved_session
from tests.mssql_offline import offline_connection


def add(count: int, *, expired: bool = False, **data: Any) -> None:
    for _ in range(count):
        saved_session(**data, cart=1)
    if expired:  # the sessions just made
        latest = list(Session.objects.order_by("-created_at").values_list("pk", flat=True)[:count])
        Session.objects.filter(pk__in=latest).update(
            expire_date=timezone.now() - datetime.timedelta(minutes=5)
        )


def analyze(alias: str) -> None:
    """Bring the planner's statistics up to date, as autovacuum or InnoDB would."""
    connection = connections[alias]
    table = connection.ops.quote_name(Session._meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"VACUUM ANALYZE {table}")
        elif connection.vendor == "mysql":
            cursor.execute(f"ANALYZE TABLE {table}")
            cursor.fetchall()


def test_past_the_cap_counts_are_estimated(alias: str) -> None:
    add(30)
    add(10, expired=True)
    analyze(alias)
    with CaptureQueriesContext(connections[alias]) as queries:
        found = collect(exact_up_to=5, sample_rows=20)
    vendor = connections[alias].vendor
    if vendor == "sqlite":  # no estimates to be had: counted
        assert (found.total.count, found.total.exact) == (40, True)
        assert (found.expired.count, found.expired.exact) == (10, True)
        assert (found.live.count, found.live.exact) == (30, True)
    else:
        assert (found.total.exact, found.expired.exact, found.live.exact) == (False,) * 3
        # The planners' figures, close to the truth on a freshly analyzed table.
        assert 20 <= found.total.count <= 60
        assert 1 <= found.expired.count <= 40
        assert found.live.count == max(found.total.count - found.expired.count, 0)
        explained = [q["sql"] for q in queries.captured_queries if "EXPLAIN" in q["sql"]]
        assert explained
    # No count read more than the cap allows (SQLite's has to).
    counts = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("SELECT COUNT(")]
    assert counts
    assert all("LIMIT 6" in sql for sql in counts if vendor != "sqlite")


def test_past_the_cap_the_oldest_newest_and_devices_are_sampled(alias: str, settings: Any) -> None:
    settings.SQL_SESSIONS_DEVICE_DETAILS = True
    add(40)
    now = timezone.now()
    rows = list(Session.objects.values_list("key_hash", "created_at", "user_agent"))
    found = collect(exact_up_to=5, sample_rows=20, now=now)
    bound = sample_bound(20, found.total.count)
    sample = [row for row in rows if row[0] < bound]
    # About half of 40, by the spread of SHA-256; exactly those below the bound.
    assert found.sampled_rows == len(sample)
    assert found.oldest == min(created for _key, created, _agent in sample)
    assert found.newest == max(created for _key, created, _agent in sample)
    assert found.devices == [DeviceSessions("Unknown device", len(sample), 1.0)]


def test_exact_reads_everything(alias: str) -> None:
    add(8)
    add(2, expired=True)
    found = collect(exact=True, exact_up_to=1, sample_rows=1)
    assert (found.live, found.expired, found.total) == (
        stats.Number(8, True),
        stats.Number(2, True),
        stats.Number(10, True),
    )
    assert found.sampled_rows is None


@pytest.mark.parametrize(
    ("rows", "total", "bound"),
    [
        (1, 16, "10000000"),
        (10_000, 10_000_000, "00418937"),
        (10, 10, "ffffffff"),
        (10, 0, "ffffffff"),
        (1, 10**12, "00000001"),
    ],
)
def test_sample_bound(rows: int, total: int, bound: str) -> None:
    assert sample_bound(rows, total) == bound


def test_device_breakdown_names_merges_and_groups_the_rest(user_agent_parser: bool) -> None:
    firefox_140 = (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:140.0) Gecko/20100101 Firefox/140.0"
    )
    firefox_139 = firefox_140.replace("140.0", "139.0")
    agents: Counter[str | None] = Counter(
        {firefox_140: 5, firefox_139: 3, None: 1, "curl/8.4.0": 1}
    )
    listed = device_breakdown(agents, read=12, top=2)
    if user_agent_parser:  # both Firefox versions are one device
        assert listed == [
            DeviceSessions("Firefox on Windows", 8, 8 / 12),
            DeviceSessions("Unknown device", 1, 1 / 12),
            DeviceSessions("Other", 3, 3 / 12),  # curl, and two not among those read
        ]
    else:
        # The short guess leaves the version out of Firefox's name, so the
        # two are one device here too.
        assert [device.sessions for device in listed] == [8, 1, 3]
        assert (listed[0].name, listed[-1].name) == ("Firefox on Windows", "Other")


def test_users_are_named_with_one_query_to_their_own_database(alias: str, make_user: Any) -> None:
    users = [make_user(f"user{n}") for n in range(3)]
    for count, user in enumerate(users, start=1):
        for _ in range(count):
            saved_session(**{SESSION_KEY: str(user.pk)})
    user_model = get_user_model()
    users_db = connections[router.db_for_read(user_model)]
    user_table = user_model._meta.db_table
    with (
        CaptureQueriesContext(users_db) as on_users,
        CaptureQueriesContext(connections[alias]) as on_sessions,
    ):
        found = collect(top=2)
    assert found.top_users == [
        stats.UserSessions(str(users[2].pk), "user2", 3),
        stats.UserSessions(str(users[1].pk), "user1", 2),
    ]
    assert len([q for q in on_users.captured_queries if user_table in q["sql"]]) == 1
    if users_db is not connections[alias]:
        assert not [q for q in on_sessions.captured_queries if user_table in q["sql"]]


def test_unreachable_users_leave_the_ids(
    alias: str, make_user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    saved_session(**{SESSION_KEY: str(make_user().pk)})

    def down(user_ids: Any) -> Any:
        raise OperationalError("could not connect to the users' server")

    monkeypatch.setattr(stats, "users_by_id", down)
    found = collect()
    assert found.top_users is not None
    assert [user.username for user in found.top_users] == [None]
    assert found.usernames_note == "usernames unavailable: could not connect to the users' server"


def test_sqlite_without_dbstat_reports_the_file(alias: str) -> None:
    connection = connections[alias]
    if connection.vendor != "sqlite":
        pytest.skip("SQLite only")

    def no_dbstat(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if "dbstat" in sql:
            raise OperationalError("no such table: dbstat")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(no_dbstat):
        size = collect().size
    assert size.total_bytes is not None
    assert size.total_bytes > 0
    assert (size.table_bytes, size.index_bytes) == (None, None)
    assert size.source == "page_count * page_size"


def test_a_catalog_the_user_may_not_read(alias: str) -> None:
    connection = connections[alias]
    if connection.vendor == "sqlite":
        pytest.skip("the servers' catalog queries")

    def refused(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if sql == dialect(connection).size_query(connection, Session._meta.db_table)[0]:
            raise DatabaseError("permission denied")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(refused):
        found = collect()
    assert found.size.total_bytes is None
    assert found.size.note == "not available: permission denied"
    assert found.total.exact  # the counts do not need the catalog


class TestSqlServerOffline:
    """The SQL Server queries, compiled by mssql-django without a server."""

    def test_size_query(self) -> None:
        sql, params = DIALECTS["microsoft"].size_query(offline_connection(), "test_web_sessions")
        assert sql == (
            "SELECT SUM(used_page_count) * 8192, "
            "SUM(CASE WHEN index_id < 2 THEN in_row_data_page_count + lob_used_page_count "
            "+ row_overflow_used_page_count ELSE lob_used_page_count "
            "+ row_overflow_used_page_count END) * 8192, "
            "SUM(CASE WHEN index_id < 2 THEN row_count ELSE 0 END) "
            "FROM sys.dm_db_partition_stats WHERE object_id = OBJECT_ID(%s)"
        )
        assert params == ["[test_web_sessions]"]

    def test_top_users_query(self) -> None:
        query = top_users_query(10).query
        sql, params = query.get_compiler(connection=offline_connection()).as_sql()
        assert sql == (
            "SELECT TOP 10 [test_web_sessions].[user_id] AS [user_id], COUNT_BIG(*) AS [n] "
            "FROM [test_web_sessions] WHERE [test_web_sessions].[user_id] IS NOT NULL "
            "GROUP BY [test_web_sessions].[user_id] ORDER BY 2 DESC, 1 ASC"
        )
        assert params == ()

    def test_sample_query(self) -> None:
        query = Session.objects.filter(key_hash__lt="00418937").values_list("created_at").query
        sql, params = query.get_compiler(connection=offline_connection()).as_sql()
        assert sql.endswith("WHERE [test_web_sessions].[key_hash] < %s")
        assert params == ("00418937",)
