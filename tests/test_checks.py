from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.core import checks
from django.core.management import call_command
from django.core.management.base import BaseCommand, SystemCheckError
from django.core.management.commands.check import Command as Check
from django.core.management.commands.migrate import Command as Migrate
from django.core.management.commands.runserver import Command as Runserver
from django.db import OperationalError, connections
from django.db.migrations.recorder import MigrationRecorder

from django_sql_sessions.checks import (
    check_cache,
    check_routers,
    check_settings,
    check_table_exists,
    check_table_exists_at_start,
)
from django_sql_sessions.models import Session
from django_sql_sessions.routers import APP_LABEL

ROUTER = "django_sql_sessions.routers.SessionRouter"
DEDICATED_ROUTER = "django_sql_sessions.routers.DedicatedSessionRouter"


def ids(messages: list[Any]) -> list[str]:
    return [message.id for message in messages]


class ReplicaReads:
    def db_for_read(self, model: Any, **hints: Any) -> str:
        return "replica"

    def db_for_write(self, model: Any, **hints: Any) -> str:
        return "default"


class EverythingToDefault:
    def db_for_read(self, model: Any, **hints: Any) -> str:
        return "default"

    def db_for_write(self, model: Any, **hints: Any) -> str:
        return "default"


def test_a_good_configuration_passes(settings: Any) -> None:
    settings.SQL_SESSIONS_DB_ALIAS = "secondary"
    settings.DATABASE_ROUTERS = [ROUTER]
    assert check_settings(None) == []
    assert check_routers(None) == []


def test_default_alias_needs_no_router(settings: Any) -> None:
    settings.SQL_SESSIONS_DB_ALIAS = "default"
    assert check_settings(None) + check_routers(None) == []


def test_unknown_alias(settings: Any) -> None:
    settings.SQL_SESSIONS_DB_ALIAS = "sessions"
    messages = check_settings(None) + check_routers(None)
    assert ids(messages) == ["django_sql_sessions.E001"]
    assert "SQL_SESSIONS_DB_ALIAS is 'sessions'" in messages[0].msg
    assert messages[0].hint


@pytest.mark.parametrize("table", ["web-sessions", "x" * 64, ""])
def test_invalid_table_name(settings: Any, table: str) -> None:
    settings.SQL_SESSIONS_TABLE = table
    messages = check_settings(None)
    assert ids(messages) == ["django_sql_sessions.E002"]
    assert "SQL_SESSIONS_TABLE" in messages[0].msg


@pytest.mark.parametrize("size", [0, "500", 10**6])
def test_invalid_batch_size(settings: Any, size: object) -> None:
    settings.SQL_SESSIONS_CLEANUP_BATCH_SIZE = size
    messages = check_settings(None)
    assert ids(messages) == ["django_sql_sessions.E003"]
    assert "SQL_SESSIONS_CLEANUP_BATCH_SIZE" in messages[0].msg


def test_unsupported_vendor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connections["default"], "vendor", "oracle")
    messages = check_settings(None)
    assert ids(messages) == ["django_sql_sessions.E004"]
    assert "oracle" in messages[0].msg


def test_alias_that_is_a_test_mirror(settings: Any) -> None:
    settings.SQL_SESSIONS_DB_ALIAS = "replica"
    settings.DATABASE_ROUTERS = [ROUTER]
    messages = check_settings(None)
    assert ids(messages) == ["django_sql_sessions.W001"]
    assert "replica" in str(messages[0].hint)


def test_reads_routed_elsewhere_than_writes(settings: Any) -> None:
    settings.DATABASE_ROUTERS = [ReplicaReads(), ROUTER]
    messages = check_routers(None)
    assert ids(messages) == ["django_sql_sessions.E005"]
    assert "'replica'" in messages[0].msg


def test_session_router_missing_for_a_non_default_alias(settings: Any) -> None:
    settings.SQL_SESSIONS_DB_ALIAS = "secondary"
    settings.DATABASE_ROUTERS = []
    assert ids(check_routers(None)) == ["django_sql_sessions.W002"]


