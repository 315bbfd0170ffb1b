"""
Signals for the events operators and security tooling watch, each also
logged. No argument and no log message ever holds a session key: sessions
are named by their key hash (keys.hash_key(), the table's primary key).

``session_revoked``
    Sessions were deleted by a revocation. Sent once per call that deleted
    at least one row, never when it deleted none. sender: the Session model.

    - ``key_hashes`` (list[str]): the revoked sessions (as selected just
      before the delete: one that a logout deleted in between is listed,
      and one moved to a new key in between is listed under both). If a
      delete fails part way, the signal is still sent, for the sessions
      already deleted, before the error propagates.
    - ``user_id`` (str | None): their owner's user_id value for a user's
      revocation (the API, ``revokesessions``); None for the admin action,
      whose rows may belong to several users.
    - ``via`` (str): ``"api"`` (user_sessions.revoke_session(),
      revoke_all_sessions() and their async twins), ``"admin"`` (the admin's
      "revoke" action) or ``"command"`` (``revokesessions``).
    - ``actor``: who revoked them: the ``actor=`` keyword of the API
      functions, the admin's request.user; None for the command or when
      not given.
    - ``using`` (str): the database alias.

``sessions_purged``
    Expired sessions were deleted by the cleanup. Sent once per run that
    deleted at least one row (also when it then stopped on an error or an
    interrupt), never for a run that deleted none. sender: the Session model.

    - ``count`` (int): rows deleted.
    - ``seconds`` (float): how long the run took.
    - ``via`` (str): ``"command"`` (``purgesessions``),
      ``"clear_expired"`` (SessionStore.clear_expired() and its async twin,
      so Django's ``clearsessions``), ``"garbage_collection"``
      (SQL_SESSIONS_GC_FREQUENCY) or ``"api"`` (cleanup.delete_expired()
      called directly).
    - ``using`` (str): the database alias.

``session_save_merged``
    A save found that another request had saved the session since this one
    read it, and wrote this request's changes onto the newer data. sender:
    the session store class.

    - ``key_hash`` (str): the session.
    - ``changed`` (list[str]): the sorted names of the session's top-level
      entries this save set or deleted (names only, never values).
    - ``attempts`` (int): reads of the newer data it took (1 but under a
      burst of saves to one session).
    - ``using`` (str): the database alias.

``session_save_refused``
    A save was refused (UpdateError, which Django's middleware answers with
    SessionInterrupted) because the session's row was gone: logged out,
    revoked or purged while this request ran. sender: the store class.

    - ``key_hash`` (str): the session.
    - ``reason`` (str): ``"gone"``.
    - ``using`` (str): the database alias.

``session_too_large``
    A save was refused (SessionTooLarge) because the encoded session is
    larger than SQL_SESSIONS_MAX_SIZE; nothing was written. sender: the
    store class.

    - ``key_hash`` (str | None): the session, or None for a session that
      has no row yet (its first save).
    - ``size`` (int): the encoded size in bytes.
    - ``limit`` (int): SQL_SESSIONS_MAX_SIZE.
    - ``using`` (str): the database alias.

Each signal is sent with send_robust() once the statements are done, from
the thread that ran them, async twins included (they run the sync code in a
thread), and reaches sync and async receivers alike. A receiver that raises
cannot change the outcome: Django logs its error on the "django.dispatch"
logger and the operation returns, or raises its own error, as it would
have. Inside a caller's transaction the signal comes before the commit;
a receiver that must only see committed changes can defer its work with
transaction.on_commit(..., using=using).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from django.dispatch import Signal

session_revoked = Signal()
sessions_purged = Signal()
session_save_merged = Signal()
session_save_refused = Signal()
session_too_large = Signal()

# Stable names, so that handlers and levels can be set per family.
revocation_logger = logging.getLogger("django_sql_sessions.revocations")
cleanup_logger = logging.getLogger("django_sql_sessions.cleanup")
save_logger = logging.getLogger("django_sql_sessions.saves")

# Enough of a key hash to tell sessions apart in a log, as the admin shows it.
SHORT_HASH = 12


def short(key_hash: str | None) -> str:
    return "(new)" if key_hash is None else key_hash[:SHORT_HASH]


def counted(count: int, singular: str, plural: str) -> str:
    """'1 session', '3 sessions': the log says what it counts as people would."""
    return f"{count} {singular if count == 1 else plural}"


def send_revoked(
    sender: type,
    key_hashes: Sequence[str],
    *,
    user_id: str | None,
    via: str,
    actor: Any,
    using: str,
) -> None:
    if not key_hashes:
        return
    revocation_logger.info(
        "Revoked %s via %s, user id %s, by %s: %s",
        counted(len(key_hashes), "session", "sessions"),
        via,
        user_id,
        "no known user" if actor is None else f"user {getattr(actor, 'pk', actor)}",
        ", ".join(short(key_hash) for key_hash in key_hashes),
    )
    session_revoked.send_robust(
        sender,
        key_hashes=list(key_hashes),
        user_id=user_id,
        via=via,
        actor=actor,
        using=using,
    )


def send_purged(sender: type, *, count: int, seconds: float, via: str, using: str) -> None:
    if not count:
        return
    cleanup_logger.info(
        "Purged %s from database '%s' in %.3f s via %s",
        counted(count, "expired session", "expired sessions"),
        using,
        seconds,
        via,
    )
    sessions_purged.send_robust(sender, count=count, seconds=seconds, via=via, using=using)


def send_save_merged(
    sender: type, key_hash: str, *, changed: Sequence[str], attempts: int, using: str
) -> None:
    save_logger.debug(
        "Merged a save of session %s onto a newer save after %s; changed: %s",
        short(key_hash),
        counted(attempts, "attempt", "attempts"),
        ", ".join(changed) or "nothing",
    )
    session_save_merged.send_robust(
        sender, key_hash=key_hash, changed=list(changed), attempts=attempts, using=using
    )


def send_save_refused(sender: type, key_hash: str, *, using: str) -> None:
    save_logger.warning(
        "Refused a save of session %s: its row is gone (logged out, revoked or purged "
        "while the request ran)",
        short(key_hash),
    )
    session_save_refused.send_robust(sender, key_hash=key_hash, reason="gone", using=using)


def send_too_large(
    sender: type, key_hash: str | None, *, size: int, limit: int, using: str
) -> None:
    save_logger.warning(
        "Refused a save of session %s: %d bytes encoded, more than SQL_SESSIONS_MAX_SIZE (%d)",
        short(key_hash),
        size,
        limit,
    )
    session_too_large.send_robust(sender, key_hash=key_hash, size=size, limit=limit, using=using)
