"""
How the tests run.

- ``nox`` (README's test command): the suite on the Python running nox, with
  the newest Django that Python supports, on SQLite and every database server
  whose settings are in the environment. It says what it ran and skipped,
  and fails if no test ran.
- ``nox -s matrix without_time_zones pg_standby lint wheel docs galera patroni``
  (.ci/run): every supported Django on every supported Python, the suite
  once with USE_TZ = False, the read-replica tests on a PostgreSQL primary
  and standby that clusters/pg-standby.sh starts and stops, ruff and mypy,
  the sdist and wheel built and checked and the wheel installed in a fresh
  venv for the example and the quick start, the Sphinx site in docs/ built
  with warnings as errors, then the Galera and Patroni tests. With
  --error-on-missing-interpreters a missing Python fails the run instead of
  being skipped.
- ``nox -s docs``: only the documentation, into docs/_build/html.
- ``nox -s galera`` (.ci/run too): starts the 3-node MariaDB Galera cluster
  behind HAProxy of clusters/galera.sh (as root), runs
  tests/cluster/test_galera_*.py against it, and stops it again if it was
  not running before.
- ``nox -s patroni`` (.ci/run too): the same for the Patroni cluster of
  clusters/patroni.sh (three PostgreSQL nodes, etcd, HAProxy to the leader)
  and tests/cluster/test_patroni_failover.py.

PostgreSQL, MariaDB/MySQL and SQL Server tests run when their connection
settings are in the environment (see README.rst), and PostgreSQL, MariaDB and
Redis also when found on this machine's default ports (tests/local_servers.py);
SQLite always runs.
"""

from __future__ import annotations

import os
import platform
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import nox
from nox.command import CommandFailed

# tests/local_servers.py, whichever directory nox was started from.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from tests import local_servers

nox.options.sessions = ["here"]
nox.options.reuse_existing_virtualenvs = True

# Which Pythons each supported Django runs on. Keep in step with the
# classifiers in setup.cfg and the README (tests/test_packaging.py checks).
SUPPORTED = {
    "6.1": ("3.12", "3.13"),
    "6.0": ("3.12", "3.13"),
    "5.2": ("3.10", "3.11", "3.12", "3.13"),
}
MATRIX = [(python, django) for django, pythons in SUPPORTED.items() for python in pythons]

TEST_REQUIREMENTS = [
    "pytest>=8.3",
    "pytest-django>=4.9",
    "hypothesis>=6.100",
    "setuptools>=77",  # the packaging test builds the wheel
    "psycopg[binary,pool]>=3.1.8",  # pool: the ASGI deployment's tests
    "redis>=4.0",  # the cached engine's tests, on Django's RedisCache
    "mssql-django>=1.6",  # SQL Server SQL is compiled offline even without a server
    "selenium>=4.20",  # drives Debian's chromium; never downloads a browser (see tests)
    "uvicorn>=0.30",  # the example behind an ASGI server
    "docutils>=0.22",  # the README must render on the package index (writer= by name)
    "ua-parser>=1.0",  # the devices extra; tests also take it away to cover its absence
    "cryptography>=42",  # the encryption extra (SQL_SESSIONS_ENCRYPT)
    "pytest-xdist>=3.6",  # the suite on every core: see run_suite()
]


# django-tidb releases, by the Django they are for (none for 6.1 yet); its
# SQL is compiled offline where one exists and mysqlclient is installed.
TIDB_BACKENDS = {"6.0": "django-tidb~=6.0.0", "5.2": "django-tidb~=5.2.0"}


def requirements(django: str) -> list[str]:
    found = [
        f"Django~={django}.0",
        *TEST_REQUIREMENTS,
        # CockroachDB SQL is compiled offline with its backend (one release
        # line per Django version).
        f"django-cockroachdb~={django}.0",
    ]
    # mysqlclient compiles against libmariadb (or libmysqlclient) headers, so
    # it is only installed where MySQL tests are asked for.
    if os.environ.get("MYSQL_HOST"):
        found.extend(mysql_requirements(django))
    return found


