from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.db import connections

from django_sql_sessions.models import session_table

# The test id of each database, its alias in tests/settings.py, and the
# environment variable that turns it on.
VENDORS = {
    "sqlite": ("default", None),
    "postgresql": ("postgresql", "POSTGRES_HOST"),
    "mysql": ("mysql", "MYSQL_HOST"),
    "mssql": ("mssql", "MSSQL_HOST"),
}

# Servers started by clusters/*.sh for tests/cluster/: the alias each
# needs in tests/settings.py, and the environment variable that turns it on.
# Also accepted in SQL_SESSIONS_TEST_REQUIRE.
CLUSTERS = {
    "pgstandby": ("pgstandby", "PG_STANDBY_HOST"),
    "galera": ("galera", "GALERA_HOST"),
}

# Also accepted in SQL_SESSIONS_TEST_REQUIRE; each is checked where it is used.
REQUIRABLE_ELSEWHERE = {
    "mssql_offline": "tests/mssql_offline.py",
    "cockroachdb_offline": "tests/distributed_offline.py",
    "tidb_offline": "tests/distributed_offline.py",
    "browser": "tests/test_example_browser.py",
    "asgi": "tests/test_example_server.py",
}


def pytest_configure(config: pytest.Config) -> None:
    required = [v for v in os.environ.get("SQL_SESSIONS_TEST_REQUIRE", "").split(",") if v]
    for vendor in required:
        if vendor in REQUIRABLE_ELSEWHERE:
            continue
        if vendor not in VENDORS and vendor not in CLUSTERS:
            raise pytest.UsageError(f"SQL_SESSIONS_TEST_REQUIRE names unknown {vendor!r}.")
        alias, env = VENDORS.get(vendor) or CLUSTERS[vendor]
        if alias not in settings.DATABASES:
            raise pytest.UsageError(
                f"SQL_SESSIONS_TEST_REQUIRE requires {vendor}, but {env} is not set."
            )


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = []
    for vendor, (alias, env) in VENDORS.items():
        if alias in settings.DATABASES:
            db = settings.DATABASES[alias]
            lines.append(f"{vendor}: {db.get('HOST') or db['NAME']}")
        else:
            lines.append(f"{vendor}: SKIPPED, {env} is not set")
    for cluster, (alias, _env) in CLUSTERS.items():
        if alias in settings.DATABASES:
            db = settings.DATABASES[alias]
            lines.append(f"{cluster}: {db['HOST']}:{db['PORT']}")
    return ["databases: " + "; ".join(lines)]


@pytest.fixture(scope="session")
def django_db_setup(django_test_environment: None, django_db_blocker: Any) -> Iterator[None]:
    """
    Create a test database on every configured alias, whatever the tests ask
    for, except the Galera nodes': theirs is the one "galera" creates.
    """
    from django.test.utils import setup_databases, teardown_databases

    aliases = set(settings.DATABASES) - set(settings.GALERA_NODES)
    with django_db_blocker.unblock():
        config = setup_databases(
            verbosity=0,
            interactive=False,
            aliases=aliases,  # type: ignore[arg-type]  # any collection works
        )
    yield
    with django_db_blocker.unblock():
        teardown_databases(config, verbosity=0)


_passed = 0


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    global _passed
    if report.when == "call" and report.passed:
        _passed += 1


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # A run in which every test was skipped (no database, no browser, a -k
    # that matched nothing runnable) proves nothing: it must not pass.
    if exitstatus == pytest.ExitCode.OK and not _passed:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    import platform

    import django

    if not _passed and not terminalreporter.stats.get("failed"):
        terminalreporter.write_line(
            "FAILED: no test ran (every test was skipped or deselected).", red=True
        )
    ran = [
        name
        for name, (alias, _env) in {**VENDORS, **CLUSTERS}.items()
        if alias in settings.DATABASES
    ]
    missing = [
        f"{vendor} ({env} is not set)"
        for vendor, (alias, env) in VENDORS.items()
        if alias not in settings.DATABASES
    ]
    terminalreporter.write_line(
        f"Ran on Django {django.get_version()}, Python {platform.python_version()}, "
        f"databases: {', '.join(ran)}" + (f"; not run: {', '.join(missing)}" if missing else "")
    )
    skipped: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else ""
        skipped[reason.removeprefix("Skipped: ")] = (
            skipped.get(reason.removeprefix("Skipped: "), 0) + 1
        )
    for reason, count in sorted(skipped.items()):
        tests = "test" if count == 1 else "tests"
        terminalreporter.write_line(f"SKIPPED {count} {tests}: {reason}", yellow=True)


def _alias_params(sqlite_alias: str = "default") -> list[Any]:
    params = []
    for vendor, (alias, env) in VENDORS.items():
        alias = sqlite_alias if vendor == "sqlite" else alias
        marks = []
        if alias not in settings.DATABASES:
            marks.append(pytest.mark.skip(reason=f"{vendor} not configured: {env} is not set"))
        params.append(pytest.param(alias, id=vendor, marks=marks))
    return params


@pytest.fixture(params=_alias_params())
def alias(
    request: pytest.FixtureRequest,
    django_db_setup: None,
    django_db_blocker: Any,
    settings: Any,
) -> Iterator[str]:
    """
    A database alias with the session table, in autocommit, set as
    SQL_SESSIONS_DB_ALIAS. Each test runs once per configured database.

    Tests run outside any wrapping transaction, as a session store does in
    production, and the session table is emptied afterwards.
    """
    yield from _use_alias(request.param, django_db_blocker, settings)


@pytest.fixture(params=_alias_params(sqlite_alias="sqlitefile"))
def threaded_alias(
    request: pytest.FixtureRequest,
    django_db_setup: None,
    django_db_blocker: Any,
    settings: Any,
) -> Iterator[str]:
    """As alias, with SQLite in a file, so that several threads can share it."""
    yield from _use_alias(request.param, django_db_blocker, settings)


def _use_alias(alias: str, django_db_blocker: Any, settings: Any) -> Iterator[str]:
    settings.SQL_SESSIONS_DB_ALIAS = alias
    connection = connections[alias]
    table = connection.ops.quote_name(session_table())
    with django_db_blocker.unblock():
        yield alias
        with connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {table}")
            cursor.execute("DELETE FROM django_session")
            cursor.execute("DELETE FROM django_sql_sessions_imported")
            cursor.execute("DELETE FROM django_sql_sessions_lease")
        # Django's own engine writes its table on 'default' (the tests that
        # move sessions in from it).
        with connections["default"].cursor() as cursor:
            cursor.execute("DELETE FROM django_session")


@pytest.fixture
def make_user(django_db_setup: None, django_db_blocker: Any) -> Iterator[Any]:
    """Create users of the current AUTH_USER_MODEL on 'default'; delete them afterwards."""
    from django.contrib.auth import get_user_model

    created: list[Any] = []

    def make(username: str = "alice", **fields: Any) -> Any:
        user = get_user_model()._default_manager.create_user(
            username=username, password="secret", **fields
        )
        created.append(user)
        return user

    with django_db_blocker.unblock():
        yield make
        for user in created:
            type(user)._default_manager.filter(pk=user.pk).delete()
