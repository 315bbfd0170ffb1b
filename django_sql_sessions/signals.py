"""
Signals for the events operators and security tooling watch, each also
logged; docs/operations.rst ("Signals and logging") lists their arguments
and how they are sent. None carries a session key: sessions are named by
their key hash.
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
