"""SESSION_ENGINE = "tests.custom_sessions.engine": Django's documented example, on this engine."""

from __future__ import annotations

from typing import Any

from django_sql_sessions.backends.db import SessionStore as DBStore
from tests.custom_sessions.models import CustomSession


class AccountColumn:
    @classmethod
    def get_model_class(cls) -> type[CustomSession]:
        return CustomSession

    def create_model_instance(self, data: dict[str, Any]) -> CustomSession:
        obj: CustomSession = super().create_model_instance(data)  # type: ignore[misc]
        try:
            account_id = int(data.get("_auth_user_id"))  # type: ignore[arg-type]
        except (ValueError, TypeError):
            account_id = None
        obj.account_id = account_id
        return obj


class SessionStore(AccountColumn, DBStore):
    pass
