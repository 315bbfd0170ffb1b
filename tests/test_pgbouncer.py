"""
The engine behind a real PgBouncer (Debian's, 1.18: no protocol-level
prepared statements), started by these tests on a free port in front of the
PostgreSQL test server, in transaction and in session mode, with and without
Django's psycopg pool. Site processes are client processes
(tests/pgbouncer_client.py).

- In transaction mode a prepared statement goes missing as soon as another
  client holds the server connection that prepared it: the engine sends the
  statement again unprepared and stops preparing; in session mode nothing is
  lost and it keeps preparing.
- Several processes, each with several threads, load and save their own
  sessions many times: no request fails and no write is lost.

Skipped without the pgbouncer binary (Debian's pgbouncer package), unless
SQL_SESSIONS_TEST_REQUIRE names pgbouncer (CI), which fails instead.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connections

from django_sql_sessions.backends.db import SessionStore
from tests.conftest import _use_alias, required
from tests.settings import RUN_ID

ROOT = Path(__file__).resolve().parent.parent
ALIAS = "postgresql"
PORTS = range(27100, 27200)
MODES = ["transaction", "session"]
CLIENTS, THREADS, ROUNDS = 3, 3, 30
TIMEOUT = 120  # seconds, for a client process


def pgbouncer_binary() -> str:
    found = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")
    if found is None:
        reason = "pgbouncer is not installed (Debian's pgbouncer package)"
        if required("pgbouncer"):
            pytest.fail(f"{reason}, and SQL_SESSIONS_TEST_REQUIRE requires pgbouncer.")
        pytest.skip(reason)
    return found


def free_port() -> int:
    for port in PORTS:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {PORTS}")


def listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(params=MODES)
def pgbouncer(
    request: pytest.FixtureRequest, django_db_setup: None, django_db_blocker: Any, settings: Any
) -> Iterator[tuple[str, int]]:
    """PgBouncer in the mode, in front of the PostgreSQL test server: (mode, port)."""
    if ALIAS not in settings.DATABASES:
        if required("postgresql") or required("pgbouncer"):
            pytest.fail("POSTGRES_HOST is not set, and SQL_SESSIONS_TEST_REQUIRE requires it.")
        pytest.skip("postgresql not configured: POSTGRES_HOST is not set")
    binary = pgbouncer_binary()
    mode: str = request.param
    server = settings.DATABASES[ALIAS]
    # Readable by the user PgBouncer switches to when started as root (it
    # refuses to run as root).
    directory = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
    directory.chmod(0o755)
    port = free_port()
    (directory / "users.txt").write_text(f'"{server["USER"]}" "{server["PASSWORD"]}"\n')
    lines = [
        "[databases]",
        f"* = host={server['HOST']} port={server['PORT']}",
        "[pgbouncer]",
        "listen_addr = 127.0.0.1",
        f"listen_port = {port}",
        "unix_socket_dir =",
        "auth_type = trust",
        f"auth_file = {directory / 'users.txt'}",
        f"pool_mode = {mode}",
        # Several server connections, so that a client meets more than one.
        "default_pool_size = 6",
        "max_client_conn = 100",
        "ignore_startup_parameters = extra_float_digits,options",
    ]
    if os.geteuid() == 0:
        lines.append("user = postgres")
    config = directory / "pgbouncer.ini"
    config.write_text("\n".join(lines) + "\n")
    for path in directory.iterdir():
        path.chmod(0o644)
    log = (directory / "log").open("wb")
    process = subprocess.Popen([binary, str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while not listening(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"pgbouncer did not start on port {port}:\n"
                    + (directory / "log").read_text(errors="replace")
                )
            time.sleep(0.05)
        for _alias in _use_alias(ALIAS, django_db_blocker, settings):
            yield mode, port
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(params=[False, True], ids=["no_pool", "django_pool"])
def pool(request: pytest.FixtureRequest) -> bool:
    flag: bool = request.param
    return flag


def client(port: int, pool: bool, *args: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.pgbouncer_client", str(port), str(int(pool))]
        + [str(arg) for arg in args],
        cwd=ROOT,
        # The run's test database, as tests/settings.py names it.
        env={**os.environ, "PYTHONPATH": str(ROOT), "SQL_SESSIONS_TEST_RUN_ID": RUN_ID},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def result(process: subprocess.Popen[str]) -> tuple[dict[str, Any], str]:
    """The client's JSON answer, and what it logged."""
    out, err = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 0, err
    found: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    assert found["errors"] == [], "\n".join(found["errors"])
    return found, err


def stored(sessions: dict[str, int]) -> dict[str, int]:
    """Each session's counter, read from PostgreSQL directly."""
    connections[ALIAS].close()
    return {key: SessionStore(key).load().get("n", -1) for key in sessions}


def test_a_lost_prepared_statement_is_sent_again(pgbouncer: tuple[str, int], pool: bool) -> None:
    mode, port = pgbouncer
    found, logged = result(client(port, pool, "probe"))
    assert stored(found["sessions"]) == found["sessions"]
    if mode == "transaction":
        assert found["unprepared"], logged
        assert "lost a prepared statement" in logged
        assert "PgBouncer" in logged
        assert "SQL_SESSIONS_PREPARE" in logged
    else:
        # One client, one server session: nothing to lose, and no warning.
        assert not found["unprepared"], logged
        assert "lost a prepared statement" not in logged


def test_many_clients_never_fail_and_never_lose_a_write(
    pgbouncer: tuple[str, int], pool: bool
) -> None:
    _mode, port = pgbouncer
    processes = [client(port, pool, "load", THREADS, ROUNDS) for _ in range(CLIENTS)]
    sessions: dict[str, int] = {}
    for process in processes:
        found, _logged = result(process)
        sessions.update(found["sessions"])
    assert len(sessions) == CLIENTS * THREADS
    assert set(sessions.values()) == {ROUNDS}
    assert stored(sessions) == sessions
