from __future__ import annotations

import datetime
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.conf import settings
from django.db import connections
from django.utils import timezone

from django_sql_sessions.storage import session_table
from tests import local_servers

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
    "patroni": ("patroni", "PG_PATRONI_HOST"),
}

# Also accepted in SQL_SESSIONS_TEST_REQUIRE; each is checked where it is used.
REQUIRABLE_ELSEWHERE = {
    "mssql_offline": "tests/mssql_offline.py",
    "cockroachdb_offline": "tests/distributed_offline.py",
    "tidb_offline": "tests/distributed_offline.py",
    "browser": "tests/test_example_browser.py",
    "asgi": "tests/test_example_server.py",
    "ua_parser": "tests/conftest.py (the user_agent_parser fixture)",
    "pgbouncer": "tests/test_pgbouncer.py",
}


def required(feature: str) -> bool:
    """Whether SQL_SESSIONS_TEST_REQUIRE names the feature (CI: a missing one fails)."""
    return feature in os.environ.get("SQL_SESSIONS_TEST_REQUIRE", "").split(",")


def pytest_configure(config: pytest.Config) -> None:
    required = [v for v in os.environ.get("SQL_SESSIONS_TEST_REQUIRE", "").split(",") if v]
    for vendor in required:
        if vendor in REQUIRABLE_ELSEWHERE:
            continue
        if vendor == "redis":
            # The cached engine's tests, on REDIS_URL and on a redis-server of
            # their own (tests/test_backends_cached_db.py).
            if not settings.REDIS_URL:
                raise pytest.UsageError(
                    "SQL_SESSIONS_TEST_REQUIRE requires redis, but REDIS_URL is not set."
                )
            continue
        if vendor not in VENDORS and vendor not in CLUSTERS:
            raise pytest.UsageError(f"SQL_SESSIONS_TEST_REQUIRE names unknown {vendor!r}.")
        alias, env = VENDORS.get(vendor) or CLUSTERS[vendor]
        if alias not in settings.DATABASES:
            raise pytest.UsageError(
                f"SQL_SESSIONS_TEST_REQUIRE requires {vendor}, but {env} is not set."
            )
    stop_if_unreachable()


# The servers a run connects to, by alias: what to call them, and the prefix
# of the variables that say where they are.
SERVERS = {
    "postgresql": ("PostgreSQL", "POSTGRES"),
    "mysql": ("MariaDB/MySQL", "MYSQL"),
    "mssql": ("SQL Server", "MSSQL"),
    "pgprimary": ("The PostgreSQL primary", "PG_PRIMARY"),
    "pgstandby": ("The PostgreSQL standby", "PG_STANDBY"),
    "galera": ("Galera", "GALERA"),
    "patroni": ("The Patroni cluster (HAProxy)", "PG_PATRONI"),
}
CONNECT_TIMEOUT = 5  # seconds


def stop_if_unreachable() -> None:
    """
    A configured server that cannot be reached stops the run at once, in one
    line, instead of failing each of its tests with the same error.
    """
    for alias, (name, prefix) in SERVERS.items():
        if alias not in settings.DATABASES:
            continue
        config = settings.DATABASES[alias]
        if error := cannot_connect(alias):
            raise pytest.UsageError(
                f"{name} at {config['HOST']}:{config['PORT']} ({prefix}_HOST, "
                f"{prefix}_PORT) is unreachable: {error}"
            )
    if settings.REDIS_URL and (error := redis_cannot_connect()):
        raise pytest.UsageError(
            f"Redis at {settings.REDIS_URL} (REDIS_URL) is unreachable: {error}"
        )


def cannot_connect(alias: str) -> str | None:
    """The first line of the driver's error on connecting to the alias's server, or None."""
    connection = connections[alias]
    options = dict(connection.settings_dict["OPTIONS"])
    if connection.vendor in ("postgresql", "mysql"):
        options.setdefault("connect_timeout", CONNECT_TIMEOUT)
    # Without a database name, as the test runner connects to create the
    # test database: 'postgres' on PostgreSQL, none on MySQL.
    probe = type(connection)({**connection.settings_dict, "NAME": None, "OPTIONS": options}, alias)
    try:
        # The driver's connect, under pytest-django's block on queries.
        probe.get_new_connection(probe.get_connection_params()).close()
    except Exception as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
    return None


def redis_cannot_connect() -> str | None:
    try:
        import redis
    except ImportError:
        return None  # the cached engine's tests say so when they skip
    client = redis.Redis.from_url(
        settings.REDIS_URL, socket_timeout=CONNECT_TIMEOUT, socket_connect_timeout=CONNECT_TIMEOUT
    )
    try:
        client.ping()
    except redis.RedisError as exc:
        return str(exc).strip().splitlines()[0]
    finally:
        client.close()
    return None


def not_configured(name: str, variable: str) -> str:
    """Why a server is not used: its variable is not set, and if looked for here, why not."""
    missed = local_servers.missed_here(os.environ).get(name)
    return f"{variable} is not set" + (f", and {missed}" if missed else "")


