"""
Read-your-writes across nodes: a request served by one node must see what
the previous request of the same user wrote through another.

Galera replicates a commit to every node before it returns, but the other
nodes apply it a little later; a plain read there can miss it. The engine
must read as if every write committed anywhere had been applied.
"""

from __future__ import annotations

from typing import Any

import MySQLdb
from django.db import connections

from django_sql_sessions.backends.db import SessionStore
from tests.cluster import galera as cluster

ROUNDS = 100


def test_a_session_saved_on_one_node_loads_at_once_on_another(
    galera: str, settings: Any, report: Any
) -> None:
    missing = 0
    for i in range(ROUNDS):
        settings.SQL_SESSIONS_DB_ALIAS = "galera1"
        store = SessionStore()
        store["i"] = i
        store.save()
        settings.SQL_SESSIONS_DB_ALIAS = "galera3"
        if SessionStore(store.session_key).load().get("i") != i:
            missing += 1
    report(
        f"engine, saved on node 1 and loaded on node 3: {missing} of {ROUNDS} new sessions missing"
    )
    assert missing == 0


def test_a_change_saved_on_one_node_loads_at_once_on_another(
    galera: str, settings: Any, report: Any
) -> None:
    settings.SQL_SESSIONS_DB_ALIAS = "galera1"
    store = SessionStore()
    store["i"] = -1
    store.save()
    key = store.session_key
    stale = 0
    for i in range(ROUNDS):
        settings.SQL_SESSIONS_DB_ALIAS = "galera1"
        store = SessionStore(key)
        store["i"] = i
        store.save()
        assert store.session_key == key
        settings.SQL_SESSIONS_DB_ALIAS = "galera3"
        if SessionStore(key).load().get("i") != i:
            stale += 1
    report(f"engine, changed on node 1 and loaded on node 3: {stale} of {ROUNDS} reads stale")
    assert stale == 0


def test_plain_connections_without_sync_wait_can_read_stale(galera: str, report: Any) -> None:
    """
    The contrast, on the driver's own connections: the same write and read
    without wsrep_sync_wait may miss the row (how often is timing, so only
    reported); with it, never.
    """
    writer = MySQLdb.connect(**connections[cluster.node_alias(1)].get_connection_params())
    reader = MySQLdb.connect(**connections[cluster.node_alias(3)].get_connection_params())
    try:
        writer.autocommit(True)
        reader.autocommit(True)
        with writer.cursor() as cursor:
            cursor.execute("CREATE TABLE cluster_read_lag (id INT PRIMARY KEY)")
        missing = {}
        for sync_wait in (0, 1):
            with reader.cursor() as cursor:
                cursor.execute("SET SESSION wsrep_sync_wait = %s", [sync_wait])
            missing[sync_wait] = 0
            for i in range(ROUNDS):
                row_id = sync_wait * ROUNDS + i
                with writer.cursor() as cursor:
                    cursor.execute("INSERT INTO cluster_read_lag VALUES (%s)", [row_id])
                with reader.cursor() as cursor:
                    cursor.execute("SELECT id FROM cluster_read_lag WHERE id = %s", [row_id])
                    if cursor.fetchone() is None:
                        missing[sync_wait] += 1
        report(
            f"raw MySQLdb, inserted on node 1 and read on node 3: {missing[0]} of {ROUNDS} "
            f"missing without wsrep_sync_wait, {missing[1]} with wsrep_sync_wait = 1"
        )
        assert missing[1] == 0
    finally:
        with writer.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS cluster_read_lag")
        writer.close()
        reader.close()
