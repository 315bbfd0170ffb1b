"""
Fixtures for the tests against the Galera cluster of clusters/galera.sh and
the Patroni cluster of clusters/patroni.sh. They run when GALERA_HOST,
PG_PATRONI_HOST, is set (see clusters/README.rst) and are skipped, with that
reason, otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connections

from django_sql_sessions.storage import session_table
from tests.cluster import galera as cluster
from tests.cluster import patroni as patroni_cluster

_report: list[str] = []
_patroni_report: list[str] = []


@pytest.fixture
def galera(django_db_setup: None, django_db_blocker: Any, settings: Any) -> Iterator[str]:
    """
    "galera" (through HAProxy) as SQL_SESSIONS_DB_ALIAS, with all three
    nodes Synced; the session table and the cleanup lease are emptied
    afterwards. Tests run outside any transaction, as a session store does
    in production.
    """
    if not cluster.configured():
        pytest.skip(cluster.SKIP_REASON)
    settings.SQL_SESSIONS_DB_ALIAS = "galera"
    with django_db_blocker.unblock():
        cluster.close_connections()
        cluster.ensure_three_nodes()
        yield "galera"
        cluster.close_connections()
        cluster.ensure_three_nodes()
        for table in (session_table(), "django_sql_sessions_lease"):
            cluster.query(cluster.node_alias(1), f"DELETE FROM `{table}`")
        cluster.close_connections()


@pytest.fixture
def patroni(django_db_setup: None, django_db_blocker: Any, settings: Any) -> Iterator[str]:
    """
    "patroni" (through HAProxy, to the leader) as SQL_SESSIONS_DB_ALIAS, the
    cluster whole (a leader, two replicas caught up); the session table and
    the cleanup lease are emptied afterwards, once the cluster is whole again.
    """
    if not patroni_cluster.configured():
        pytest.skip(patroni_cluster.SKIP_REASON)
    settings.SQL_SESSIONS_DB_ALIAS = "patroni"
    with django_db_blocker.unblock():
        patroni_cluster.close_connections()
        patroni_cluster.whole()
        yield "patroni"
        patroni_cluster.close_connections()
        patroni_cluster.whole()
        for table in (session_table(), "django_sql_sessions_lease"):
            with connections["patroni"].cursor() as cursor:
                cursor.execute(f"DELETE FROM {connections['patroni'].ops.quote_name(table)}")
        patroni_cluster.close_connections()


@pytest.fixture
def patroni_report() -> Any:
    """Add a line to the Patroni report printed at the end of the run."""
    return _patroni_report.append


@pytest.fixture
def report() -> Any:
    """Add a line to the cluster report printed at the end of the run."""
    return _report.append


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _report:
        terminalreporter.section("Galera cluster")
        for line in _report:
            terminalreporter.write_line(line)
    if _patroni_report:
        terminalreporter.section("Patroni cluster")
        for line in _patroni_report:
            terminalreporter.write_line(line)
