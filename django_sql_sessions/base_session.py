"""
The session model, abstract, for projects to extend (docs/design.rst,
"Extending the session model"); importable without the app installed.
"""

from __future__ import annotations

import datetime
from typing import Any, TypeVar

from django.contrib.sessions.backends.base import SessionBase
from django.db import IntegrityError, models, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from django_sql_sessions import conf, storage
from django_sql_sessions.fields import KeyHashField, SessionDataField
from django_sql_sessions.keys import is_key_hash, is_valid_key
from django_sql_sessions.storage import USER_ID_MAX_LENGTH, hash_key, user_id_from_session

USER_AGENT_MAX_LENGTH = 255
_S = TypeVar("_S", bound="AbstractSession")
# Matches no row: not hex, so never a key hash.
NO_SUCH_HASH = "-"


def _hashed(session_key: object) -> str:
    """The key_hash a raw session key is stored under (NO_SUCH_HASH if it is not a key)."""
    return hash_key(session_key) if is_valid_key(session_key) else NO_SUCH_HASH


class SessionQuerySet(models.QuerySet[_S]):
    """
    Also accepts Django's session model's lookups with raw keys (session_key=,
    session_key__in=, pk=, pk__in=): docs/design.rst, "Code written for
    Django's session model".
    """

    def _filter_or_exclude(self, negate: bool, args: Any, kwargs: Any) -> SessionQuerySet[_S]:
        args, kwargs = _hash_raw_keys(args, kwargs)
        return super()._filter_or_exclude(negate, args, kwargs)  # type: ignore[misc, no-any-return]

    def _filter_or_exclude_inplace(self, negate: bool, args: Any, kwargs: Any) -> None:
        args, kwargs = _hash_raw_keys(args, kwargs)
        super()._filter_or_exclude_inplace(negate, args, kwargs)  # type: ignore[misc]

    # Every change goes through the session table (storage.py): version, cache.

    def delete(self) -> tuple[int, dict[str, int]]:
        return storage.table(self.model).delete_rows(self)

    def update(self, **kwargs: Any) -> int:
        return storage.table(self.model).update_rows(self, kwargs)

    def delete_unguarded(self) -> tuple[int, dict[str, int]]:
        """The ORM's own delete(), for the session table (storage.py) only."""
        return super().delete()

    def update_unguarded(self, **kwargs: Any) -> int:
        """The ORM's own update(), for the session table (storage.py) only."""
        return super().update(**kwargs)

    def active(self) -> SessionQuerySet[_S]:
        return self.filter(expire_date__gt=timezone.now())

    def expired(self) -> SessionQuerySet[_S]:
        # Expired means expire_date <= now, the same rule load() applies.
        return self.filter(expire_date__lte=timezone.now())

    def for_key(self, session_key: str) -> SessionQuerySet[_S]:
        """Filter on a raw session key (as found in the cookie)."""
        return self.filter(key_hash=hash_key(session_key))


