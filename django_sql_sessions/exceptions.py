from __future__ import annotations

from django.db import DatabaseError


class SessionTooLarge(ValueError):
    """The encoded session is larger than SQL_SESSIONS_MAX_SIZE; nothing was written."""

    # The encoded size and SQL_SESSIONS_MAX_SIZE, in bytes (set by the engine).
    size = 0
    limit = 0


class SessionSaveConflict(RuntimeError):
    """Other requests kept saving the session first; this request's changes were not written."""


class SessionDatabaseReadOnly(DatabaseError):
    """
    The server of SQL_SESSIONS_DB_ALIAS refused a write because it is a
    standby or read-only; raised from the driver's error, in its place.

    A DatabaseError, as the error it replaces is, rather than
    ImproperlyConfigured: the same settings work again once the server
    accepts writes (a failover promotes it, a maintenance ends), and code
    that already handles database errors (the commands' one-line errors,
    retries, atomic()) keeps handling this one.
    """


class SessionTableMissing(DatabaseError):
    """
    A statement failed because its table does not exist on the alias: its
    migrations have not run there (``migrate --database=<alias>`` forgotten),
    or it was dropped or renamed. Raised from the driver's error, in its
    place, naming the alias and the command that creates the table.

    A DatabaseError, as the error it replaces is, rather than
    ImproperlyConfigured: the settings are right, and running migrate mends
    it without changing them; and code that already handles database errors
    (the commands' one-line errors, atomic()) keeps handling this one.
    """
