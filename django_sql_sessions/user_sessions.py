"""
List and revoke a user's sessions by the indexed user_id column; each function
takes a user or a primary key value and has an async twin (README, "Users' sessions").
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.base import SessionBase
from django.core.exceptions import ValidationError
from django.db import models

from django_sql_sessions.devices import device_name
from django_sql_sessions.keys import is_key_hash, is_valid_key
from django_sql_sessions.signals import counted, send_revoked
from django_sql_sessions.storage import (
    IN_LIST_SIZE,
    USER_ID_MAX_LENGTH,
    hash_key,
    session_model,
    table,
)

logger = logging.getLogger("django_sql_sessions.revocations")

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser


@dataclasses.dataclass(frozen=True)
class UserSession:
    id: str  # the key hash: names the session in forms, but is no cookie
    created_at: datetime.datetime
    last_activity: datetime.datetime
    expire_date: datetime.datetime
    ip: str | None  # None unless SQL_SESSIONS_DEVICE_DETAILS recorded it
    user_agent: str | None
    current: bool  # the session passed as `current`

    @property
    def device_name(self) -> str:
        """The user agent for people to read: "Firefox 140 on Windows" (see devices.py)."""
        return device_name(self.user_agent)


def user_id(user: object) -> str:
    """
    The user_id column's value for a user instance or a primary key value.

    Raise ValueError for an anonymous or unsaved user, a value that is not a
    valid primary key of the user model, or a key too long to be indexed.
    """
    model = get_user_model()
    pk_field = model._meta.pk
    assert pk_field is not None
    if getattr(user, "is_anonymous", False) is True:
        raise ValueError("An anonymous user has no sessions in the user index.")
    if isinstance(user, models.Model):
        if not isinstance(user, model):
            raise ValueError(f"{user!r} is not a {model.__name__}.")
        if user.pk is None:
            raise ValueError(f"{user!r} is not saved, so it has no sessions.")
        value = pk_field.value_to_string(user)
    else:
        try:
            python = pk_field.to_python(user)
        except ValidationError:
            python = None
        if python is None or python == "":
            raise ValueError(
                f"{user!r} is not a valid primary key for {model.__name__} "
                f"({type(pk_field).__name__})."
            ) from None
        value = str(python)
    if len(value) > USER_ID_MAX_LENGTH:
        raise ValueError(
            f"The user's primary key is {len(value)} characters long; sessions are "
            f"indexed for keys of up to {USER_ID_MAX_LENGTH}."
        )
    return value


def users_by_id(user_ids: Collection[str]) -> dict[str, AbstractBaseUser]:
    """The users of these user_id values, with one query; missing ones are left out."""
    user_model = get_user_model()
    pk_field = user_model._meta.pk
    assert pk_field is not None
    pks: dict[str, Any] = {}
    for user_id in user_ids:
        try:
            pk = pk_field.to_python(user_id)
            pk_field.run_validators(pk)  # out of range, the query would fail
        except ValidationError:
            continue  # not a key of this user model, so no user has it
        pks[user_id] = pk
    if not pks:
        return {}
    # Through the manager: the routers choose the users' database.
    found = {user.pk: user for user in user_model._default_manager.filter(pk__in=pks.values())}
    return {user_id: found[pk] for user_id, pk in pks.items() if pk in found}


def list_sessions(user: object, current: SessionBase | None = None) -> list[UserSession]:
    """The user's live sessions, most recently active first."""
    current_id = _session_id(current)
    rows = (
        session_model()
        .objects.active()
        .filter(user_id=user_id(user))
        .order_by("-updated_at", "key_hash")
        .values_list("key_hash", "created_at", "updated_at", "expire_date", "ip", "user_agent")
    )
    return [
        UserSession(key_hash, created, active, expires, ip, agent, key_hash == current_id)
        for key_hash, created, active, expires, ip, agent in rows
    ]


async def alist_sessions(user: object, current: SessionBase | None = None) -> list[UserSession]:
    """See list_sessions()."""
    return await sync_to_async(list_sessions)(user, current)


def revoke_session(user: object, session_id: str, *, actor: object = None) -> bool:
    """
    Delete one of the user's sessions by its UserSession.id; return whether
    there was one. Another user's session is never touched, so the id can
    come straight from a form. ``actor`` goes to the session_revoked signal.
    """
    owner = user_id(user)
    if not is_key_hash(session_id):
        return False
    sessions = session_model().objects.filter(key_hash=session_id, user_id=owner)
    missed_before = table().undelivered
    deleted, _per_model = sessions.delete()
    if deleted:
        send_revoked(
            sessions.model, [session_id], user_id=owner, via="api", actor=actor, using=sessions.db
        )
        _warn_if_missed(deleted, missed_before)
    return deleted > 0


async def arevoke_session(user: object, session_id: str, *, actor: object = None) -> bool:
    """See revoke_session()."""
    return await sync_to_async(revoke_session)(user, session_id, actor=actor)


def revoke_all_sessions(
    user: object, keep: SessionBase | None = None, *, actor: object = None
) -> int:
    """
    Delete all the user's sessions except `keep` (the current one, for "log
    out other devices" or after a password change); return how many.
    ``actor`` as for revoke_session().
    """
    return revoke_users_sessions(user_id(user), keep, via="api", actor=actor)


async def arevoke_all_sessions(
    user: object, keep: SessionBase | None = None, *, actor: object = None
) -> int:
    """See revoke_all_sessions()."""
    return await sync_to_async(revoke_all_sessions)(user, keep, actor=actor)


def revoke_users_sessions(owner: str, keep: SessionBase | None, *, via: str, actor: object) -> int:
    """revoke_all_sessions() for a user_id value, with the signal's ``via`` and ``actor``."""
    sessions = session_model().objects.filter(user_id=owner)
    if (kept := _session_id(keep)) is not None:
        sessions = sessions.exclude(key_hash=kept)
    # The key hashes first, for the signal, then a delete by key hash, until
    # a select finds no new row: a session moved to a new key in between is
    # revoked too. Not until none: a snapshot (REPEATABLE READ) can show a
    # moved row's old key forever.
    key_hashes: list[str] = []
    seen: set[str] = set()
    deleted = 0
    missed_before = table().undelivered
    try:
        while True:
            found = list(sessions.values_list("key_hash", flat=True)[:IN_LIST_SIZE])
            new = [key_hash for key_hash in found if key_hash not in seen]
            if not new:
                break
            seen.update(new)
            count, _per_model = sessions.filter(key_hash__in=new).delete()
            deleted += count
            key_hashes += new
    finally:  # also when a later delete failed: the earlier ones are done
        if deleted:
            send_revoked(
                sessions.model, key_hashes, user_id=owner, via=via, actor=actor, using=sessions.db
            )
    if deleted and via != "command":  # the command says so itself, and exits with 3
        _warn_if_missed(deleted, missed_before)
    return deleted


def _warn_if_missed(deleted: int, missed_before: int) -> None:
    if (missed := table().undelivered - missed_before) > 0:
        logger.warning(
            "Revoked %s, but the session cache did not answer: %d revoked or changed "
            "%s may still be served from it by other processes until it answers again "
            "or its TIMEOUT ends.",
            counted(deleted, "session", "sessions"),
            missed,
            "session" if missed == 1 else "sessions",
        )


def _session_id(session: SessionBase | None) -> str | None:
    key = session.session_key if session is not None else None
    return hash_key(key) if is_valid_key(key) else None
