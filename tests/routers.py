from __future__ import annotations

from typing import Any

# The apps whose tables a session database does not need.
USER_APPS = {"admin", "auth", "contenttypes", "accounts"}


class UsersOnDefault:
    """Create users, content types and admin logs on 'default' only."""

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool | None:
        if app_label in USER_APPS:
            return db == "default"
        return None
