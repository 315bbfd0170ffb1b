"""
DATABASE_ROUTERS = ["django_sql_sessions.routers.SessionRouter", ...]

SessionRouter pins the package's models and any AbstractSession subclass to
SQL_SESSIONS_DB_ALIAS, and returns None for the rest, so it composes. Put it
first: a router before it that sends reads to a replica would win.

DedicatedSessionRouter also keeps every other app's tables out of that alias,
for a database that holds nothing but sessions.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.db.models import Model

from django_sql_sessions import conf
from django_sql_sessions.base_session import AbstractSession

APP_LABEL = "django_sql_sessions"


def _alias() -> str | None:
    # Routers run inside Django's checks: a bad setting must reach E001, not
    # a traceback. The engine itself raises.
    try:
        return conf.DB_ALIAS.get()
    except ImproperlyConfigured:
        return None


def _pinned(model: type[Model]) -> bool:
    return model._meta.app_label == APP_LABEL or issubclass(model, AbstractSession)


def _pinned_name(app_label: str, model_name: str | None) -> bool:
    try:  # the current model: a migration's (historical) models lack abstract bases
        return app_label == APP_LABEL or bool(
            model_name and _pinned(apps.get_model(app_label, model_name))
        )
    except LookupError:  # deleted since
        return False


class SessionRouter:
    def db_for_read(self, model: type[Model], **hints: Any) -> str | None:
        return _alias() if _pinned(model) else None

    db_for_write = db_for_read

    def allow_migrate(
        self, db: str, app_label: str, model_name: str | None = None, **hints: Any
    ) -> bool | None:
        if _pinned_name(app_label, model_name):
            alias = _alias()
            return None if alias is None else db == alias
        return None


class DedicatedSessionRouter(SessionRouter):
    def allow_migrate(
        self, db: str, app_label: str, model_name: str | None = None, **hints: Any
    ) -> bool | None:
        if _pinned_name(app_label, model_name):
            return super().allow_migrate(db, app_label, model_name, **hints)
        # On "default" the project's tables belong; elsewhere the alias is the sessions'.
        if db == _alias() and db != "default":
            return False
        return None
