"""
A sessions alias on a server that refuses writes: a standby or replica, or a
server or connection set read-only. Sessions are written on every login, so
such an alias cannot work, and says so in the same words twice: check E015
(``manage.py check --database <alias>``) before any request, and the
SessionDatabaseReadOnly error raised by the first write the server refuses.
"""

from __future__ import annotations

import logging

from django_sql_sessions.exceptions import SessionDatabaseReadOnly

logger = logging.getLogger("django_sql_sessions")

FIX = (
    "Point SQL_SESSIONS_DB_ALIAS at the primary (the server that accepts writes): "
    "every login and every session change is a write. Send only other reads to replicas."
)

# Aliases whose refusal has been logged: once per process, not per request.
_reported: set[str] = set()


def problem(alias: str, why: str) -> str:
    """What is wrong, naming the setting and the alias (check E015 and the error)."""
    return (
        f"SQL_SESSIONS_DB_ALIAS {alias!r} is a standby or read-only database server "
        f"({why}), so no session can be saved"
    )


def refusal(alias: str, error: BaseException) -> SessionDatabaseReadOnly:
    """The error for a write the alias's server refused; logged once per alias and process."""
    message = (
        f"{problem(alias, 'it refused a write: ' + str(error).strip().splitlines()[0])}. {FIX}"
    )
    if alias not in _reported:
        _reported.add(alias)
        logger.error("%s", message)
    return SessionDatabaseReadOnly(message)
