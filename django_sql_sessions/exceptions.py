"""
The package's errors. Two replace a driver's error that names neither the alias
nor the fix, in the words of checks E015 and W006/E006; logged once per process.
A DatabaseError, as the error each replaces is: the settings are right, and
code that handles database errors (the commands, retries, atomic()) still does.
"""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied
from django.db import DatabaseError

logger = logging.getLogger("django_sql_sessions")

_reported: set[object] = set()


def _logged_once(key: object, message: str) -> str:
    if key not in _reported:
        _reported.add(key)
        logger.error("%s", message)
    return message


class SessionTooLarge(ValueError):
    """The encoded session is larger than SQL_SESSIONS_MAX_SIZE; nothing was written."""

    size = 0  # bytes encoded, and SQL_SESSIONS_MAX_SIZE (set by the engine)
    limit = 0


class SessionSaveConflict(RuntimeError):
    """Other requests kept saving the session first; this request's changes were not written."""


class TooManySessions(PermissionDenied):
    """
    login() refused: the user has SQL_SESSIONS_MAX_PER_USER live sessions and
    SQL_SESSIONS_MAX_PER_USER_REFUSE is True. The request stays anonymous; a
    view catches it to say so, or Django answers 403.
    """

    limit = 0  # SQL_SESSIONS_MAX_PER_USER, set where it is raised


class SessionDatabaseReadOnly(DatabaseError):
    """The server of SQL_SESSIONS_DB_ALIAS refused a write: it is a standby or read-only."""

    FIX = (
        "Point SQL_SESSIONS_DB_ALIAS at the primary (the server that accepts writes): "
        "every login and every session change is a write. Send only other reads to replicas."
    )

    @staticmethod
    def problem(alias: str, why: str) -> str:
        """What is wrong, naming the setting and the alias (E015 and the error)."""
        return (
            f"SQL_SESSIONS_DB_ALIAS {alias!r} is a standby or read-only database server "
            f"({why}), so no session can be saved"
        )

    @classmethod
    def refused(cls, alias: str, error: BaseException) -> SessionDatabaseReadOnly:
        """The error for a write the alias's server refused."""
        why = "it refused a write: " + str(error).strip().splitlines()[0]
        return cls(_logged_once(alias, f"{cls.problem(alias, why)}. {cls.FIX}"))


class SessionTableMissing(DatabaseError):
    """A statement failed because its table does not exist on the alias (migrate not run)."""

    @staticmethod
    def fix(alias: str) -> str:
        """The command that creates the package's tables on the alias (this error and W006)."""
        return f"Run 'python manage.py migrate --database={alias}'"

    @classmethod
    def on(cls, alias: str, table: str) -> SessionTableMissing:
        """The error for a statement on a table the alias does not have ("": unnamed)."""
        named = f"table {table!r}" if table else "a table the statement needs"
        return cls(
            _logged_once(
                (alias, table),
                f"Database {alias!r} has no {named}: its migrations have not run there. "
                f"{cls.fix(alias)} to create it (if migrate has nothing to do, the table was "
                f"dropped or renamed: 'python manage.py check --database {alias}' says why).",
            )
        )


class SessionPreparedStatementLost(DatabaseError):
    """
    A statement inside a transaction failed because the server session did
    not have the prepared statement it named (or had one of that name
    already): a pooler in transaction mode (PgBouncer before 1.21) moved the
    connection to another server. PostgreSQL has aborted the transaction, so
    only its owner can run it again; statements outside transactions are
    retried unprepared instead. Raised from the driver's error, in its place.
    """

    @classmethod
    def inside_transaction(cls, alias: str) -> SessionPreparedStatementLost:
        return cls(
            f"Database {alias!r} lost a prepared statement inside a transaction, which "
            "PostgreSQL has rolled back: a connection pooler in transaction mode (PgBouncer "
            "before 1.21, or without max_prepared_statements) sent it to another server "
            "session. Prepared statements are now off for this alias. Set "
            "SQL_SESSIONS_PREPARE = False and remove OPTIONS['prepare_threshold'] for "
            "this alias, or set max_prepared_statements in PgBouncer 1.21 or later."
        )
