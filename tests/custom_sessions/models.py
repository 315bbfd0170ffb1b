"""
A session model with a column of its own, as in Django's "Extending
database-backed session engines" (and docs/usage.rst): the account id, kept
in a column so that it can be queried.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import models

from django_sql_sessions.base_session import AbstractSession

if TYPE_CHECKING:
    from django_sql_sessions.backends.db import SessionStore


class CustomSession(AbstractSession):
    account_id = models.IntegerField(null=True, db_index=True)

    @classmethod
    def get_session_store_class(cls) -> type[SessionStore]:
        from tests.custom_sessions.engine import SessionStore

        return SessionStore
