"""
Behind real servers: requests per second and latency of each session engine
served by gunicorn (sync workers, sync views) and uvicorn (async views on the
async session API), with concurrent clients that each keep their own session.

    python benchmarks/servers.py --databases postgresql,mysql --redis redis://127.0.0.1:6379/9

The load comes from wrk (Debian's package), one connection per client;
uvicorn runs on uvloop and httptools (uvicorn[standard]). Each
configuration starts its own server processes (benchmarks/serverapp), gives
every client a session of its own first (for read and write), and counts the
database connections the server opened while it ran: PostgreSQL's
pg_stat_database.sessions, MariaDB's Connections status (server-wide: run
it on a quiet server). "peak" is the most connections to the database seen
at once (sampled every 0.2 s). Neither counts the benchmark's own two
connections (the one that reads the counters and the sampler's).

Deployments (--deployments):
- wsgi: gunicorn, CONN_MAX_AGE=60 (persistent connections, one per worker);
- asgi: uvicorn, as docs/deployment.rst advises: Django's psycopg pool
  (CONN_MAX_AGE=0) on PostgreSQL, CONN_MAX_AGE=0 elsewhere;
- asgi-persistent: uvicorn with CONN_MAX_AGE=60, the set-up that runs out of
  connections (reads only: it shows the failure, not a speed).

With --docs DIR it writes DIR/servers.rst and DIR/servers.svg.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from benchmarks import report  # noqa: E402
from benchmarks.run import (  # noqa: E402
    DATABASE_NAME,
    ENGINES,
    TABLE,
    create_database,
    server_database,
)
from tests.servers import free_port, stop  # noqa: E402

SERVER_ENGINES = ["ours", "cached", "db", "cached_db"]
WORKLOADS = ["read", "write", "create"]
DEPLOYMENTS = ["wsgi", "asgi", "asgi-persistent"]
# The pool of each uvicorn worker: its 8 clients' requests at once.
POOL = {"min_size": 2, "max_size": 8, "timeout": 10}
HEADERS = [
    "deployment",
    "engine",
    "workload",
    "requests/s",
    "p50 ms",
    "p99 ms",
    "errors",
    "connections opened",
    "peak connections",
]
COLORS = {"ours": "#1f77b4", "cached": "#17becf", "db": "#ff7f0e", "cached_db": "#2ca02c"}

LUA = """
local cookies = {%(cookies)s}
local count = 0
function setup(thread)
  count = count + 1
  thread:set("cookie", cookies[count] or "")
end
function init(args)
  headers = {}
  if cookie ~= "" then headers["Cookie"] = "sessionid=" .. cookie end
