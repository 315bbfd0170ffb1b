"""
Test settings. SQLite always runs; PostgreSQL, MariaDB/MySQL and SQL Server
run when their connection settings are in the environment (see README.rst),
and PostgreSQL, MariaDB and Redis also when found on this machine's default
ports (tests/local_servers.py).
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from tests import local_servers

# Servers on this machine's default ports, for those the environment does not
# name. Exported, so that the commands and pytest runs the tests start use
# the same ones; under the test command (noxfile.py) they were looked for
# already, and this adds nothing.
os.environ.update(local_servers.find(os.environ, need_drivers=True))

SECRET_KEY = "django-sql-sessions-tests"
USE_TZ = os.environ.get("SQL_SESSIONS_TEST_USE_TZ", "1") == "1"
TIME_ZONE = "America/Chicago"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.messages",
    "django.contrib.sessions",
    "django_sql_sessions",
    "tests.accounts",
    "tests.custom_sessions",
]

MIDDLEWARE = [
    "django_sql_sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "tests.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]
# Users live on "default" only, as they would in a project whose sessions
# have their own database; see tests/routers.py.
DATABASE_ROUTERS = ["tests.routers.UsersOnDefault"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast, tests only

SESSION_ENGINE = "django_sql_sessions.backends.db"
SQL_SESSIONS_TABLE = os.environ.get("SQL_SESSIONS_TEST_TABLE", "test_web_sessions")
# For a command run in a subprocess on another alias (tests/cluster/).
if os.environ.get("SQL_SESSIONS_TEST_DB_ALIAS"):
    SQL_SESSIONS_DB_ALIAS = os.environ["SQL_SESSIONS_TEST_DB_ALIAS"]
# Off, so no request in a test deletes rows by chance; tests/test_garbage_collection.py
# turns it on with a deterministic draw.
SQL_SESSIONS_GC_FREQUENCY = 0

# Each run gets its own server-side test databases, so parallel runs (other
# interpreters, other developers) on the same servers do not collide.
RUN_ID = os.environ.get("SQL_SESSIONS_TEST_RUN_ID") or str(os.getpid())


def _server(engine: str, prefix: str, port: str, **extra: Any) -> dict[str, Any] | None:
    host = os.environ.get(f"{prefix}_HOST")
    if not host:
        return None
    name = f"test_sql_sessions_{RUN_ID}"
    return {
        "ENGINE": engine,
        "HOST": host,
        "PORT": os.environ.get(f"{prefix}_PORT", port),
        "USER": os.environ.get(f"{prefix}_USER", ""),
        "PASSWORD": os.environ.get(f"{prefix}_PASSWORD", ""),
        "NAME": os.environ.get(f"{prefix}_DATABASE", name),
        "TEST": {"NAME": name, **extra.pop("TEST", {})},
        **extra,
    }


SERVERS = {
    "postgresql": _server("django.db.backends.postgresql", "POSTGRES", "5432"),
    "mysql": _server(
        "django.db.backends.mysql",
        "MYSQL",
        "3306",
        OPTIONS={"charset": "utf8mb4"},
        TEST={"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_unicode_ci"},
    ),
    "mssql": _server(
        "mssql",
        "MSSQL",
        "1433",
        OPTIONS={"driver": os.environ.get("MSSQL_DRIVER", "ODBC Driver 18 for SQL Server")},
    ),
}


def _read_only_mirror(alias: str, **options: Any) -> dict[str, dict[str, Any]]:
    """
    A second connection to the alias's test database whose session refuses
    writes, as a read-only server's would (tests/test_read_only.py), without
    making the shared server read-only for everyone else. A test mirror:
    Django gives it the alias's test NAME and keeps its own OPTIONS.
    """
    config = SERVERS.get(alias)
    if not config:
        return {}
    mirror = {**config, "TEST": {"MIRROR": alias}}
    mirror["OPTIONS"] = {**config.get("OPTIONS", {}), **options}
    return {f"{alias}_read_only": mirror}


def _pooled_mirror() -> dict[str, dict[str, Any]]:
    """
    The PostgreSQL test database through Django's psycopg connection pool
    (OPTIONS["pool"], which requires CONN_MAX_AGE = 0): the deployment
    docs/deployment.rst gives for ASGI (tests/test_deployment.py). A test
    mirror, as above.
    """
    config = SERVERS.get("postgresql")
    # Without psycopg_pool Django refuses the alias on first use; its tests
    # say so instead (tests/test_deployment.py).
    if not config or importlib.util.find_spec("psycopg_pool") is None:
        return {}
    options = {**config.get("OPTIONS", {}), "pool": {"min_size": 1, "max_size": 4}}
    return {
        "postgresql_pool": {
            **config,
            "CONN_MAX_AGE": 0,
            "OPTIONS": options,
            "TEST": {"MIRROR": "postgresql"},
        }
    }


def _pg_standby_pair() -> dict[str, dict[str, Any]]:
    """
    A PostgreSQL primary and its hot standby, 2 s behind (clusters/pg-standby.sh,
    tests/cluster/test_pg_standby.py), when PG_STANDBY_HOST is set. The standby
    is a test mirror of the primary: the test runner creates (and drops) the
    test database on the primary only, and the standby, which keeps its own
    HOST and PORT (a mirror takes only the primary's NAME), receives it by
    replication.
    """
    primary = _server("django.db.backends.postgresql", "PG_PRIMARY", "5452")
    standby = _server("django.db.backends.postgresql", "PG_STANDBY", "5453")
    if not (primary and standby):
        return {}
    standby["NAME"] = primary["NAME"]
    standby["TEST"] = {"MIRROR": "pgprimary"}
    return {"pgprimary": primary, "pgstandby": standby}


def _galera() -> dict[str, dict[str, Any]]:
    """
    The Galera cluster of clusters/galera.sh, for tests/cluster/: "galera"
    through HAProxy, "galera1" to "galera3" straight to each node.

    The nodes hold one database between them, which the test setup creates
    once, through "galera" (tests/conftest.py leaves the node aliases out of
    it): their NAME is that test database from the start. Not a test
    MIRROR, which would give them the name as well: check W001 takes a
    mirror for a read replica, which a Galera node is not, and the cleanup
    test runs purgesessions (checks on) with a node as the sessions alias.
    """
    galera = _server(
        "django.db.backends.mysql",
        "GALERA",
        "14300",
        OPTIONS={"charset": "utf8mb4"},
        TEST={"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_unicode_ci"},
        # As a production site behind HAProxy would: a connection kept
        # between requests, checked before its first use in each request.
        CONN_MAX_AGE=60,
        CONN_HEALTH_CHECKS=True,
    )
    if galera is None:
        return {}
    ports = [p for p in os.environ.get("GALERA_NODE_PORTS", "").split(",") if p]
    if len(ports) != len(GALERA_NODES):
        raise ImproperlyConfigured(
            f"GALERA_NODE_PORTS is {os.environ.get('GALERA_NODE_PORTS')!r}; with GALERA_HOST "
            'it must list the three nodes\' ports: eval "$(clusters/galera.sh env)".'
        )
    test_name = galera["TEST"]["NAME"]
    nodes = {
        alias: {
            **galera,
            "PORT": port,
            "NAME": test_name,
            "CONN_MAX_AGE": 0,
            "CONN_HEALTH_CHECKS": False,
            "TEST": galera["TEST"],
        }
        for alias, port in zip(GALERA_NODES, ports, strict=True)
    }
    return {"galera": galera, **nodes}


def _patroni() -> dict[str, dict[str, Any]]:
    """
    The Patroni cluster of clusters/patroni.sh, for
    tests/cluster/test_patroni_failover.py: "patroni" through HAProxy, which
    routes to the leader, as a production site would have it (a connection
    kept between requests, checked before its first use in each); and
    "patroni_unchecked", a test mirror of it without the check, to show what
    the check is for.
    """
    patroni = _server(
        "django.db.backends.postgresql",
        "PG_PATRONI",
        "15400",
        CONN_MAX_AGE=60,
        CONN_HEALTH_CHECKS=True,
        # During a failover HAProxy has no leader to send a connection to:
        # fail fast rather than wait.
        OPTIONS={"connect_timeout": 2},
    )
    if patroni is None:
        return {}
    unchecked = {**patroni, "CONN_HEALTH_CHECKS": False, "TEST": {"MIRROR": "patroni"}}
    return {"patroni": patroni, "patroni_unchecked": unchecked}


# Aliases whose test database another alias ("galera") creates.
GALERA_NODES = ("galera1", "galera2", "galera3")


# The cached engine's caches (tests/conftest.py's engine fixture): Redis
# when REDIS_URL names a server, such as redis://127.0.0.1:6379/0, and a
# process-local cache, which stands for any cache without compare-and-set.
# Keys carry the run's prefix, so parallel runs share a server safely.
REDIS_URL = os.environ.get("REDIS_URL", "")
CACHES: dict[str, dict[str, Any]] = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "sessions_locmem": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "sessions",
    },
}
if REDIS_URL:
    CACHES["sessions_redis"] = {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": f"test_sql_sessions_{RUN_ID}",
        "OPTIONS": {"socket_timeout": 0.5, "socket_connect_timeout": 0.5},
    }

DATABASES: dict[str, dict[str, Any]] = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
    # For the router and check tests: a second database, and a replica of the
    # first (a test mirror, as Django's docs configure replicas).
    "secondary": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
    # For tests with several threads, which each need their own connection
    # to one database: a file, waiting up to 20 s for SQLite's write lock.
    "sqlitefile": {
        "ENGINE": "django.db.backends.sqlite3",
        # Never used by the tests (they get TEST["NAME"]), but a command run
        # with these settings outside pytest (tests/test_migrations.py) opens
        # it: keep it out of the working tree.
        "NAME": os.path.join(tempfile.gettempdir(), f"sql_sessions_unused_{RUN_ID}.db"),
        "OPTIONS": {"timeout": 20},
        "TEST": {"NAME": os.path.join(tempfile.gettempdir(), f"test_sql_sessions_{RUN_ID}.db")},
    },
    "replica": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": ":memory:",
        "TEST": {"MIRROR": "default"},
    },
    **{alias: config for alias, config in SERVERS.items() if config},
    **_read_only_mirror("postgresql", options="-c default_transaction_read_only=on"),
    **_read_only_mirror("mysql", init_command="SET SESSION TRANSACTION READ ONLY"),
    **_pooled_mirror(),
    **_pg_standby_pair(),
    **_galera(),
    **_patroni(),
}
