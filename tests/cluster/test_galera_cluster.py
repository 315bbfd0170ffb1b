"""The cluster the other tests stand on, and the package's migrations on it."""

from __future__ import annotations

import subprocess
import sys

from django.conf import settings
from django.db import connections

from django_sql_sessions.storage import session_table
from tests.cluster import galera as cluster


def test_three_nodes_in_one_primary_component_refusing_tables_without_a_primary_key(
    galera: str,
) -> None:
    for alias in cluster.NODES:
        assert cluster.status(alias, "wsrep_cluster_size") == "3", alias
        assert cluster.status(alias, "wsrep_cluster_status") == "Primary", alias
        assert cluster.status(alias, "wsrep_local_state_comment") == "Synced", alias
        [(mode,)] = cluster.query(alias, "SELECT @@wsrep_mode")
        assert {"REQUIRED_PRIMARY_KEY", "STRICT_REPLICATION"} <= set(mode.split(",")), alias


def test_each_node_alias_reaches_its_own_node_and_the_one_test_database(galera: str) -> None:
    [(name,)] = cluster.query("galera", "SELECT DATABASE()")
    assert name == settings.DATABASES["galera"]["TEST"]["NAME"]
    ports = []
    for alias in cluster.NODES:
        [(port, database)] = cluster.query(alias, "SELECT @@port, DATABASE()")
        assert str(port) == settings.DATABASES[alias]["PORT"], alias
        assert database == name, alias
        ports.append(port)
    assert len(set(ports)) == 3
    # "galera" is HAProxy, in front of one of them.
    [(port,)] = cluster.query("galera", "SELECT @@port")
    assert port in ports
    assert settings.DATABASES["galera"]["PORT"] not in {str(p) for p in ports}
    # The session table the test setup made through "galera" is on every node.
    for alias in cluster.NODES:
        assert session_table() in connections[alias].introspection.table_names(), alias


def test_migrate_and_unmigrate_on_the_cluster_with_primary_keys_required(galera: str) -> None:
    # In a database of its own, with the real command in a fresh process
    # (system checks on), as a user would run it.
    database = f"{settings.DATABASES['galera']['TEST']['NAME']}_migrate"
    cluster.query("galera", f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4")
    try:
        env = cluster.subprocess_env(GALERA_DATABASE=database)

        def migrate(*target: str) -> str:
            result = subprocess.run(
                [sys.executable, "-m", "django", "migrate", *target, "--database=galera"],
                env=env,
                cwd=cluster.ROOT,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert result.returncode == 0, result.stdout + result.stderr
            return result.stdout

        assert "Applying django_sql_sessions.0001_initial... OK" in migrate("django_sql_sessions")
        tables = f"""
            SELECT t.table_name, COUNT(c.constraint_name)
            FROM information_schema.tables t
            LEFT JOIN information_schema.table_constraints c
                ON c.table_schema = t.table_schema AND c.table_name = t.table_name
                AND c.constraint_type = 'PRIMARY KEY'
            WHERE t.table_schema = '{database}'
            GROUP BY t.table_name ORDER BY t.table_name
        """
        created = cluster.causal_query(cluster.node_alias(1), tables)
        assert (session_table(), 1) in created
        assert ("django_sql_sessions_imported", 1) in created
        assert all(keys == 1 for _table, keys in created), created
        # Replicated to every node (DDL runs on all of them, in order).
        for alias in cluster.NODES[1:]:
            assert cluster.causal_query(alias, tables) == created, alias

        assert "Unapplying django_sql_sessions.0001_initial... OK" in migrate(
            "django_sql_sessions", "zero"
        )
        for alias in cluster.NODES:
            names = {name for name, _keys in cluster.causal_query(alias, tables)}
            assert session_table() not in names, alias
    finally:
        cluster.query("galera", f"DROP DATABASE `{database}`")
