from __future__ import annotations


class SessionTooLarge(ValueError):
    """The encoded session is larger than SQL_SESSIONS_MAX_SIZE; nothing was written."""


class SessionSaveConflict(RuntimeError):
    """Other requests kept saving the session first; this request's changes were not written."""