def mysql_requirements(django: str) -> list[str]:
    return ["mysqlclient>=2.2.1", *([TIDB_BACKENDS[django]] if django in TIDB_BACKENDS else [])]


def run_suite(session: nox.Session, django: str) -> None:
    found = local_servers.find(os.environ, need_drivers=False)
    session.install(*requirements(django))
    if found.get("MYSQL_HOST"):
        # Found here, not asked for: without the headers or a compiler to
        # build mysqlclient, the run goes on without it and says why.
        try:
            session.install(*mysql_requirements(django), silent=True)
        except CommandFailed:
            why = "it answers, but mysqlclient did not build (libmariadb-dev, pkg-config?)"
            found = local_servers.drop(found, "mysql", why)
    for name, where in local_servers.found_here(found).items():
        session.log(f"Using the {name} server {where}.")
    session.env.update(found)
    session.install("--no-deps", ".")
    # On every core (pytest-xdist): most of the suite waits on servers and
    # processes, so two workers on two cores take about 70% of one's time.
    # Each worker has its own test databases and cache prefix (tests/settings.py).
    session.run("pytest", "-n", "auto", *session.posargs)


@nox.session(python=None)
def here(session: nox.Session) -> None:
    """The suite on this Python with the newest Django it supports."""
    python = ".".join(platform.python_version_tuple()[:2])
    usable = [django for django, pythons in SUPPORTED.items() if python in pythons]
    if not usable:
        supported = sorted({p for pythons in SUPPORTED.values() for p in pythons})
        session.error(f"Python {python} is not supported; use one of {', '.join(supported)}.")
    django, others = usable[0], [d for d in SUPPORTED if d != usable[0]]
    run_suite(session, django)
    session.log(f"Ran: Django {django} on Python {python}.")
    session.log(
        f"Not run here: Django {', '.join(others)} and the other Pythons; "
        "`nox -s matrix` runs every Django on every installed supported Python."
    )


@nox.session
@nox.parametrize(
    ("python", "django"), MATRIX, ids=[f"django{django}-py{python}" for python, django in MATRIX]
)
def matrix(session: nox.Session, django: str) -> None:
    run_suite(session, django)


@nox.session(python="3.12")
def without_time_zones(session: nox.Session) -> None:
    """The suite with USE_TZ = False, on the newest Django."""
    session.env["SQL_SESSIONS_TEST_USE_TZ"] = "0"
    run_suite(session, next(iter(SUPPORTED)))


@nox.session(python="3.12")
def pg_standby(session: nox.Session) -> None:
    """
    tests/cluster/test_pg_standby.py on a PostgreSQL primary and a hot
    standby 2 s behind, which clusters/pg-standby.sh starts for the run and
    stops afterwards, whether the tests pass or not.
    """
    session.install(*requirements(next(iter(SUPPORTED))))
    session.install("--no-deps", ".")
    script = "clusters/pg-standby.sh"
    session.run(script, "start", external=True)
    try:
        exports = session.run(script, "env", external=True, silent=True)
        env = dict(
            assignment.split("=", 1)
            for line in str(exports).splitlines()
            for assignment in line.removeprefix("export ").split()
        )
        env["SQL_SESSIONS_TEST_REQUIRE"] = "pgstandby"
        session.run("pytest", "tests/cluster/test_pg_standby.py", *session.posargs, env=env)
    finally:
        session.run(script, "stop", external=True)


@nox.session(python="3.12")
def lint(session: nox.Session) -> None:
    session.install(
        *requirements("6.1"),
        "ruff>=0.8",
        "mypy>=1.13",
        "django-stubs>=5.1",
        "types-docutils",
        "nox",
    )
    session.install("--no-deps", "-e", ".")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")


