"""System checks, registered in SqlSessionsConfig.ready(); every ID is in the README."""

from __future__ import annotations

import difflib
import importlib.util
import sys
from collections.abc import Sequence
from types import FrameType
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning
from django.core.management.base import BaseCommand
from django.db import DatabaseError, connections, router
from django.db.migrations.recorder import MigrationRecorder

from django_sql_sessions import caching, conf
from django_sql_sessions.dialects import SUPPORTED_VENDORS, UNSUPPORTED, dialect, for_vendor
from django_sql_sessions.exceptions import SessionDatabaseReadOnly, SessionTableMissing
from django_sql_sessions.models import Session
from django_sql_sessions.routers import APP_LABEL, DedicatedSessionRouter, SessionRouter
from django_sql_sessions.storage import table_mismatch

ROUTER_PATH = "django_sql_sessions.routers.SessionRouter"
DEDICATED_ROUTER_PATH = "django_sql_sessions.routers.DedicatedSessionRouter"
MIDDLEWARE_PATH = "django_sql_sessions.middleware.SessionMiddleware"


def check_settings(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[CheckMessage]:
    errors: list[CheckMessage] = [
        Error(problem, hint=setting.fix(), id=f"django_sql_sessions.{setting.check_id}")
        for setting in conf.SETTINGS
        if (problem := setting.problem())
    ]
    if not conf.TABLE.problem() and (mismatch := table_mismatch(conf.TABLE.raw())):
        errors.append(
            Error(
                f"{mismatch}.",
                hint="The table cannot change while the process runs (override_settings "
                "included): set SQL_SESSIONS_TABLE in the settings module, before Django starts.",
                id="django_sql_sessions.E014",
            )
        )
    touch_after = None if conf.TOUCH_AFTER.problem() else conf.TOUCH_AFTER.get()
    if touch_after is not None and touch_after >= settings.SESSION_COOKIE_AGE:
        errors.append(
            Warning(
                f"SQL_SESSIONS_TOUCH_AFTER ({touch_after}s) is not shorter than "
                f"SESSION_COOKIE_AGE ({settings.SESSION_COOKIE_AGE}s): saves are skipped for "
                "at most half a session's lifetime anyway, so the setting does not mean "
                "what it says.",
                hint="Choose a small fraction of SESSION_COOKIE_AGE, such as 60 seconds.",
                id="django_sql_sessions.W004",
            )
        )
    if conf.DEVICE_DETAILS.raw() is True and MIDDLEWARE_PATH not in settings.MIDDLEWARE:
        errors.append(
            Warning(
                f"SQL_SESSIONS_DEVICE_DETAILS is True, but {MIDDLEWARE_PATH!r} is not in "
                "MIDDLEWARE, so no device details are recorded.",
                hint=f"Replace 'django.contrib.sessions.middleware.SessionMiddleware' with "
                f"{MIDDLEWARE_PATH!r} in MIDDLEWARE.",
                id="django_sql_sessions.W005",
            )
        )
    if conf.ENCRYPT.raw() is True and importlib.util.find_spec("cryptography") is None:
        errors.append(
            Error(
                "SQL_SESSIONS_ENCRYPT is True, but the cryptography package is not installed: "
                "no session could be saved.",
                hint="pip install 'django-sql-sessions[encryption]', or set "
                "SQL_SESSIONS_ENCRYPT = False.",
                id="django_sql_sessions.E023",
            )
        )
    errors += _unknown_setting_names()
    if conf.DB_ALIAS.problem():
        return errors
    alias = conf.DB_ALIAS.get()
    if for_vendor((connection := connections[alias]).vendor) is UNSUPPORTED:
        errors.append(
            Error(
                f"SQL_SESSIONS_DB_ALIAS {alias!r} is a {connection.vendor} database, which "
                "django_sql_sessions does not support.",
                hint=f"Point it at a database of one of these vendors: "
                f"{', '.join(SUPPORTED_VENDORS)}.",
                id="django_sql_sessions.E004",
            )
        )
    if settings.DATABASES[alias].get("TEST", {}).get("MIRROR"):
        errors.append(
            Warning(
                f"SQL_SESSIONS_DB_ALIAS {alias!r} is configured as a test mirror, which "
                "usually means it is a read replica.",
                hint="Sessions must be read from the database they are written to: a "
                "replica that lags behind logs users out or brings back logged-out "
                "sessions. Use a dedicated, non-replicated alias.",
                id="django_sql_sessions.W001",
            )
        )
    return errors


def _unknown_setting_names() -> list[CheckMessage]:
    known = {setting.name for setting in conf.SETTINGS}
    found: list[CheckMessage] = []
    for name in sorted(dir(settings)):
        # SQL_SESSION_ (no S) too: the easiest typo of the prefix.
        if name in known or not name.startswith(("SQL_SESSIONS_", "SQL_SESSION_")):
            continue
        close = difflib.get_close_matches(name, known, n=1)
        found.append(
            Warning(
                f"{name} is not a setting of django_sql_sessions, so it is ignored.",
                hint=f"Did you mean {close[0]}?"
                if close
                else "Its settings are listed in the README: " + ", ".join(sorted(known)) + ".",
                id="django_sql_sessions.W010",
            )
        )
    return found


def check_routers(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[CheckMessage]:
    if conf.DB_ALIAS.problem():
        return []  # reported as E001
    alias = conf.DB_ALIAS.get()
    errors: list[CheckMessage] = []
    read_alias = router.db_for_read(Session)
    write_alias = router.db_for_write(Session)
    if read_alias != write_alias:
        errors.append(
            Error(
                f"DATABASE_ROUTERS send session reads to {read_alias!r} but writes to "
                f"{write_alias!r}.",
                hint="A replica that lags behind its primary serves stale sessions: users "
                f"are logged out, or a logout is undone. List {ROUTER_PATH!r} first in "
                "DATABASE_ROUTERS so that both go to SQL_SESSIONS_DB_ALIAS.",
                id="django_sql_sessions.E005",
            )
        )
    if alias == "default" and any(isinstance(r, DedicatedSessionRouter) for r in router.routers):
        others = [a for a in settings.DATABASES if a != "default"]
        target = others[0] if len(others) == 1 else "<alias>"
        unset = "" if hasattr(settings, conf.DB_ALIAS.name) else " (it is not set)"
        errors.append(
            Error(
                f"SQL_SESSIONS_DB_ALIAS is 'default'{unset}, but {DEDICATED_ROUTER_PATH!r} "
                "in DATABASE_ROUTERS is for sessions in a database of their own: "
                f"'migrate --database={target}' would create every other app's tables "
                "there, and the session table in 'default'.",
                hint="Set SQL_SESSIONS_DB_ALIAS to the sessions' database"
                + (f" ({', '.join(map(repr, others))} in DATABASES)" if others else "")
                + f", or, to keep the sessions in 'default', use {ROUTER_PATH!r} instead.",
                id="django_sql_sessions.E018",
            )
        )
    installed = any(isinstance(r, SessionRouter) for r in router.routers)
    if not installed and alias != "default":
        errors.append(
            Warning(
                f"SQL_SESSIONS_DB_ALIAS is {alias!r} but {ROUTER_PATH!r} is not in "
                "DATABASE_ROUTERS, so migrate would create the session table in every "
                "database and model queries outside the engine would use 'default'.",
                hint=f"Add {ROUTER_PATH!r} (or DedicatedSessionRouter, for a database that "
                "holds nothing but sessions) to the start of DATABASE_ROUTERS.",
                id="django_sql_sessions.W002",
            )
        )
    elif installed and write_alias != alias:
        errors.append(
            Warning(
                f"DATABASE_ROUTERS send session writes to {write_alias!r}, not to "
                f"SQL_SESSIONS_DB_ALIAS {alias!r}: a router listed before "
                f"{ROUTER_PATH!r} claims the session model.",
                hint=f"Move {ROUTER_PATH!r} to the start of DATABASE_ROUTERS.",
                id="django_sql_sessions.W003",
            )
        )
    return errors


def check_table_exists(
    app_configs: Sequence[AppConfig] | None,
    databases: Sequence[str] | None = None,
    **kwargs: Any,
) -> list[CheckMessage]:
    """
    The session table is missing: E006 when its migration is recorded as
    applied, which migrate cannot mend; else W006, since migrate runs this
    check and an error would block the command that creates the table (and
    nothing during migrate, nor for 'default', which Django reports itself).
    """
    if conf.DB_ALIAS.problem() or conf.TABLE.problem():
        return []  # reported as E001 or E002
    alias = conf.DB_ALIAS.get()
    if not databases or alias not in databases:
        return []
    connection = connections[alias]
    table = Session._meta.db_table
    if table in connection.introspection.table_names():
        return []
    recorder = MigrationRecorder(connection)
    if not recorder.has_table() or not any(
        app == APP_LABEL for app, _name in recorder.applied_migrations()
    ):
        if alias == "default":
            return []  # runserver and migrate --check report these for 'default'
        from django.core.management.commands.migrate import Command as Migrate

        if isinstance(_command_running_checks(), Migrate):
            return []
        return [
            Warning(
                f"The session table {table!r} has not been created in database {alias!r} "
                "yet: django_sql_sessions' migrations have not run there.",
                hint=f"{SessionTableMissing.fix(alias)}.",
                id="django_sql_sessions.W006",
            )
        ]
    return [
        Error(
            f"The session table {table!r} does not exist in database {alias!r}, but "
            f"django_sql_sessions' migrations are recorded as applied there.",
            hint="The table was renamed or dropped, or SQL_SESSIONS_TABLE changed after the "
            "first migrate: rename the table in the database to match the setting, or set "
            "the setting back to the table's name.",
            id="django_sql_sessions.E006",
        )
    ]


def check_table_exists_at_start(
    app_configs: Sequence[AppConfig] | None, **kwargs: Any
) -> list[CheckMessage]:
    """
    check_table_exists() when runserver starts, which runs no database
    checks but is where a new project meets a forgotten 'migrate
    --database=<alias>'. Other commands stay off the database, as Django's do.
    """
    if conf.DB_ALIAS.problem() or conf.TABLE.problem():
        return []  # reported as E001 or E002
    alias = conf.DB_ALIAS.get()
    if alias == "default":
        return []  # Django's runserver reports unapplied migrations there
    from django.core.management.commands.runserver import Command as Runserver

    if not isinstance(_command_running_checks(), Runserver):
        return []
    try:
        return check_table_exists(app_configs, databases=[alias])
    except DatabaseError:
        return []  # a database that cannot be reached: the first request says so


def _command_running_checks() -> BaseCommand | None:
    """The management command whose checks are running: a `self` on the stack."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        found = frame.f_locals.get("self")
        if isinstance(found, BaseCommand):
            return found
        frame = frame.f_back
    return None


def check_server(
    app_configs: Sequence[AppConfig] | None,
    databases: Sequence[str] | None = None,
    **kwargs: Any,
) -> list[CheckMessage]:
    """The alias's server accepts writes (E015), and its reads wait for a Galera cluster (W007)."""
    if conf.DB_ALIAS.problem():
        return []  # reported as E001
    alias = conf.DB_ALIAS.get()
    if not databases or alias not in databases:
        return []
    connection = connections[alias]
    server = dialect(connection)
    found: list[CheckMessage] = []
    if (why := server.why_read_only(connection)) is not None:
        found.append(
            Error(
                f"{SessionDatabaseReadOnly.problem(alias, why)}.",
                hint=SessionDatabaseReadOnly.FIX,
                id="django_sql_sessions.E015",
            )
        )
    if not server.causal_reads(connection):
        found.append(
            Warning(
                f"SQL_SESSIONS_DB_ALIAS {alias!r} is a Galera cluster node whose connections "
                "read without waiting for the cluster (wsrep_sync_wait has no read bit): a "
                "session saved through one node can load as missing through another, which "
                "logs its user out.",
                hint='Add "init_command": "SET SESSION wsrep_sync_wait = 1" to the alias\'s '
                "OPTIONS in DATABASES.",
                id="django_sql_sessions.W007",
            )
        )
    return found


REDIS_TIMEOUTS = ("socket_timeout", "socket_connect_timeout")
LOCAL_CACHES = (
    "django.core.cache.backends.locmem.LocMemCache",
    "django.core.cache.backends.dummy.DummyCache",
)


def check_cache(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[CheckMessage]:
    """The cached engine's cache: configured, shared between processes, bounded in time."""
    if not caching.in_use():
        return []
    alias = settings.SESSION_CACHE_ALIAS
    if alias not in settings.CACHES:
        return [
            Error(
                f"SESSION_CACHE_ALIAS is {alias!r}, which is not an alias in CACHES.",
                hint="Point SESSION_CACHE_ALIAS at the cache the sessions are served from, "
                "such as a RedisCache.",
                id="django_sql_sessions.E017",
            )
        ]
    config = settings.CACHES[alias]
    backend = config.get("BACKEND", "")
    if backend in LOCAL_CACHES:
        return [
            Warning(
                f"The session cache {alias!r} is a {backend.rsplit('.', 1)[-1]}, which each "
                "process keeps to itself: a session logged out or revoked in one process "
                "keeps working from another's cache until the entry's TIMEOUT ends.",
                hint="Use a cache that every process shares, such as "
                "django.core.cache.backends.redis.RedisCache.",
                id="django_sql_sessions.W009",
            )
        ]
    if backend == "django.core.cache.backends.redis.RedisCache":
        # In OPTIONS, or in the URL's query string, where redis-py reads them too.
        options, location = config.get("OPTIONS", {}), str(config.get("LOCATION", ""))
        missing = [n for n in REDIS_TIMEOUTS if n not in options and f"{n}=" not in location]
        if missing:
            return [
                Warning(
                    f"The session cache {alias!r} sets no {' or '.join(missing)}: a Redis "
                    "that hangs or cannot be reached holds each request until the "
                    "operating system gives up, instead of sending it to the database.",
                    hint="Add 'socket_timeout': 0.25 and 'socket_connect_timeout': 0.25 "
                    "(seconds) to the cache's OPTIONS.",
                    id="django_sql_sessions.W008",
                )
            ]
    return []