end
function request()
  return wrk.format("GET", nil, headers)
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\nRESULT {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p99_us": %%d, '
    .. '"errors": %%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""


@dataclass
class Outcome:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int
    opened: int
    peak: int


def site_settings(
    database: str, engine: str, deployment: str, redis: str | None
) -> dict[str, Any]:
    db = server_database(database, DATABASE_NAME, {})
    db["CONN_HEALTH_CHECKS"] = False
    db["CONN_MAX_AGE"] = 60
    if deployment == "asgi":
        db["CONN_MAX_AGE"] = 0
        if database == "postgresql":
            db["OPTIONS"] = {"pool": POOL}
    cache: dict[str, Any] = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    if redis:
        cache = {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": redis}
    return {
        "DATABASES": {"default": db},
        "CACHES": {"default": cache},
        "SESSION_ENGINE": ENGINES[engine],
    }


class Server:
    """gunicorn or uvicorn with two workers, serving benchmarks/serverapp."""

    def __init__(self, deployment: str, settings: dict[str, Any]) -> None:
        self.port = free_port()
        env = {
            **os.environ,
            "BENCH_SERVER_SETTINGS": json.dumps(settings, default=str),
            "DJANGO_SETTINGS_MODULE": "benchmarks.serverapp.settings",
            "PYTHONPATH": str(ROOT),
        }
        bind = ["--host", "127.0.0.1", "--port", str(self.port)]
        if deployment == "wsgi":
            command = [
                *[sys.executable, "-m", "gunicorn", "--workers", "2", "--worker-class", "sync"],
                *["--bind", f"127.0.0.1:{self.port}", "--log-level", "warning"],
                "benchmarks.serverapp.wsgi:application",
            ]
            self.prefix = "/sync"
        else:
            command = [
                *[sys.executable, "-m", "uvicorn", "--workers", "2", *bind],
                # uvicorn[standard]'s: on asyncio's own loop every request here
                # took 45 ms or more, whatever the view did.
                *["--loop", "uvloop", "--http", "httptools"],
                *["--log-level", "warning", "--no-access-log"],
                "benchmarks.serverapp.asgi:application",
            ]
            self.prefix = "/async"
        # Closed by stop(); it holds what the server said, for a failure.
        self.log = tempfile.TemporaryFile()  # noqa: SIM115
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT
        )
        self._wait()

    def url(self, workload: str) -> str:
        return f"http://127.0.0.1:{self.port}{self.prefix}/{workload}"

    def _wait(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.log.seek(0)
                sys.exit(f"the server stopped:\n{self.log.read().decode(errors='replace')}")
            try:
                urllib.request.urlopen(self.url("read"), timeout=1).read()
                return
            except OSError:
                time.sleep(0.2)
        sys.exit("the server did not answer within 30 s")

    def stop(self) -> None:
        stop(self.process, timeout=15)
        self.log.close()


def new_session(server: Server) -> str:
    """A session of its own, as a client's first visit makes it: its cookie."""
    with urllib.request.urlopen(server.url("write"), timeout=10) as response:
        for header in response.headers.get_all("Set-Cookie") or []:
            name, _, rest = str(header).partition("=")
            if name.strip() == "sessionid":
                return rest.split(";", 1)[0]
    sys.exit("the server set no session cookie")


def visit(server: Server, workload: str, cookie: str) -> None:
    headers = {"Cookie": f"sessionid={cookie}"}
    request = urllib.request.Request(server.url(workload), headers=headers)
    urllib.request.urlopen(request, timeout=10).read()


class Connections:
    """Database connections the server makes, from the server's own counters."""

    def __init__(self, alias: str) -> None:
        from django.db import connections

        self.connection = connections[alias]
        self.name = self.connection.settings_dict["NAME"]
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def opened(self) -> int:
        with self.connection.cursor() as cursor:
            if self.connection.vendor == "postgresql":
                # Counted by the server's cumulative statistics, which
                # backends report within about a second.
                cursor.execute("SELECT pg_stat_clear_snapshot()")
                cursor.execute(
                    "SELECT sessions FROM pg_stat_database WHERE datname = %s", [self.name]
                )
            else:
                cursor.execute("SHOW GLOBAL STATUS LIKE 'Connections'")
            row = cursor.fetchone()
            return int(row[-1])

    def own_id(self) -> int:
        """The server's id of this thread's connection to the database."""
        with self.connection.cursor() as cursor:
            if self.connection.vendor == "postgresql":
                cursor.execute("SELECT pg_backend_pid()")
            else:
                cursor.execute("SELECT CONNECTION_ID()")
            return int(cursor.fetchone()[0])

    def now(self, own: tuple[int, int]) -> int:
        """The connections to the database now, but `own` (the benchmark's two)."""
        with self.connection.cursor() as cursor:
            if self.connection.vendor == "postgresql":
                sql = (
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid NOT IN (%s, %s)"
                )
            else:
                sql = (
                    "SELECT count(*) FROM information_schema.processlist "
                    "WHERE db = %s AND id NOT IN (%s, %s)"
                )
            cursor.execute(sql, [self.name, *own])
            return int(cursor.fetchone()[0])

    def watch(self) -> None:
        """
        Sample the connections in use until stop(), from another thread; its
        connection is open when this returns, so that opened() read after
        it does not count it.
        """
        from django.db import connections

        self.peak = 0
        self._stop.clear()
        main = self.own_id()
        ready = threading.Event()

        def sample() -> None:
            watcher = Connections(self.connection.alias)
            try:
                own = (main, watcher.own_id())
                ready.set()
                while not self._stop.wait(0.2):
                    self.peak = max(self.peak, watcher.now(own))
            finally:
                ready.set()
                connections.close_all()

        self._thread = threading.Thread(target=sample)
        self._thread.start()
        ready.wait()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()


def clear_tables(alias: str) -> None:
    from django.db import connections

    with connections[alias].cursor() as cursor:
        cursor.execute(f"DELETE FROM {TABLE}")
        cursor.execute("DELETE FROM django_session")


def wrk(url: str, cookies: list[str], clients: int, seconds: float) -> dict[str, int]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(LUA % {"cookies": ", ".join(json.dumps(c) for c in cookies)})
    try:
        output = subprocess.run(
            [
                *["wrk", "--threads", str(clients), "--connections", str(clients)],
                *["--duration", f"{seconds}s", "--timeout", "10s", "--script", script.name, url],
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(script.name)
    for line in output.splitlines():
        if line.startswith("RESULT "):
            found: dict[str, int] = json.loads(line.removeprefix("RESULT "))
            return found
    sys.exit(f"wrk said:\n{output}")


def measure(
    alias: str,
    deployment: str,
    engine: str,
    workload: str,
    *,
    clients: int,
    seconds: float,
    redis: str | None,
) -> Outcome:
    from django.core.cache import caches

    clear_tables(alias)
    if redis:
        caches["default"].clear()
    database = "postgresql" if alias == "postgresql" else "mysql"
    server = Server(deployment, site_settings(database, engine, deployment, redis))
    try:
        cookies: list[str] = []
        if workload != "create":
            cookies = [new_session(server) for _ in range(clients)]
            for cookie in cookies:
                visit(server, workload, cookie)
        counter = Connections(alias)
        # The sampler's connection first, so that it is not counted as the
        # server's; PostgreSQL reports a new session within about a second.
        counter.watch()
        time.sleep(1.2)
        before = counter.opened()
        try:
            result = wrk(server.url(workload), cookies, clients, seconds)
        finally:
            counter.stop()
        time.sleep(1.2)
        opened = counter.opened() - before
    finally:
        server.stop()
    seconds_run = result["duration_us"] / 1e6
    return Outcome(
        requests_per_second=result["requests"] / seconds_run,
        p50_ms=result["p50_us"] / 1000,
        p99_ms=result["p99_us"] / 1000,
        errors=result["errors"],
        opened=opened,
        peak=counter.peak,
    )


def configure(names: list[str], redis: str | None) -> None:
    from benchmarks import run

    run.configure(names, Path(tempfile.gettempdir()), redis=redis)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--databases", default="postgresql,mysql")
    parser.add_argument("--engines", default=",".join(SERVER_ENGINES))
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--deployments", default=",".join(DEPLOYMENTS))
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=int, default=8, help="per configuration")
    parser.add_argument(
        "--redis",
        metavar="URL",
        help="Django's RedisCache at URL for the cached engines (a Redis database of its own)",
    )
    parser.add_argument("--docs", metavar="DIR", help="also write servers.rst and .svg there")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("servers.py needs wrk (apt-get install wrk)")
    names = args.databases.split(",")
    configure(names, args.redis)
    from benchmarks import run

    for alias in names:
        create_database(alias)
        with run.alias_under_test(alias):
            from django.core.management import call_command

            call_command("migrate", database=alias, verbosity=0)
    stamp = report.Stamp.collect(aliases=names, packages=["gunicorn", "uvicorn", "redis"])
    print(stamp.text(), end="\n\n", flush=True)
    tables: list[report.Table] = []
    panels: dict[str, dict[str, dict[str, float]]] = {}
    for alias in names:
        caption = stamp.servers.get(alias, alias)
        if args.redis:
            caption += " (Redis cache)"
        cells: list[list[report.Cell]] = []
        for deployment in args.deployments.split(","):
            workloads = args.workloads.split(",")
            if deployment == "asgi-persistent":
                workloads = ["read"]
            for workload in workloads:
                for engine in args.engines.split(","):
                    outcome = measure(
                        alias,
                        deployment,
                        engine,
                        workload,
                        clients=args.clients,
                        seconds=args.seconds,
                        redis=args.redis,
                    )
                    row: list[report.Cell] = [
                        deployment,
                        engine,
                        workload,
                        f"{outcome.requests_per_second:,.0f}",
                        f"{outcome.p50_ms:.1f}",
                        f"{outcome.p99_ms:.1f}",
                        outcome.errors,
                        outcome.opened,
                        outcome.peak,
                    ]
                    print("  ".join(str(cell) for cell in row), flush=True)
                    cells.append(row)
                    if deployment != "asgi-persistent":
                        group = panels.setdefault(f"{caption}, {deployment}", {})
                        group.setdefault(workload, {})[engine] = outcome.requests_per_second
        title = (
            f"{caption}: {args.clients} clients with a session each, "
            f"{args.seconds:g} s per configuration"
        )
        table = report.Table(title, HEADERS, cells)
        tables.append(table)
        print(table.caption, report.text_table(table.headers, table.rows), sep="\n", end="\n\n")
    if args.docs:

        def chart(path: Path) -> Path:
            return report.panel_chart(
                path,
                "Requests per second behind real servers (higher is faster)",
                panels,
                "requests/s",
                colors=COLORS,
            )

        alt = (
            "Bar charts, one per database and server: requests per second of each engine "
            "for each workload; the tables below give the numbers"
        )
        path = report.write_fragment(args.docs, "servers", stamp, tables, chart=chart, alt=alt)
        print(f"Wrote {path} and {path.with_suffix('.svg')}")


if __name__ == "__main__":
    main()