@nox.session(python="3.12")
def galera(session: nox.Session) -> None:
    """tests/cluster/test_galera_*.py against the Galera cluster of clusters/galera.sh."""
    session.install(
        f"Django~={next(iter(SUPPORTED))}.0",
        "pytest>=8.3",
        "pytest-django>=4.9",
        "mysqlclient>=2.2.1",
    )
    session.install("--no-deps", ".")
    script = ("bash", "clusters/galera.sh")
    # Exit status 3: none of it is running. A cluster that was already up
    # (someone working on these tests) is left running at the end.
    status = subprocess.run([*script, "status"], capture_output=True, check=False)
    started_here = status.returncode == 3
    try:
        session.run(*script, "start", external=True)
        exports = session.run(*script, "env", external=True, silent=True)
        assert isinstance(exports, str)
        for line in exports.splitlines():
            # export NAME=VALUE, the value quoted for the shell where needed
            name, _, value = shlex.split(line)[1].partition("=")
            session.env[name] = value
        # Only the cluster (and SQLite, which always runs): the other
        # servers' tests run in the other sessions.
        for server in ("POSTGRES_HOST", "MYSQL_HOST", "MSSQL_HOST"):
            session.env[server] = ""
        session.env["SQL_SESSIONS_TEST_REQUIRE"] = "galera"
        tests = sorted(str(path) for path in Path("tests/cluster").glob("test_galera_*.py"))
        session.run("pytest", *(session.posargs or tests))
    finally:
        if started_here:
            session.run(*script, "stop", external=True)


@nox.session(python="3.12")
def patroni(session: nox.Session) -> None:
    """
    tests/cluster/test_patroni_failover.py against the Patroni cluster of
    clusters/patroni.sh (three PostgreSQL nodes, etcd, HAProxy), with the
    site under gunicorn; the cluster is stopped again if it was not running.
    """
    session.install(
        f"Django~={next(iter(SUPPORTED))}.0",
        "pytest>=8.3",
        "pytest-django>=4.9",
        "psycopg[binary]>=3.1.8",
        "gunicorn>=22",
    )
    session.install("--no-deps", ".")
    script = ("bash", "clusters/patroni.sh")
    # Exit status 3: none of it is running. A cluster that was already up
    # (someone working on these tests) is left running at the end.
    status = subprocess.run([*script, "status"], capture_output=True, check=False)
    started_here = status.returncode == 3
    try:
        session.run(*script, "start", external=True)
        exports = session.run(*script, "env", external=True, silent=True)
        assert isinstance(exports, str)
        for line in exports.splitlines():
            name, _, value = shlex.split(line)[1].partition("=")
            session.env[name] = value
        for server in ("POSTGRES_HOST", "MYSQL_HOST", "MSSQL_HOST"):
            session.env[server] = ""
        session.env["SQL_SESSIONS_TEST_REQUIRE"] = "patroni"
        session.run("pytest", *(session.posargs or ["tests/cluster/test_patroni_failover.py"]))
    finally:
        if started_here:
            session.run(*script, "stop", external=True)


@nox.session(python="3.12")
def wheel(session: nox.Session) -> None:
    """
    The package as users get it: the sdist, and the wheel built from it, by
    `python -m build`, checked with `twine check --strict`; then the wheel,
    not the checkout, installed in a fresh venv where the example project
    and the README's quick start run (tests/installed_wheel.py).
    """
    session.install("build>=1.2", "twine>=5")
    tmp = Path(session.create_tmp())
    source, dist = tmp / "source", tmp / "dist"
    for path in (source, dist):
        shutil.rmtree(path, ignore_errors=True)
    # From a copy, so the build leaves nothing in the work tree.
    shutil.copytree(
        ".",
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".nox", ".venv", "build", "dist", "*.egg-info", "_build", "*.sqlite3*"
        ),
    )
    session.run("python", "-m", "build", "--outdir", str(dist), str(source))
    session.run("twine", "check", "--strict", *sorted(str(path) for path in dist.iterdir()))
    session.run("python", "tests/installed_wheel.py", str(dist))


@nox.session(python=None)
def docs(session: nox.Session) -> None:
    """The Sphinx site in docs/: every warning and unresolved reference fails."""
    session.install("-r", "docs/requirements.txt")
    session.run(
        "sphinx-build", "-W", "--keep-going", "-n", "-b", "html", "docs", "docs/_build/html"
    )
