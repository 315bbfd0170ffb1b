"""
Driving the Galera cluster of clusters/galera.sh from the tests, and looking
at it through the node aliases (galera1 to galera3 in tests/settings.py).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connections

ROOT = Path(__file__).resolve().parent.parent.parent
SCRIPT = ROOT / "clusters" / "galera.sh"
NODES: tuple[str, ...] = settings.GALERA_NODES
SKIP_REASON = "Galera cluster not configured: GALERA_HOST is not set (see clusters/galera.sh)"


def configured() -> bool:
    return "galera" in settings.DATABASES


def script(*args: str, timeout: float = 240) -> str:
    """Run clusters/galera.sh (with this environment's ports and directory); return its output."""
    result = subprocess.run(
        ["bash", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"clusters/galera.sh {' '.join(args)} failed:\n{output}"
    return output


def node_alias(number: int) -> str:
    return NODES[number - 1]


def query(alias: str, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    """Rows of one statement on the alias's connection in this thread."""
    with connections[alias].cursor() as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall())


def causal_query(alias: str, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    """
    As query(), after every write committed anywhere in the cluster
    (wsrep_sync_wait), for the tests' own checks; the engine's reads are
    left as the engine makes them.
    """
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT @@SESSION.wsrep_sync_wait")
        [(before,)] = cursor.fetchall()
        cursor.execute("SET SESSION wsrep_sync_wait = 1")
        try:
            cursor.execute(sql, params)
            return list(cursor.fetchall())
        finally:
            # As it was: the engine may have set it on this connection.
            cursor.execute("SET SESSION wsrep_sync_wait = %s", [before])


def status(alias: str, name: str) -> str:
    [(_name, value)] = query(alias, "SHOW GLOBAL STATUS LIKE %s", [name])
    return str(value)


def synced_nodes() -> dict[str, tuple[str, str]]:
    """Each node alias's (wsrep_local_state_comment, wsrep_cluster_size), or the error."""
    found = {}
    for alias in NODES:
        try:
            found[alias] = (
                status(alias, "wsrep_local_state_comment"),
                status(alias, "wsrep_cluster_size"),
            )
        except Exception as exc:
            found[alias] = (type(exc).__name__, str(exc))
        finally:
            connections[alias].close()
    return found


def all_three_synced() -> bool:
    return all(state == ("Synced", "3") for state in synced_nodes().values())


def ensure_three_nodes(timeout: float = 60) -> None:
    """Start whatever node is down (a test that failed half-way), then wait for all three."""
    if all_three_synced():
        return
    script("start")
    deadline = time.monotonic() + timeout
    while not all_three_synced():
        assert time.monotonic() < deadline, f"nodes not Synced in a cluster of 3: {synced_nodes()}"
        time.sleep(0.5)


def close_connections() -> None:
    """Close this thread's connections to the cluster (a killed node leaves them broken)."""
    for alias in ("galera", *NODES):
        connections[alias].close()


def error_code(exc: BaseException) -> int | None:
    """The MySQL error number of a driver error (as Django re-raises it), if any."""
    args = exc.args
    return args[0] if args and isinstance(args[0], int) else None


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for a management command run in another process on this run's databases."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PYTHONPATH": str(ROOT),
        "SQL_SESSIONS_TEST_RUN_ID": settings.RUN_ID,
        **extra,
    }
    for server in ("POSTGRES_HOST", "MYSQL_HOST", "MSSQL_HOST"):
        env.pop(server, None)
    return env
