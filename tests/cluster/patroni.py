"""
Driving the Patroni cluster of clusters/patroni.sh from the tests: its
script, HAProxy's runtime API, and which node a connection reached.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connections

ROOT = Path(__file__).resolve().parent.parent.parent
SCRIPT = ROOT / "clusters" / "patroni.sh"
SKIP_REASON = (
    "Patroni cluster not configured: PG_PATRONI_HOST is not set (see clusters/patroni.sh)"
)
ALIASES = ("patroni", "patroni_unchecked")


def configured() -> bool:
    return "patroni" in settings.DATABASES


def script(*args: str, timeout: float = 240) -> str:
    """Run clusters/patroni.sh (with this environment's ports and directory); return its stdout."""
    result = subprocess.run(
        ["bash", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, (
        f"clusters/patroni.sh {' '.join(args)} failed:\n{result.stdout}{result.stderr}"
    )
    return result.stdout


def base_port() -> int:
    return int(os.environ.get("SQL_SESSIONS_PATRONI_PORT", "15400"))


def node_port(node: int) -> int:
    return base_port() + node


def leader() -> int:
    return int(script("leader").strip())


def kill_leader() -> int:
    """SIGKILL the leader's postmaster; return its node number."""
    return int(script("kill-leader").strip())


def whole() -> None:
    """Wait until the cluster is whole again (the killed node back as a replica)."""
    script("wait")


def synchronous(on: bool) -> None:
    script("sync", "on" if on else "off")


def haproxy(command: str) -> str:
    """One command to HAProxy's runtime API (the admin socket in the data directory)."""
    path = os.environ.get("PG_PATRONI_HAPROXY_SOCKET") or str(
        Path(os.environ.get("SQL_SESSIONS_PATRONI_DIR", "")) / "haproxy.sock"
    )
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(path)
        sock.sendall(command.encode() + b"\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()


def routed_to() -> dict[str, str]:
    """HAProxy's status of each node ("UP", "DOWN", "MAINT", ...)."""
    lines = haproxy("show stat").splitlines()
    header = lines[0].lstrip("# ").split(",")
    found = {}
    for line in lines[1:]:
        row = dict(zip(header, line.split(","), strict=False))
        if row.get("pxname") == "postgres" and row.get("svname", "").startswith("node"):
            found[row["svname"]] = row["status"]
    return found


def wait_until(what: str, predicate: Any, timeout: float = 60) -> float:
    """Poll predicate() until true; return the seconds it took."""
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < timeout, f"no {what} after {timeout}s"
        time.sleep(0.1)
    return time.monotonic() - start


def where(alias: str) -> tuple[int, bool]:
    """The node port and pg_is_in_recovery() of the server the alias's connection is on."""
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT inet_server_port(), pg_is_in_recovery()")
        port, in_recovery = cursor.fetchone()
    return int(port), bool(in_recovery)


def close_connections() -> None:
    for alias in ALIASES:
        connections[alias].close()


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for a process of this run (gunicorn, a command) on the cluster."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SQL_SESSIONS_TEST_RUN_ID": settings.RUN_ID,
        "PYTHONUNBUFFERED": "1",
        **extra,
    }
    for server in ("POSTGRES_HOST", "MYSQL_HOST", "MSSQL_HOST"):
        env[server] = ""
    return env