def configured(name: str) -> str:
    """The server's name, and where it was found if it was not configured."""
    found = local_servers.found_here(os.environ).get(name)
    return f"{name} ({found})" if found else name


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = []
    for vendor, (alias, env) in VENDORS.items():
        if alias in settings.DATABASES:
            db = settings.DATABASES[alias]
            lines.append(f"{vendor}: {db.get('HOST') or db['NAME']}")
        else:
            assert env is not None
            lines.append(f"{vendor}: SKIPPED, {not_configured(vendor, env)}")
    for cluster, (alias, _env) in CLUSTERS.items():
        if alias in settings.DATABASES:
            db = settings.DATABASES[alias]
            lines.append(f"{cluster}: {db['HOST']}:{db['PORT']}")
    redis = settings.REDIS_URL or f"SKIPPED, {not_configured('redis', 'REDIS_URL')}"
    return ["databases: " + "; ".join(lines), f"redis: {redis}"]


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
        configured(name)
        for name, (alias, _env) in {**VENDORS, **CLUSTERS}.items()
        if alias in settings.DATABASES
    ]
    missing = [
        f"{vendor} ({not_configured(vendor, env)})"
        for vendor, (alias, env) in VENDORS.items()
        if alias not in settings.DATABASES and env is not None
    ]
    # The cached engine's tests on a shared Redis (tests/settings.py); those
    # on a redis-server of their own say so by their skips.
    if found_redis := local_servers.found_here(os.environ).get("redis"):
        redis = f"Redis {found_redis}"
    elif settings.REDIS_URL:
        redis = "Redis at REDIS_URL"
    else:
        redis = f"no Redis ({not_configured('redis', 'REDIS_URL')})"
    terminalreporter.write_line(
        f"Ran on Django {django.get_version()}, Python {platform.python_version()}, "
        f"databases: {', '.join(ran)}"
        + (f"; not run: {', '.join(missing)}" if missing else "")
        + f"; cache: {redis}"
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
            cursor.execute("DELETE FROM django_sql_sessions_user_lock")
            cursor.execute("DELETE FROM custom_sessions_customsession")
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


# The engines the contract tests run on: the db engine, and the cached engine
# in front of Redis and of a process-local cache (any cache without
# compare-and-set takes the same path).
CACHED_ENGINE = "django_sql_sessions.backends.cached_db"
ENGINES = {"db": None, "cached-redis": "sessions_redis", "cached-locmem": "sessions_locmem"}


def _engine_params() -> list[Any]:
    params = []
    for name, cache_alias in ENGINES.items():
        marks = []
        if cache_alias is not None and cache_alias not in settings.CACHES:
            marks.append(pytest.mark.skip(reason="redis not configured: REDIS_URL is not set"))
        params.append(pytest.param(cache_alias, id=name, marks=marks))
    return params


@pytest.fixture(params=_engine_params())
def engine(
    request: pytest.FixtureRequest, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[type[Any]]:
    """
    Run a contract test on each engine: SESSION_ENGINE is set (for the
    middleware, login() and the test client), and the name SessionStore in
    the test's module and in tests.helpers is bound to the engine's store,
    so that a test written for the db engine checks the cached one too.

    On the cached engine the cache must not fail during the test: a cache
    error would send the engine to the database and hide a broken cache.
    """
    from django_sql_sessions import caching
    from django_sql_sessions.backends import cached_db, db
    from tests import helpers

    cache_alias = request.param
    store = db.SessionStore if cache_alias is None else cached_db.SessionStore
    if cache_alias is not None:
        settings.SESSION_ENGINE = CACHED_ENGINE
        settings.SESSION_CACHE_ALIAS = cache_alias
        if cache_alias == "sessions_redis":
            ping_redis()
    for module in (request.module, helpers):
        if hasattr(module, "SessionStore"):
            monkeypatch.setattr(module, "SessionStore", store)
    caching.reset()
    errors = sum(caching.cache_errors.values())
    yield store
    if cache_alias is not None:
        assert sum(caching.cache_errors.values()) == errors, "the session cache failed"
        clear_session_cache(cache_alias)
    caching.reset()


def ping_redis() -> None:
    """Fail (when required) or skip the test if REDIS_URL does not answer."""
    from django.core.cache import caches

    try:
        caches["sessions_redis"]._cache.get_client(write=True).ping()  # type: ignore[attr-defined]
    except Exception as exc:
        message = f"Redis at REDIS_URL ({settings.REDIS_URL}) does not answer: {exc}"
        if required("redis"):
            pytest.fail(message + ", and SQL_SESSIONS_TEST_REQUIRE requires redis.")
        pytest.skip(message)


def clear_session_cache(cache_alias: str) -> None:
    """Delete this run's entries (on Redis, only keys with the run's prefix)."""
    from django.core.cache import caches

    cache = caches[cache_alias]
    if cache_alias != "sessions_redis":
        cache.clear()
        return
    client = cache._cache.get_client(write=True)  # type: ignore[attr-defined]
    keys = list(client.scan_iter(match=f"{cache.key_prefix}:*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture(params=["installed", "absent"], ids=["ua-parser", "no-ua-parser"])
def user_agent_parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """
    Each test twice: with ua-parser (the devices extra), and as if it were not
    installed. Returns whether it is there.
    """
    if request.param == "absent":
        # None in sys.modules makes `import ua_parser` raise ImportError.
        monkeypatch.setitem(sys.modules, "ua_parser", None)
        return False
    try:
        import ua_parser  # noqa: F401
    except ImportError:
        reason = "ua-parser is not installed (the devices extra)"
        if required("ua_parser"):
            pytest.fail(reason)
        pytest.skip(reason)
    return True


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    """Move timezone.now() to t0 + the given seconds (a module may have a clock of its own)."""
    t0 = timezone.now().replace(microsecond=0)

    def at(seconds: float) -> None:
        moment = t0 + datetime.timedelta(seconds=seconds)
        monkeypatch.setattr(timezone, "now", lambda: moment)

    at(0)
    return at
