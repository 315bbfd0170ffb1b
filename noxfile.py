"""
The test matrix. `nox` runs the suite on every supported Django, each on the
oldest Python we can pair it with that is installed, plus the linters.

PostgreSQL, MariaDB/MySQL and SQL Server tests run when their connection
settings are in the environment (see README.rst); SQLite always runs.
"""

from __future__ import annotations

import os

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.reuse_existing_virtualenvs = True

# Keep in step with the classifiers in setup.cfg and the README (a test checks).
MATRIX = [
    {"python": "3.12", "django": "6.1"},
    {"python": "3.13", "django": "6.0"},
    {"python": "3.10", "django": "5.2"},
]

TEST_REQUIREMENTS = [
    "pytest>=8.3",
    "pytest-django>=4.9",
    "hypothesis>=6.100",
    "setuptools>=77",  # the packaging test builds the wheel
    "psycopg[binary]>=3.1.8",
    "mssql-django>=1.6",  # SQL Server SQL is compiled offline even without a server
]


def requirements(django: str) -> list[str]:
    found = [f"Django~={django}.0", *TEST_REQUIREMENTS]
    # mysqlclient compiles against libmariadb (or libmysqlclient) headers, so
    # it is only installed where MySQL tests are asked for.
    if os.environ.get("MYSQL_HOST"):
        found.append("mysqlclient>=2.2.1")
    return found


@nox.session
@nox.parametrize(
    ("python", "django"),
    [(entry["python"], entry["django"]) for entry in MATRIX],
    ids=[f"django{entry['django']}" for entry in MATRIX],
)
def tests(session: nox.Session, django: str) -> None:
    session.install(*requirements(django))
    session.install("--no-deps", ".")
    session.run("pytest", *session.posargs)


@nox.session(python="3.12")
def lint(session: nox.Session) -> None:
    session.install(*requirements("6.1"), "ruff>=0.8", "mypy>=1.13", "django-stubs>=5.1", "nox")
    session.install("--no-deps", "-e", ".")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")
