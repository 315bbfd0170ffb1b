from typing import Any


class EverythingElseOnDefault:
    """
    Keep every other app's tables out of the sessions database.

    SessionRouter only speaks for the session model; without a router like
    this one, "migrate --database=sessions" would also create the auth and
    admin tables there.
    """

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool | None:
        return None if db == "default" else False
