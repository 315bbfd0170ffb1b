from __future__ import annotations

from typing import Any

from django.contrib.sessions.models import Session as DjangoSession

from django_sql_sessions.models import Session
from django_sql_sessions.routers import DedicatedSessionRouter, SessionRouter


def test_session_model_goes_to_the_configured_alias(settings: Any) -> None:
    settings.SQL_SESSIONS_DB_ALIAS = "default"
    router = SessionRouter()
    assert router.db_for_read(Session) == "default"
    assert router.db_for_write(Session) == "default"
    settings.SQL_SESSIONS_DB_ALIAS = "secondary"
    assert router.db_for_read(Session) == "secondary"
    assert router.db_for_write(Session) == "secondary"


def test_other_models_are_left_to_other_routers() -> None:
    router = SessionRouter()
    assert router.db_for_read(DjangoSession) is None
    assert router.db_for_write(DjangoSession) is None
    assert router.allow_migrate("default", "secondary") is None
    assert router.allow_migrate("default", "auth", model_name="user") is None


def test_migrations_only_on_the_configured_alias(settings: Any) -> None:
    settings.SQL_SESSIONS_DB_ALIAS = "secondary"
    router = SessionRouter()
    assert router.allow_migrate("secondary", "django_sql_sessions") is True
    assert router.allow_migrate("secondary", "django_sql_sessions", model_name="session") is True
    assert router.allow_migrate("default", "django_sql_sessions") is False


def test_dedicated_router_keeps_other_apps_out_of_the_sessions_database(settings: Any) -> None:
    settings.SQL_SESSIONS_DB_ALIAS = "secondary"
    router = DedicatedSessionRouter()
    assert router.db_for_read(Session) == router.db_for_write(Session) == "secondary"
    assert router.db_for_read(DjangoSession) is None
    assert router.allow_migrate("secondary", "django_sql_sessions") is True
    assert router.allow_migrate("default", "django_sql_sessions") is False
    for app in ("auth", "admin", "contenttypes", "sessions"):
        assert router.allow_migrate("secondary", app) is False
        assert router.allow_migrate("default", app) is None  # left to the project


def test_dedicated_router_on_default_decides_nothing_else(settings: Any) -> None:
    # Sessions on "default" share it with the project: nothing is kept out.
    settings.SQL_SESSIONS_DB_ALIAS = "default"
    router = DedicatedSessionRouter()
    assert router.allow_migrate("default", "auth") is None
    assert router.allow_migrate("default", "django_sql_sessions") is True


def test_an_invalid_alias_leaves_the_decision_to_check_e001(settings: Any) -> None:
    # Routers run inside Django's checks: raising there would hide E001
    # behind a traceback.
    settings.SQL_SESSIONS_DB_ALIAS = "sesions"
    for router in (SessionRouter(), DedicatedSessionRouter()):
        assert router.db_for_read(Session) is None
        assert router.db_for_write(Session) is None
        assert router.allow_migrate("default", "django_sql_sessions") is None
        assert router.allow_migrate("sesions", "auth") is None
