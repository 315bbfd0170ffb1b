"""
The deployment docs/deployment.rst gives for ASGI, behind a real server:
uvicorn with 2 worker processes, the example's async counter, and the
sessions on PostgreSQL through Django's psycopg pool (OPTIONS["pool"],
CONN_MAX_AGE = 0; tests/asgi_pool_settings.py). 16 clients, each with its
own session, send about 200 requests at once; every one succeeds and the
server never holds more connections than its pools allow. (With
CONN_MAX_AGE = 60 instead, each request would leave a connection behind.)
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import pytest
from django.db import connections

from tests.conftest import _use_alias
from tests.servers import free_port, stop
from tests.test_example_server import (
    EXAMPLE,
    Browser,
    Server,
    _wait_for_port,
    example_copy,
    example_env,
    skip_or_fail,
)

WORKERS = 2
# Per worker process: each has a pool of its own.
POOL_MAX_SIZE = 4
CLIENTS = 16
REQUESTS_PER_CLIENT = 13  # 208 requests in all
# Besides the workers' pools: this test's own connection, which counts them.
SLACK = 2

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


@pytest.fixture
def postgresql(django_db_setup: None, django_db_blocker: Any, settings: Any) -> Iterator[str]:
    if "postgresql" not in settings.DATABASES:
        skip_or_fail("postgresql", "postgresql not configured: POSTGRES_HOST is not set")
    if importlib.util.find_spec("psycopg_pool") is None:
        skip_or_fail("postgresql", "psycopg_pool is not installed (pip install 'psycopg[pool]')")
    yield from _use_alias("postgresql", django_db_blocker, settings)


def run_pooled_server(data_dir: Path, database: dict[str, Any], table: str) -> Any:
    if importlib.util.find_spec("uvicorn") is None:
        skip_or_fail("asgi", "uvicorn is not installed, so the ASGI server cannot run")
    port = free_port()
    sessions_db = {key: database[key] for key in ("ENGINE", "HOST", "PORT", "USER", "PASSWORD")}
    env = {
        **example_env(data_dir),
        "DJANGO_SETTINGS_MODULE": "tests.asgi_pool_settings",
        "SQL_SESSIONS_TEST_POOL_DB": json.dumps(
            {
                **sessions_db,
                "NAME": database["NAME"],
                "CONN_MAX_AGE": 0,
                "OPTIONS": {"pool": {"min_size": 2, "max_size": POOL_MAX_SIZE}},
            }
        ),
        "SQL_SESSIONS_TEST_TABLE": table,
    }
    command = [
        *("-m", "uvicorn", "example.asgi:application", "--workers", str(WORKERS)),
        *("--host", "127.0.0.1", "--port", str(port), "--no-access-log"),
    ]
    log_path = data_dir / "asgi-pool-server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, *command], cwd=EXAMPLE, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    _wait_for_port(process, port, "asgi", log_path)
    return process, Server("asgi", f"http://127.0.0.1:{port}", data_dir), log_path


def backends(name: str) -> int:
    """How many connections the PostgreSQL server has to the database."""
    with connections["postgresql"].cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [name])
        (count,) = cursor.fetchone()
    return int(count)


def test_uvicorn_workers_share_their_pools(
    postgresql: str, tmp_path_factory: pytest.TempPathFactory, settings: Any
) -> None:
    database = connections["postgresql"].settings_dict
    name = database["NAME"]
    process, server, log_path = run_pooled_server(
        example_copy(tmp_path_factory, "asgi-pool"), database, settings.SQL_SESSIONS_TABLE
    )
    try:

        def client() -> list[tuple[int, int]]:
            browser = Browser(server)
            pages = [browser.get("/async/") for _ in range(REQUESTS_PER_CLIENT)]
            return [(page.status, page.visits) for page in pages]

        with ThreadPoolExecutor(CLIENTS) as pool:
            futures = [pool.submit(client) for _ in range(CLIENTS)]
            most = 0
            while wait(futures, timeout=0.05).not_done:
                most = max(most, backends(name))
            most = max(most, backends(name))
            results = [future.result() for future in futures]
    finally:
        stop(process)
    expected = [(200, visit) for visit in range(1, REQUESTS_PER_CLIENT + 1)]
    assert results == [expected] * CLIENTS, log_path.read_text(errors="replace")
    assert most <= WORKERS * POOL_MAX_SIZE + SLACK, f"{most} connections to {name}"
    # Nor did the workers warn about their connections (deployment.py).
    assert "CONN_MAX_AGE" not in log_path.read_text(errors="replace")
    # Each client's session is a row of its own.
    with connections["postgresql"].cursor() as cursor:
        table = connections["postgresql"].ops.quote_name(settings.SQL_SESSIONS_TABLE)
        cursor.execute(f"SELECT count(*) FROM {table}")
        assert cursor.fetchone() == (CLIENTS,)
    # Once the server is gone, so are its connections.
    deadline = time.monotonic() + 5
    while backends(name) > 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert backends(name) == 1