def test_session_router_shadowed_by_an_earlier_router(settings: Any) -> None:
    settings.SQL_SESSIONS_DB_ALIAS = "secondary"
    settings.DATABASE_ROUTERS = [EverythingToDefault(), ROUTER]
    assert ids(check_routers(None)) == ["django_sql_sessions.W003"]


def test_the_dedicated_router_needs_the_alias_setting(settings: Any) -> None:
    # Left at 'default', migrate --database=<the sessions' alias> would put
    # every other app's tables there (the router keeps them out of the alias
    # it does not know), and the session table in 'default'.
    settings.DATABASE_ROUTERS = [DEDICATED_ROUTER]
    settings.SQL_SESSIONS_DB_ALIAS = "default"
    (error,) = check_routers(None)
    assert error.id == "django_sql_sessions.E018"
    assert error.msg.startswith(
        "SQL_SESSIONS_DB_ALIAS is 'default', but 'django_sql_sessions.routers."
        "DedicatedSessionRouter' in DATABASE_ROUTERS is for sessions in a database of their own"
    )
    assert "'secondary'" in str(error.hint)
    del settings.SQL_SESSIONS_DB_ALIAS
    assert "SQL_SESSIONS_DB_ALIAS is 'default' (it is not set)" in check_routers(None)[0].msg
    settings.SQL_SESSIONS_DB_ALIAS = "secondary"
    assert check_routers(None) == []
    settings.SQL_SESSIONS_DB_ALIAS = "default"
    settings.DATABASE_ROUTERS = [ROUTER]
    assert check_routers(None) == []


def test_checks_are_registered() -> None:
    registered = checks.registry.registry.get_checks(include_deployment_checks=True)
    assert {
        check_settings,
        check_routers,
        check_table_exists,
        check_table_exists_at_start,
    } <= set(registered)
    assert checks.Tags.database in getattr(check_table_exists, "tags", ())
    # Run without --database, for runserver.
    assert not getattr(check_table_exists_at_start, "tags", ())


@contextmanager
def table_renamed(alias: str) -> Iterator[None]:
    """The session table under another name for the block (a setting changed after migrate)."""
    connection = connections[alias]
    quote = connection.ops.quote_name
    table = Session._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {quote(table)} RENAME TO {quote('moved_away')}")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {quote('moved_away')} RENAME TO {quote(table)}")


@contextmanager
def not_migrated(alias: str) -> Iterator[None]:
    """No session table, and none of the package's migrations recorded, for the block."""
    recorder = MigrationRecorder(connections[alias])
    applied = [name for app, name in recorder.applied_migrations() if app == APP_LABEL]
    assert applied
    with table_renamed(alias):
        for name in applied:
            recorder.record_unapplied(APP_LABEL, name)
        try:
            yield
        finally:
            for name in applied:
                recorder.record_applied(APP_LABEL, name)


def checks_output(command: type[BaseCommand], **kwargs: Any) -> str:
    """What the command's system checks print, run as the command runs them."""
    stderr = io.StringIO()
    command(stdout=io.StringIO(), stderr=stderr).check(**kwargs)
    return stderr.getvalue()


