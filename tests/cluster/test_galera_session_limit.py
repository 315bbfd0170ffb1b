"""
SQL_SESSIONS_MAX_PER_USER on the Galera cluster: logins of one user at the
same moment on all three nodes (processes of their own, two a node) leave
exactly the limit's sessions. The lock row's certification conflicts make
the later claims run again (docs/design.rst, "At most N sessions per user").
"""

from __future__ import annotations

import pytest
from django.db import connections
from django.utils import timezone

from django_sql_sessions.sql import to_db_datetime
from django_sql_sessions.storage import session_table
from tests.cluster import galera as cluster
from tests.test_session_limit import assert_limit_kept, parallel_logins


@pytest.mark.parametrize("mode", ["revoke", "refuse"])
def test_parallel_logins_on_three_nodes_keep_the_limit(galera: str, mode: str) -> None:
    user_id, limit = "7002", 2
    nodes = [cluster.node_alias(n) for n in (1, 2, 3)]
    try:
        answers = parallel_logins(nodes, "db", user_id, limit, mode)
        rows = cluster.causal_query(
            nodes[0],
            f"SELECT key_hash FROM `{session_table()}` WHERE user_id = %s AND expire_date > %s",
            [user_id, to_db_datetime(connections[nodes[0]], timezone.now())],
        )
        assert_limit_kept(answers, {key_hash for (key_hash,) in rows}, limit, mode)
    finally:
        cluster.query(nodes[0], "DELETE FROM django_sql_sessions_user_lock")