def _hash_raw_keys(args: Any, kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The filter's arguments with raw-key lookups as key_hash conditions of their own."""
    conditions = []
    kwargs = dict(kwargs)
    for name in ("session_key", "session_key__exact", "pk", "pk__exact"):
        if name in kwargs and (name.startswith("session_key") or _is_raw_key(kwargs[name])):
            conditions.append(models.Q(key_hash=_hashed(kwargs.pop(name))))
    for name in ("session_key__in", "pk__in"):
        if name in kwargs:
            values = list(kwargs.pop(name))
            hashed = [
                _hashed(v) if name.startswith("session_key") or _is_raw_key(v) else v
                for v in values
            ]
            conditions.append(models.Q(key_hash__in=hashed))
    return (*args, *conditions), kwargs


def _is_raw_key(value: object) -> bool:
    """A session key that cannot be mistaken for a key hash."""
    return is_valid_key(value) and not is_key_hash(value)


class SessionManager(models.Manager[_S]):
    def get_queryset(self) -> SessionQuerySet[_S]:
        # Pinned whatever the routers say: no query reads a lagging replica.
        return SessionQuerySet(self.model, using=conf.DB_ALIAS.get())

    def active(self) -> SessionQuerySet[_S]:
        return self.get_queryset().active()

    def expired(self) -> SessionQuerySet[_S]:
        return self.get_queryset().expired()

    def for_key(self, session_key: str) -> SessionQuerySet[_S]:
        return self.get_queryset().for_key(session_key)

    def encode(self, session_dict: dict[str, Any]) -> str:
        """Return the session dictionary serialized and signed for storage."""
        return self.model.get_session_store_class()().encode(session_dict)

    def save(
        self, session_key: str, session_dict: dict[str, Any], expire_date: datetime.datetime
    ) -> _S:
        """
        Store ``session_dict`` under a raw key, or delete the row if it is
        empty, as Django's SessionManager.save() does; the version moves on.
        """
        sessions = self.get_queryset()
        if not session_dict:
            sessions.for_key(session_key).delete()
            return self.model(key_hash=hash_key(session_key), expire_date=expire_date)
        now = timezone.now()
        values = {
            "data": self.encode(session_dict),
            "expire_date": expire_date,
            "updated_at": now,
            "user_id": user_id_from_session(session_dict),
        }
        key_hash = hash_key(session_key)
        if not sessions.filter(key_hash=key_hash).update(**values, version=F("version") + 1):
            try:
                with transaction.atomic(using=sessions.db):
                    return sessions.create(key_hash=key_hash, created_at=now, **values)
            except IntegrityError:  # inserted meanwhile: update that row
                sessions.filter(key_hash=key_hash).update(**values, version=F("version") + 1)
        return sessions.get(key_hash=key_hash)


class AbstractSession(models.Model):
    key_hash = KeyHashField(_("session key hash"), primary_key=True, editable=False)
    data = SessionDataField(_("session data"))
    expire_date = models.DateTimeField(_("expire date"), db_index=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    updated_at = models.DateTimeField(_("updated at"), default=timezone.now)
    # Bumped by every write; a save applies only to the version it read.
    version = models.BigIntegerField(_("version"), default=1)
    # login()'s user key, as text; not a foreign key: the users may live in
    # another database. NULL for "none" in these three columns: saves keep
    # device details with COALESCE(NULL, ...).
    user_id = models.CharField(  # noqa: DJ001
        _("user id"), max_length=USER_ID_MAX_LENGTH, null=True
    )
    # SQL_SESSIONS_DEVICE_DETAILS (devices.py); 45 characters hold any IPv6 text.
    ip = models.CharField(_("IP address"), max_length=45, null=True)  # noqa: DJ001
    user_agent = models.CharField(  # noqa: DJ001
        _("user agent"), max_length=USER_AGENT_MAX_LENGTH, null=True
    )

    objects = SessionManager["AbstractSession"]()

    class Meta:
        abstract = True
        verbose_name = _("session")
        verbose_name_plural = _("sessions")
        indexes = [
            # user_id alone: with expire_date every save would write it on
            # MySQL and SQL Server; db_index would add PostgreSQL's unused
            # pattern-matching index too.
            models.Index(fields=["user_id"]),
        ]

    def __str__(self) -> str:
        # The hash, not the key: the key is not stored anywhere.
        return str(self.key_hash)[:12]

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Save through the session table (storage.py): the version moves on, the cache is told."""
        bumped = not self._state.adding
        if bumped:
            self.version = F("version") + 1
            if kwargs.get("update_fields") is not None:
                kwargs["update_fields"] = {*kwargs["update_fields"], "version"}
        storage.table(type(self)).save_instance(
            self, lambda: super(AbstractSession, self).save(*args, **kwargs)
        )
        if bumped:
            self.refresh_from_db(fields=["version"])

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        result: tuple[int, dict[str, int]] = storage.table(type(self)).delete_instance(
            self, lambda: super(AbstractSession, self).delete(*args, **kwargs)
        )
        return result

    @classmethod
    def get_session_store_class(cls) -> type[SessionBase]:
        # Imported here: the engine imports this module (as Django's pair does).
        from django_sql_sessions.backends.db import SessionStore

        return SessionStore

    def get_decoded(self) -> dict[str, Any]:
        return self.get_session_store_class()().decode(self.data)

    def is_expired(self) -> bool:
        return self.expire_date <= timezone.now()

    @property
    def last_activity(self) -> datetime.datetime:
        # Every write sets it, and the middleware (SQL_SESSIONS_ACTIVITY_INTERVAL).
        return self.updated_at
