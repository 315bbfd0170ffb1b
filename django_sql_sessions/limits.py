"""
SQL_SESSIONS_MAX_PER_USER: at a login, the user's live sessions beyond the
limit are revoked, least recently active first, or (with
SQL_SESSIONS_MAX_PER_USER_REFUSE) the login is refused. Logins of one user
take turns on the user's lock row: docs/design.rst, "At most N sessions per user".
"""

from __future__ import annotations

import dataclasses
from typing import Any

from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.db import DatabaseError, transaction
from django.db.models import F

from django_sql_sessions import conf
from django_sql_sessions.backends.db import SessionStore
from django_sql_sessions.cursors import retry_after
from django_sql_sessions.exceptions import TooManySessions
from django_sql_sessions.models import UserLock
from django_sql_sessions.signals import send_revoked
from django_sql_sessions.storage import (
    Row,
    after_commit,
    hash_key,
    session_model,
    user_id_from_session,
)


def limit_at_login(sender: object, request: Any, **kwargs: Any) -> None:
    """
    user_logged_in receiver: write the session as the user's now, keeping the
    user's live sessions within SQL_SESSIONS_MAX_PER_USER. Raise
    TooManySessions (out of login()) if the limit refuses the login.
    """
    limit = conf.MAX_PER_USER.get()
    session = getattr(request, "session", None)
    if not limit or not isinstance(session, SessionStore):
        return
    owner = user_id_from_session(session._get_session())  # type: ignore[attr-defined]
    if owner is None:
        return  # a user key login() never writes: not in the user index
    refuse = conf.MAX_PER_USER_REFUSE.get()
    try:
        revoked = _claim(session, owner, limit, refuse=refuse)
    except TooManySessions:
        # login() changed the request already: leave it as it was, anonymous.
        # The session keeps its other data (a basket) under its new key.
        for key in (SESSION_KEY, BACKEND_SESSION_KEY, HASH_SESSION_KEY):
            session.pop(key, None)
        if hasattr(request, "user"):
            # Imported here: a project without django.contrib.auth's models
            # (the benchmarks) must still start.
            from django.contrib.auth.models import AnonymousUser

            request.user = AnonymousUser()
        raise
    if revoked:
        model = session_model()
        alias = session.table().alias
        after_commit(
            alias,
            lambda: send_revoked(
                model, revoked, user_id=owner, via="limit", actor=None, using=alias
            ),
        )


def _claim(session: SessionStore, owner: str, limit: int, *, refuse: bool) -> list[str]:
    """
    Save the session as the user's, in one transaction with the user's lock
    row written first; return the key hashes of the sessions it revoked.
    """
    alias = session.table().alias
    connection = session.table().connection
    before = _state(session)
    attempt = 1
    while True:
        try:
            with transaction.atomic(using=alias):
                return _claim_locked(session, owner, limit, refuse=refuse, alias=alias)
        except DatabaseError as exc:
            # A deadlock, or a Galera certification lost to another node's
            # login of the same user: the whole claim again, if it is ours.
            if not retry_after(connection, exc, attempt):
                raise
        # The rollback took the attempt's save with it, but not what the store
        # learned from it (the row it thought it wrote): left so, the next
        # save would merge onto the stored session as if the login's keys
        # were in it already, and drop them.
        restored = _state(session, before)
        vars(session).clear()
        vars(session).update(restored)
        attempt += 1


def _state(session: SessionStore, state: dict[str, Any] | None = None) -> dict[str, Any]:
    """A copy of the store's state (or of `state`): its row and session data copied too."""
    copied = dict(vars(session) if state is None else state)
    if isinstance(row := copied.get("_row"), Row):
        copied["_row"] = dataclasses.replace(row)
    if isinstance(data := copied.get("_session_cache"), dict):
        copied["_session_cache"] = dict(data)
    return copied


def _claim_locked(
    session: SessionStore, owner: str, limit: int, *, refuse: bool, alias: str
) -> list[str]:
    locks = UserLock.objects.using(alias)
    # A write, not a SELECT ... FOR UPDATE: Galera certifies writes only, and
    # SQLite takes its one writer's lock at the first write.
    locks.bulk_create([UserLock(user_id=owner)], ignore_conflicts=True)
    locks.filter(user_id=owner).update(logins=F("logins") + 1)
    # Read after the lock: every earlier login of the user is committed. FOR
    # UPDATE reads the newest rows under MariaDB's REPEATABLE READ too.
    if session.session_key is None:
        session.create()  # login() inserts the row first (cycle_key()); a caller may not
    current = hash_key(session.session_key)  # type: ignore[arg-type]
    others = list(
        session_model()
        .objects.db_manager(alias)
        .active()
        .filter(user_id=owner)
        .exclude(key_hash=current)
        .select_for_update()
        .order_by("-updated_at", "-key_hash")
        .values_list("key_hash", flat=True)
    )
    if refuse and len(others) >= limit:
        exc = TooManySessions(
            f"The user has {len(others)} live sessions, and SQL_SESSIONS_MAX_PER_USER is "
            f"{limit}: the login was refused (SQL_SESSIONS_MAX_PER_USER_REFUSE)."
        )
        exc.limit = limit
        raise exc
    session.save()
    excess = others[limit - 1 :]
    if excess:
        # Through the storage layer: versions move and the cache is told.
        session_model().objects.using(alias).filter(key_hash__in=excess, user_id=owner).delete()
    return excess
