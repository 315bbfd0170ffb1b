"""
Helpers for tests (and benchmarks) that run servers of their own or need a
server to misbehave.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time

from django.db import connections

REDIS_SERVER = shutil.which("redis-server")


def free_port() -> int:
    # The port may be taken again before the server binds it; unlikely, and
    # the server's start-up check then reports the server's own error.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def stop(process: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """Ask a server process to stop; kill it if it has not within `timeout` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class RedisServer:
    """A redis-server of one's own on a free port, keeping nothing on disk, to kill or pause."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it (again, on the same port, empty) and wait until it answers."""
        import redis

        assert REDIS_SERVER is not None, "redis-server is not on PATH"
        no_persistence = ["--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", *no_persistence],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_timeout=1)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        client.close()

    def signal(self, number: int) -> None:
        assert self.process is not None
        self.process.send_signal(number)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        assert self.process is not None
        self.process.wait()

    def stop(self) -> None:
        """Kill it if it runs, paused or not."""
        if self.process is not None and self.process.poll() is None:
            self.signal(signal.SIGCONT)
            self.kill()


def kill(alias: str) -> None:
    """End the alias's server session from another connection, as a failover would."""
    connection = connections[alias]
    params = connection.get_connection_params()
    if connection.vendor == "postgresql":
        import psycopg

        pid = connection.connection.info.backend_pid
        params.pop("cursor_factory", None)
        params.pop("context", None)
        with psycopg.connect(**params, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    else:
        import MySQLdb

        thread_id = connection.connection.thread_id()
        admin = MySQLdb.connect(**params)
        try:
            admin.cursor().execute(f"KILL {int(thread_id)}")
        finally:
            admin.close()