class TestTableExists:
    def test_present(self, alias: str) -> None:
        assert check_table_exists(None, databases=[alias]) == []

    def test_missing_after_its_migration_ran(self, alias: str) -> None:
        with table_renamed(alias):
            messages = check_table_exists(None, databases=[alias])
            assert ids(messages) == ["django_sql_sessions.E006"]
            assert "rename the table" in str(messages[0].hint)
            with pytest.raises(SystemCheckError, match="E006"):
                call_command("check", "--database", alias)

    def test_not_migrated_yet_is_a_warning(self, alias: str) -> None:
        # migrate runs this check on the alias it is about to migrate: an
        # error here would block the command that creates the table.
        with not_migrated(alias):
            messages = check_table_exists(None, databases=[alias])
            if alias == "default":
                # Django's runserver and migrate --check report it there.
                assert messages == []
            else:
                assert ids(messages) == ["django_sql_sessions.W006"]
                assert str(messages[0].hint) == (
                    f"Run 'python manage.py migrate --database={alias}'."
                )

    def test_said_by_check_and_runserver_not_by_migrate(self, alias: str) -> None:
        # check --database <alias> and runserver (which runs no database
        # check) warn; migrate --database=<alias> creates the table, and
        # warned about it while it did.
        with not_migrated(alias):
            said = {
                "check": "W006" in checks_output(Check, databases=[alias]),
                "runserver": "W006" in checks_output(Runserver),
                "migrate": "W006" in checks_output(Migrate, databases=[alias]),
            }
        expected = alias != "default"
        assert said == {"check": expected, "runserver": expected, "migrate": False}

    def test_runserver_starts_if_the_database_cannot_be_reached(
        self, alias: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from django_sql_sessions import checks as checks_module

        def unreachable(*args: Any, **kwargs: Any) -> list[Any]:
            raise OperationalError("connection refused")

        monkeypatch.setattr(checks_module, "check_table_exists", unreachable)
        assert "W006" not in checks_output(Runserver)

    def test_only_with_the_database_tag_and_alias(self, alias: str) -> None:
        with table_renamed(alias):
            assert check_table_exists(None, databases=None) == []
            assert check_table_exists(None, databases=["some_other_alias"]) == []


def test_table_changed_after_the_model_was_loaded(settings: Any) -> None:
    settings.SQL_SESSIONS_TABLE = "another_valid_table"
    messages = check_settings(None)
    assert ids(messages) == ["django_sql_sessions.E014"]
    assert "'another_valid_table'" in messages[0].msg


@pytest.mark.parametrize("value", [-1, "60", 1.5, None])
def test_invalid_touch_after(settings: Any, value: object) -> None:
    settings.SQL_SESSIONS_TOUCH_AFTER = value
    messages = check_settings(None)
    assert ids(messages) == ["django_sql_sessions.E007"]
    assert "SQL_SESSIONS_TOUCH_AFTER" in messages[0].msg


def test_touch_after_as_long_as_the_session(settings: Any) -> None:
    settings.SESSION_COOKIE_AGE = 3600
    settings.SQL_SESSIONS_TOUCH_AFTER = 3599
    assert check_settings(None) == []
    settings.SQL_SESSIONS_TOUCH_AFTER = 3600
    assert ids(check_settings(None)) == ["django_sql_sessions.W004"]


@pytest.mark.parametrize("value", [0, -1, "1MB", 1.5])
def test_invalid_max_size(settings: Any, value: object) -> None:
    settings.SQL_SESSIONS_MAX_SIZE = value
    messages = check_settings(None)
    assert ids(messages) == ["django_sql_sessions.E008"]
    assert "SQL_SESSIONS_MAX_SIZE" in messages[0].msg


@pytest.mark.parametrize(
    ("setting", "value", "check_id"),
    [
        ("SQL_SESSIONS_DEVICE_DETAILS", 1, "E010"),
        ("SQL_SESSIONS_DEVICE_DETAILS", "yes", "E010"),
        ("SQL_SESSIONS_IPV4_PREFIX", 33, "E011"),
        ("SQL_SESSIONS_IPV4_PREFIX", -1, "E011"),
        ("SQL_SESSIONS_IPV4_PREFIX", "24", "E011"),
        ("SQL_SESSIONS_IPV6_PREFIX", 129, "E012"),
        ("SQL_SESSIONS_IPV6_PREFIX", True, "E012"),
        ("SQL_SESSIONS_ACTIVITY_INTERVAL", -5, "E013"),
        ("SQL_SESSIONS_ACTIVITY_INTERVAL", 2.5, "E013"),
    ],
)
def test_invalid_device_and_activity_settings(
    settings: Any, setting: str, value: object, check_id: str
) -> None:
    setattr(settings, setting, value)
    messages = check_settings(None)
    assert ids(messages) == [f"django_sql_sessions.{check_id}"]
    assert setting in messages[0].msg
    assert messages[0].hint


def test_device_details_need_the_middleware(settings: Any) -> None:
    settings.SQL_SESSIONS_DEVICE_DETAILS = True
    assert check_settings(None) == []
    settings.MIDDLEWARE = [
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
    ]
    assert ids(check_settings(None)) == ["django_sql_sessions.W005"]
    settings.SQL_SESSIONS_DEVICE_DETAILS = False
    assert check_settings(None) == []


def test_a_galera_node_without_causal_reads_is_warned_about(
    alias: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Percona XtraDB Cluster: a Galera node that is MySQL, not MariaDB. The
    # check is tried on the MariaDB server here, which has the variable too.
    from django_sql_sessions import dialects
    from django_sql_sessions.checks import check_server

    connection = connections[alias]
    if connection.vendor != "mysql":
        assert check_server(None, databases=[alias]) == []
        return
    monkeypatch.setattr(dialects.MySQL, "galera", lambda self, connection: True)
    assert check_server(None, databases=[alias]) == []  # MariaDB: SET STATEMENT
    monkeypatch.setitem(connection.__dict__, dialects.KEPT, dialects.DIALECTS["mysql"])
    (warning,) = check_server(None, databases=[alias])
    assert warning.id == "django_sql_sessions.W007"
    assert "SET SESSION wsrep_sync_wait = 1" in str(warning.hint)
    with connection.cursor() as cursor:
        cursor.execute("SET SESSION wsrep_sync_wait = 1")
    try:
        assert check_server(None, databases=[alias]) == []
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SET SESSION wsrep_sync_wait = 0")
    monkeypatch.setattr(dialects.MySQL, "galera", lambda self, connection: False)
    with connection.cursor() as cursor:
        cursor.execute("SET SESSION wsrep_sync_wait = 0")
    assert check_server(None, databases=[alias]) == []  # not a cluster


REDIS = "django.core.cache.backends.redis.RedisCache"
TIMEOUTS = {"socket_timeout": 0.25, "socket_connect_timeout": 0.25}


@pytest.mark.parametrize(
    ("cache", "expected"),
    [
        ({"BACKEND": REDIS, "LOCATION": "redis://h:6379", "OPTIONS": TIMEOUTS}, []),
        (
            {
                "BACKEND": REDIS,
                "LOCATION": "redis://h:6379/0?socket_timeout=0.25&socket_connect_timeout=0.25",
            },
            [],
        ),
        ({"BACKEND": REDIS, "LOCATION": "redis://h:6379"}, ["django_sql_sessions.W008"]),
        (
            {"BACKEND": REDIS, "LOCATION": "redis://h", "OPTIONS": {"socket_timeout": 0.25}},
            ["django_sql_sessions.W008"],
        ),
        (
            {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
            ["django_sql_sessions.W009"],
        ),
        ({"BACKEND": "django.core.cache.backends.dummy.DummyCache"}, ["django_sql_sessions.W009"]),
        ({"BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache"}, []),
    ],
    ids=[
        "redis",
        "redis-url-options",
        "redis-no-timeouts",
        "redis-one-timeout",
        "locmem",
        "dummy",
        "memcached",
    ],
)
def test_the_cached_engines_cache(
    settings: Any, cache: dict[str, Any], expected: list[str]
) -> None:
    assert check_cache(None) == []  # the db engine needs no cache
    settings.SESSION_ENGINE = "django_sql_sessions.backends.cached_db"
    settings.CACHES = {**settings.CACHES, "sessions": cache}
    settings.SESSION_CACHE_ALIAS = "sessions"
    messages = check_cache(None)
    assert ids(messages) == expected
    if expected == ["django_sql_sessions.W008"]:
        assert "socket_connect_timeout" in messages[0].msg
        assert "OPTIONS" in str(messages[0].hint)


def test_the_cached_engines_cache_alias_must_exist(settings: Any) -> None:
    settings.SESSION_ENGINE = "django_sql_sessions.backends.cached_db"
    settings.SESSION_CACHE_ALIAS = "nowhere"
    assert ids(check_cache(None)) == ["django_sql_sessions.E017"]


def test_a_misspelled_setting_name(settings: Any) -> None:
    settings.SQL_SESSIONS_GC_FREQENCY = 0
    messages = check_settings(None)
    assert ids(messages) == ["django_sql_sessions.W010"]
    assert messages[0].msg == (
        "SQL_SESSIONS_GC_FREQENCY is not a setting of django_sql_sessions, so it is ignored."
    )
    assert messages[0].hint == "Did you mean SQL_SESSIONS_GC_FREQUENCY?"
