"""
Regenerate the performance pages: every benchmark at the documented sizes,
each in its own process, each writing its stamped RST fragment and SVG chart.

    pip install -r benchmarks/requirements.txt
    POSTGRES_HOST=127.0.0.1 POSTGRES_USER=postgres MYSQL_HOST=127.0.0.1 MYSQL_USER=root \\
        python benchmarks/regenerate.py

writes docs/perf/{requests,lost_updates,cleanup,encryption,logins,pages}.{rst,svg},
and overhead.* when benchmarks/overhead.py exists. It runs, in this order:

- run.py --databases sqlite,postgresql,mysql --rows 100000 (5 runs of 1,000
  requests per engine and workload);
- lost_updates.py --databases sqlite,postgresql,mysql --workers 8 --saves 200;
- cleanup.py --databases postgresql,mysql --live 200000 --expired 1000000
  --mysql-buffer-pool-mb 1024: the batched purge and one DELETE of 1,000,000
  expired sessions under live writes. The buffer pool holds the table, as
  docs/deployment.rst advises: with MariaDB's default 128 MB the batched
  purge of 1,000,000 rows alone took over 8 minutes;
- encryption.py --databases sqlite,postgresql,mysql --rows 100000 (11 runs
  of 1,000 reads and writes per engine, encryption off and on);
- logins.py --databases sqlite,postgresql,mysql (7 runs of 300 logins,
  SQL_SESSIONS_MAX_PER_USER off and on);
- pages.py --databases sqlite,postgresql,mysql --rows 100000 (5 runs of
  200 requests to the "your sessions" list and 20 to "log out everywhere
  else", for users with 1, 10 and 50 sessions);
- overhead.py --docs DIR (with --smoke when smoke), if present.

On the 2-core CI machine that should take 22 to 30 minutes: run.py about 16
(README's last full run took 964 s), lost_updates.py under 1, cleanup.py 5
to 9, most of it MariaDB. Run it on a quiet machine: anything else running
shows up in the numbers.

With --redis URL it also runs the cached engine's benchmarks on
PostgreSQL and MariaDB (about 20 more minutes; servers.py needs wrk):
run.py --engines ours,cached,db,cached_db --redis URL (requests_redis.*),
lost_updates.py likewise (lost_updates_redis.*), cache_down.py,
servers.py and encryption.py (encryption_redis.*).

With --replicas it also runs cleanup.py --databases pg_standby,galera
--start-clusters at the same sizes (cleanup_replicas.*): the cleanup on a
PostgreSQL primary with a streaming standby and on the 3-node Galera
cluster, which it starts (clusters/pg-standby.sh, clusters/galera.sh; as
root for Galera's packages) and stops again if they were not running, with
a 1 GB buffer pool on every Galera node. The last full run took 12 minutes,
most of it Galera.

Options: --docs DIR (default docs/perf); --smoke, tiny sizes that prove the
pipeline in about a minute (the stamp's command shows the sizes, so nobody
mistakes them for measurements); --variants, also run.py's --pg-prepare,
--sqlite-wal and --growth tables (requests_prepared, requests_wal,
requests_growth; adds about 10 minutes). Set SQL_SESSIONS_BENCH_DATABASE to
use a server database other than bench_sql_sessions.

The scripts write into a temporary directory, and the files are moved into
DIR only when every script succeeded: a failure stops the run, leaves the
pages as they were, exits non-zero and says where the partial output is.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent
ROOT = BENCHMARKS.parent

DATABASES = "sqlite,postgresql,mysql"
FULL = [
    ["run.py", "--databases", DATABASES, "--rows", "100000", "--requests", "1000", "--runs", "5"],
    ["lost_updates.py", "--databases", DATABASES, "--workers", "8", "--saves", "200"],
    [
        "cleanup.py",
        "--databases",
        "postgresql,mysql",
        *["--live", "200000", "--expired", "1000000", "--mysql-buffer-pool-mb", "1024"],
    ],
    ["encryption.py", "--databases", DATABASES, "--rows", "100000", "--runs", "11"],
    ["logins.py", "--databases", DATABASES, "--logins", "300", "--runs", "7"],
    ["pages.py", "--databases", DATABASES, "--rows", "100000", "--runs", "5"],
]
SMOKE = [
    ["run.py", "--databases", DATABASES, "--rows", "200", "--requests", "20", "--runs", "2"],
    [
        "lost_updates.py",
        "--databases",
        DATABASES,
        "--workers",
        "4",
        "--saves",
        "20",
        "--runs",
        "2",
    ],
    ["cleanup.py", "--databases", "postgresql,mysql", "--smoke"],
    [
        "encryption.py",
        "--databases",
        DATABASES,
        *["--rows", "200", "--requests", "20"],
        "--runs",
        "2",
    ],
    ["logins.py", "--databases", DATABASES, "--logins", "10", "--runs", "2"],
    [
        "pages.py",
        "--databases",
        DATABASES,
        *["--rows", "200", "--requests", "20"],
        "--runs",
        "1",
    ],
]
# The cleanup on replicas: clusters of their own, started for the run.
REPLICAS = ["cleanup.py", "--databases", "pg_standby,galera", "--start-clusters"]
REPLICA_SIZES = ["--live", "200000", "--expired", "1000000", "--mysql-buffer-pool-mb", "1024"]
FOUR_WORKLOADS = ["--workloads", "read,write,new,cycle"]
VARIANTS = [
    [
        "run.py",
        "--databases",
        "postgresql",
        "--pg-prepare",
        *FOUR_WORKLOADS,
        "--engines",
        "ours,db,signed_cookies",
    ],
    ["run.py", "--databases", "sqlite", "--sqlite-wal", *FOUR_WORKLOADS, "--engines", "ours,db"],
    [
        "run.py",
        "--databases",
        "postgresql,mysql",
        "--growth",
        "10000,100000,1000000",
        "--runs",
        "3",
    ],
]
SMOKE_SIZES = {"--rows": "200", "--requests": "20", "--runs": "2", "--growth": "200,400"}


def smaller(command: list[str]) -> list[str]:
    """A variant at smoke sizes."""
    previous = ["", *command[:-1]]
    found = [SMOKE_SIZES.get(option, arg) for option, arg in zip(previous, command, strict=True)]
    for option, value in SMOKE_SIZES.items():
        if option != "--growth" and option not in found:
            found += [option, value]
    return found


FOUR_ENGINES = ["--engines", "ours,cached,db,cached_db"]
SERVERS = "postgresql,mysql"


def cache_commands(redis: str) -> list[list[str]]:
    """The cached engine's benchmarks, with Django's RedisCache at `redis`."""
    return [
        [
            *["run.py", "--databases", SERVERS, *FOUR_ENGINES],
            *["--workloads", "read,fill,miss,write,new,cycle", "--redis", redis],
        ],
        ["lost_updates.py", "--databases", SERVERS, *FOUR_ENGINES, "--redis", redis],
        ["cache_down.py", "--databases", SERVERS],
        ["servers.py", "--databases", SERVERS, "--redis", redis],
        ["encryption.py", "--databases", SERVERS, "--redis", redis],
    ]


# Smoke sizes of the cached engine's benchmarks (run.py takes SMOKE_SIZES).
CACHE_SMOKE = {
    "lost_updates.py": ["--workers", "2", "--saves", "10", "--runs", "2"],
    "cache_down.py": ["--seconds", "1"],
    "servers.py": ["--seconds", "1"],
}


def commands(
    *, smoke: bool, variants: bool, redis: str | None = None, replicas: bool = False
) -> list[list[str]]:
    found = [list(command) for command in (SMOKE if smoke else FULL)]
    if replicas:
        found.append([*REPLICAS, *(["--smoke"] if smoke else REPLICA_SIZES)])
    if variants:
        found += [smaller(command) if smoke else command for command in VARIANTS]
    for command in cache_commands(redis) if redis else []:
        if smoke:
            script = command[0]
            sized = script in {"run.py", "encryption.py"}
            command = smaller(command) if sized else command + CACHE_SMOKE[script]
        found.append(command)
    if (BENCHMARKS / "overhead.py").exists():
        found.append(["overhead.py", *(["--smoke"] if smoke else [])])
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", default=str(ROOT / "docs" / "perf"), metavar="DIR")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: prove the pipeline")
    parser.add_argument("--variants", action="store_true", help="also the run.py variants")
    parser.add_argument(
        "--redis",
        metavar="URL",
        help="also the cached engine's benchmarks, on Django's RedisCache at URL "
        "(a Redis database of their own: run.py empties it)",
    )
    parser.add_argument(
        "--replicas",
        action="store_true",
        help="also the cleanup on a PostgreSQL standby pair and a Galera cluster",
    )
    args = parser.parse_args()
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        sys.exit("regenerate: matplotlib is missing: pip install -r benchmarks/requirements.txt")
    docs = Path(args.docs)
    output = Path(tempfile.mkdtemp(prefix="perf-"))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-data-") as data:
        found = commands(
            smoke=args.smoke, variants=args.variants, redis=args.redis, replicas=args.replicas
        )
        for command in found:
            script, *options = command
            argv = [sys.executable, str(BENCHMARKS / script), *options, "--docs", str(output)]
            if script not in {"cache_down.py", "servers.py", "overhead.py"}:  # SQLite files
                argv += ["--data-dir", data]
            shown = shlex.join(["python", f"benchmarks/{script}", *options])
            print(f"regenerate: {shown}", flush=True)
            step = time.perf_counter()
            result = subprocess.run(argv, cwd=ROOT, check=False)
            if result.returncode:
                sys.exit(
                    f"regenerate: FAILED with exit status {result.returncode}: {shown}\n"
                    f"regenerate: {docs} is unchanged; partial output is in {output}"
                )
            print(f"regenerate: done in {time.perf_counter() - step:,.0f} s\n", flush=True)
    docs.mkdir(parents=True, exist_ok=True)
    for path in sorted(output.iterdir()):
        shutil.move(path, docs / path.name)
        print(f"regenerate: wrote {docs / path.name}")
    output.rmdir()
    print(f"regenerate: all done in {time.perf_counter() - started:,.0f} s")


if __name__ == "__main__":
    main()
