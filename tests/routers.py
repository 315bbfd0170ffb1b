from __future__ import annotations

from typing import Any

from django.db.models import Model

# The apps whose tables a session database does not need.
USER_APPS = {"admin", "auth", "contenttypes", "accounts"}


class UsersOnDefault:
    """Create users, content types and admin logs on 'default' only."""

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool | None:
        if app_label in USER_APPS:
            return db == "default"
        return None


class PgPrimaryReplicaRouter:
    """
    The primary/replica router of Django's multi-database documentation, on
    the PostgreSQL pair of tests/cluster/: reads from the standby, writes to
    the primary. Users stay on 'default', as everywhere in the suite.
    """

    def db_for_read(self, model: type[Model], **hints: Any) -> str | None:
        return None if model._meta.app_label in USER_APPS else "pgstandby"

    def db_for_write(self, model: type[Model], **hints: Any) -> str | None:
        return None if model._meta.app_label in USER_APPS else "pgprimary"

    def allow_relation(self, obj1: Model, obj2: Model, **hints: Any) -> bool | None:
        pair = {"pgprimary", "pgstandby"}
        return True if {obj1._state.db, obj2._state.db} <= pair else None
