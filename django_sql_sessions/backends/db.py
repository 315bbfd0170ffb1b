"""
SESSION_ENGINE = "django_sql_sessions.backends.db": one statement per operation;
a save is conditional on the row's version, and a conflict merges this
request's changes onto the newer data (docs/design.rst, "Parallel requests").
"""

from __future__ import annotations

import datetime
import functools
import logging
import random
import time
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.backends.base import (
    CreateError,
    SessionBase,
    UpdateError,
)
from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from django_sql_sessions import conf
from django_sql_sessions.base_session import AbstractSession
from django_sql_sessions.cleanup import delete_expired
from django_sql_sessions.cursors import retry_after
from django_sql_sessions.devices import Device
from django_sql_sessions.exceptions import SessionSaveConflict, SessionTooLarge
from django_sql_sessions.keys import SESSION_KEY_RE, is_valid_key, new_key
from django_sql_sessions.models import Session
from django_sql_sessions.signals import send_save_merged, send_save_refused, send_too_large
from django_sql_sessions.sql import from_db_datetime
from django_sql_sessions.storage import (
    Row,
    SessionTable,
    Values,
    hash_key,
    table,
    user_id_from_session,
)

# Key collisions are 1 in 36**32: running out means the INSERT fails otherwise.
KEY_ATTEMPTS = 10
# SQLite's optimistic retries: this many only under a flood of writes to one session.
SAVE_ATTEMPTS = 20
EXPIRY_KEY = "_session_expiry"

logger = logging.getLogger("django_sql_sessions")


class SessionStore(SessionBase):
    # The row as this store last read or wrote it, and the key it was under.
    _row: Row | None = None
    _row_key: str | None = None
    _expiry_setting: object = None  # data[EXPIRY_KEY] then
    _fresh = False  # as load() read it: TOUCH_AFTER and the activity compare with it
    _activity_recorded = False
    _replace = False  # clear() was called: the next save merges nothing
    _restart_lifetime = False
    device: Device | None = None  # set by the middleware (SQL_SESSIONS_DEVICE_DETAILS)

    def __init__(self, session_key: str | None = None) -> None:
        # SessionBase.__init__ with the serializer imported once, not per store
        # (most of a store's cost). A test checks the attributes match.
        self._session_key = session_key
        self.accessed = False
        self.modified = False
        self.serializer = _serializer_class(settings.SESSION_SERIALIZER)

    @classmethod
    def get_model_class(cls) -> type[AbstractSession]:
        return Session

    def create_model_instance(self, data: dict[str, Any]) -> AbstractSession:
        """An unsaved model instance of this session; saves take the model's columns from it."""
        return self.get_model_class()(
            key_hash=hash_key(self._get_or_create_session_key()),  # type: ignore[attr-defined]
            data=self.encode(data),
            expire_date=self.get_expiry_date(),
        )

    async def acreate_model_instance(self, data: dict[str, Any]) -> AbstractSession:
        """See create_model_instance(), which the saves call, async ones too (in a thread)."""
        return await sync_to_async(self.create_model_instance)(data)

    def _validate_session_key(self, key: object) -> bool:
        # is_valid_key()'s test, without the call: every store makes it.
        return isinstance(key, str) and SESSION_KEY_RE.fullmatch(key) is not None

    def _get_new_session_key(self) -> str:
        # No existence probe: the INSERT's primary key reports a collision.
        return new_key()

    async def _aget_new_session_key(self) -> str:
        return self._get_new_session_key()

    def get_expiry_date(self, **kwargs: Any) -> datetime.datetime:
        # SessionBase's rule, with the expiry normalized first (see _expiry()).
        expiry = self._expiry(kwargs)
        if isinstance(expiry, datetime.datetime):
            return expiry
        modification = kwargs["modification"] if "modification" in kwargs else timezone.now()
        seconds = expiry or self.get_session_cookie_age()
        return _in_project_time(modification + datetime.timedelta(seconds=seconds))

    def get_expiry_age(self, **kwargs: Any) -> int:
        # Django subtracts the expiry from an aware "now": a naive stored
        # expiry would raise TypeError in SessionMiddleware.
        age: int = super().get_expiry_age(**{**kwargs, "expiry": self._expiry(kwargs)})
        return age

    async def aget_expiry_date(self, **kwargs: Any) -> datetime.datetime:
        """See get_expiry_date(); the session is loaded without blocking."""
        if "expiry" not in kwargs:
            kwargs["expiry"] = await self.aget(EXPIRY_KEY)
        return self.get_expiry_date(**kwargs)

    async def aget_expiry_age(self, **kwargs: Any) -> int:
        """See get_expiry_age(); the session is loaded without blocking."""
        if "expiry" not in kwargs:
            kwargs["expiry"] = await self.aget(EXPIRY_KEY)
        return self.get_expiry_age(**kwargs)

    def _expiry(self, kwargs: dict[str, Any]) -> datetime.datetime | int | float | None:
        """The expiry as a datetime in the project's time, a number of seconds, or None."""
        expiry = kwargs["expiry"] if "expiry" in kwargs else self.get(EXPIRY_KEY)
        if expiry is None or type(expiry) is int:
            return expiry  # the usual cases, first
        if isinstance(expiry, str):
            try:
                expiry = datetime.datetime.fromisoformat(expiry)
            except ValueError:
                logger.warning("Ignoring a session expiry that is not a date: %r", expiry)
                return None
        if isinstance(expiry, datetime.datetime):
            return _in_project_time(expiry)
        if isinstance(expiry, int | float):
            return expiry
        return None  # not something set_expiry() stores: Django would crash

    def load(self) -> dict[str, Any]:
        self._row = None
        self._replace = False
        key = self.session_key
        if key is None:
            return {}
        row = self.table().load(hash_key(key))
        if row is None:
            # Missing or expired: never adopt a key we did not issue.
            self._session_key = None
            return {}
        data = self.decode(row.data) if row.session is None else row.session
        self._row, self._expiry_setting, self._fresh = row, data.get(EXPIRY_KEY), True
        self._row_key = key
        self._activity_recorded = False
        return data

    def decode(self, session_data: str | bytes) -> dict[str, Any]:
        # "": data the storage layer could not decrypt, and logged once
        # (encryption.py); Django would log it again as corrupt.
        if not session_data:
            return {}
        decoded: dict[str, Any] = super().decode(session_data)
        return decoded

    def exists(self, session_key: str) -> bool:
        return is_valid_key(session_key) and self.table().exists(hash_key(session_key))

    def create(self) -> None:
        for _attempt in range(KEY_ATTEMPTS):
            self._session_key = self._get_new_session_key()
            try:
                self.save(must_create=True)
            except CreateError:
                continue
            self.modified = True
            return
        raise CreateError(f"No new session key could be inserted in {KEY_ATTEMPTS} attempts.")

    def save(self, must_create: bool = False) -> None:
        key = self.session_key
        if key is None:
            return self.create()
        data = self._get_session(no_load=must_create)  # type: ignore[attr-defined]
        session_table = self.table()
        now = timezone.now()
        if must_create:
            self._insert(session_table, hash_key(key), data, now)
        elif self.modified or not self._untouched(session_table, data, now):
            row = self._row
            # The row's key hash, if it is this key's: no second SHA-256.
            key_hash = row.key_hash if row is not None and self._row_key == key else hash_key(key)
            try:
                # The usual save: the row is as this store read it.
                if row is None or not self._write(
                    session_table, key_hash, data, row, now, exact=True
                ):
                    self._update(session_table, key_hash, data, now)
            except SessionTooLarge as exc:
                # Sent here, outside _write_again()'s transaction, whose
                # rollback would take a receiver's writes with it.
                _send_too_large(type(self), key_hash, exc, session_table.alias)
                raise
        return None

    @classmethod
    def table(cls) -> SessionTable:
        """The table this engine reads and writes (see make_table()), kept as the settings are."""
        return conf.kept.get(cls) or conf.remember(cls, cls.make_table)

    @classmethod
    def make_table(cls) -> SessionTable:
        return table(cls.get_model_class())

    def _values(
        self, session_table: SessionTable, data: dict[str, Any], now: datetime.datetime
    ) -> Values:
        """What a save at `now` writes besides the data."""
        device = self.device
        expiry = data.get(EXPIRY_KEY)
        extra: tuple[Any, ...] = ()
        if session_table.extra:  # a model with columns of its own
            instance = self.create_model_instance(data)
            extra = tuple(getattr(instance, field.attname) for field in session_table.extra)
        return Values(
            # SessionBase's rule; without set_expiry(), now is in the project's time.
            expire_date=(
                now + datetime.timedelta(seconds=self.get_session_cookie_age())
                if expiry is None
                else self.get_expiry_date(modification=now, expiry=expiry)
            ),
            now=now,
            user_id=user_id_from_session(data),
            ip=None if device is None else device.ip,
            user_agent=None if device is None else device.user_agent,
            extra=extra,
        )

    def _insert(
        self,
        session_table: SessionTable,
        key_hash: str,
        data: dict[str, Any],
        now: datetime.datetime,
    ) -> None:
        encoded = self.encode(data)
        try:
            row = session_table.insert(key_hash, encoded, self._values(session_table, data, now))
        except SessionTooLarge as exc:
            # No row yet, so no key hash in the signal.
            _send_too_large(type(self), None, exc, session_table.alias)
            raise
        except IntegrityError as exc:
            raise CreateError from exc
        if row is None:
            raise CreateError
        self._row, self._expiry_setting, self._fresh = row, data.get(EXPIRY_KEY), False
        self._row_key = self.session_key
        self._replace = self._restart_lifetime = False

    def _update(
        self,
        session_table: SessionTable,
        key_hash: str,
        data: dict[str, Any],
        now: datetime.datetime,
    ) -> None:
        alias = session_table.alias
        try:
            row = self._row
            # What the merge carries onto the newer data (None: clear() replaces it).
            changed = (
                None if row is None or self._replace else _changed(self.decode(row.data), data)
            )
            attempts = self._write_again(session_table, key_hash, data, row, now)
        except UpdateError:
            send_save_refused(type(self), key_hash, using=alias)
            raise
        if attempts and changed is not None:
            send_save_merged(type(self), key_hash, changed=changed, attempts=attempts, using=alias)
        if not attempts:
            raise SessionSaveConflict(
                "Other requests kept saving the session while this request tried to save "
                "it; its changes were not written."
            )

    def _write_again(
        self,
        session_table: SessionTable,
        key_hash: str,
        data: dict[str, Any],
        row: Row | None,
        now: datetime.datetime,
    ) -> int:
        """
        Read the row again, merge, write; return how many reads that took, or
        0 if other saves kept overtaking this one.
        """
        if session_table.locks_rows:
            # Locked, so the retry cannot be overtaken again (a burst of writers
            # can win every optimistic race). A deadlock or a lost Galera
            # certification rolls it all back: start again, if it is ours.
            connection = session_table.connection
            attempt = 1
            while True:
                try:
                    with transaction.atomic(using=session_table.alias):
                        data, row = self._reread(session_table, key_hash, data, row, lock=True)
                        if self._write(session_table, key_hash, data, row, now, exact=False):
                            return attempt
                    return 0
                except DatabaseError as exc:
                    if not retry_after(connection, exc, attempt):
                        raise
                attempt += 1
        else:
            # SQLite serializes writers, so optimistic retries settle quickly.
            for attempt in range(SAVE_ATTEMPTS):
                if attempt:
                    # A random pause breaks the lockstep of colliding writers.
                    time.sleep(random.random() * attempt / 1000)
                data, row = self._reread(session_table, key_hash, data, row, lock=False)
                if self._write(session_table, key_hash, data, row, now, exact=False):
                    return attempt + 1
            return 0

    def _write(
        self,
        session_table: SessionTable,
        key_hash: str,
        data: dict[str, Any],
        row: Row,
        now: datetime.datetime,
        *,
        exact: bool,
    ) -> bool:
        """
        Update the row if it still has row.version; return whether it did. Not
        exact (after a conflict): keep a newer request's later expiry, unless
        this request set the expiry itself.
        """
        expiry_setting = data.get(EXPIRY_KEY)
        written = session_table.update(
            key_hash,
            row,
            self.encode(data),
            self._values(session_table, data, now),
            keep_later_expiry=not (
                exact or self._replace or expiry_setting != self._expiry_setting
            ),
            restart_lifetime=self._restart_lifetime,
        )
        if written is None:
            return False
        self._row, self._expiry_setting, self._fresh = written, expiry_setting, False
        self._row_key = self.session_key
        self._replace = self._restart_lifetime = False
        return True

    def _reread(
        self,
        session_table: SessionTable,
        key_hash: str,
        data: dict[str, Any],
        row: Row | None,
        *,
        lock: bool,
    ) -> tuple[dict[str, Any], Row]:
        """Return this request's data merged onto the stored row, and that row."""
        fresh = session_table.reload(key_hash, lock=lock)
        if fresh is None:
            # Logged out, revoked, cleaned up or expired: writing would undo that.
            raise UpdateError
        stored, version = fresh
        newer = self.decode(stored)
        if row is not None and not self._replace:
            data = _merge(base=self.decode(row.data), mine=data, newer=newer)
            self._session_cache = data
        self._expiry_setting = newer.get(EXPIRY_KEY)
        created_at = None if row is None else row.created_at
        return data, Row(key_hash, stored, version, None, None, created_at)

    def _untouched(
        self, session_table: SessionTable, data: dict[str, Any], now: datetime.datetime
    ) -> bool:
        """Whether this save of an unmodified session only moves the expiry <= TOUCH_AFTER."""
        row = self._row
        if row is None or not self._fresh:
            return False
        seconds = conf.TOUCH_AFTER.get()
        if not seconds:
            return False
        stored_expiry = from_db_datetime(session_table.connection, row.expire_date)
        expire_date = self.get_expiry_date(modification=now)
        # Skip at most half the session's lifetime: set_expiry(120) must not wait 300 s.
        window = min(seconds, (expire_date - now).total_seconds() / 2)
        if not stored_expiry <= expire_date <= stored_expiry + datetime.timedelta(seconds=window):
            return False
        # Serialized, so a change made in place without setting modified is written.
        serializer = self.serializer()
        return bool(serializer.dumps(data) == serializer.dumps(self.decode(row.data)))

    def record_activity(self) -> None:
        """
        Record that the session was used, if this request read it but wrote
        nothing and its last activity is SQL_SESSIONS_ACTIVITY_INTERVAL old;
        called by the middleware after the response.
        """
        row = self._row
        if self.session_key is None or row is None or not self._fresh:
            return  # not loaded, or written since (which recorded it)
        if self._activity_recorded:
            return
        interval = conf.ACTIVITY_INTERVAL.get()
        if not interval:
            return
        session_table = self.table()
        now = timezone.now()
        due = now - datetime.timedelta(seconds=interval)
        if from_db_datetime(session_table.connection, row.updated_at) > due:
            return
        device = self.device
        if session_table.touch(
            hash_key(self.session_key),
            row,
            now,
            due,
            ip=None if device is None else device.ip,
            user_agent=None if device is None else device.user_agent,
        ):
            row.version += 1
        # The stored expiry is as read: a later save can still be skipped.
        self._activity_recorded = True

    async def arecord_activity(self) -> None:
        """See record_activity()."""
        await sync_to_async(self.record_activity)()

    def clear(self) -> None:
        super().clear()
        # No key-by-key merge after this: the emptied session is the intent.
        self._replace = True

    def delete(self, session_key: str | None = None) -> None:
        if session_key is None:
            if self.session_key is None:
                return
            session_key = self.session_key
        if is_valid_key(session_key):
            self.table().delete(hash_key(session_key))

    def cycle_key(self) -> None:
        """
        Move the session to a new key in one UPDATE, keeping its data and its
        absolute lifetime; the next save() writes (merges) the data. If the row
        is gone, a logged-in session starts empty, so a revocation holds
        (docs/design.rst, "Parallel requests and expiry").
        """
        self._get_session()  # type: ignore[attr-defined]
        old_key = self.session_key
        if old_key is None:
            self.create()
            return
        session_table = self.table()
        old_hash = hash_key(old_key)
        for _attempt in range(KEY_ATTEMPTS):
            new_key = self._get_new_session_key()
            try:
                moved = session_table.rekey(old_hash, hash_key(new_key), timezone.now())
            except IntegrityError:
                continue  # the new key is taken: draw another
            if moved:
                self._session_key = new_key
                if self._row is not None:
                    self._row.key_hash, self._row_key = hash_key(new_key), new_key
                    self._row.version += 1
                    self._fresh = False  # the rekey wrote updated_at
                self.modified = True
                return
            if not session_table.exists(old_hash):
                break
            # PostgreSQL's guard reports a taken new key as 0 rows: draw again.
        else:
            raise CreateError(f"No new session key could be taken in {KEY_ATTEMPTS} attempts.")
        data = self._session_cache
        self._row = None
        self._session_cache = {}
        self.create()
        if SESSION_KEY not in data:
            self._session_cache = data

    async def acycle_key(self) -> None:
        """See cycle_key(); SessionBase's twin would insert and delete instead."""
        await sync_to_async(self.cycle_key)()

    def restart_lifetime(self) -> None:
        """Start SQL_SESSIONS_ABSOLUTE_LIFETIME again at the next save (a login; see apps.py)."""
        self._restart_lifetime = True
        self.modified = True

    @classmethod
    def clear_expired(cls) -> None:
        delete_expired(via="clear_expired")


def restart_lifetime_at_login(sender: object, request: Any, **kwargs: Any) -> None:
    """user_logged_in receiver: a login restarts the session's absolute lifetime."""
    session = getattr(request, "session", None)
    if isinstance(session, SessionStore):
        session.restart_lifetime()


def _send_too_large(sender: type, key_hash: str | None, exc: SessionTooLarge, using: str) -> None:
    send_too_large(sender, key_hash, size=exc.size, limit=exc.limit, using=using)


def _changed(base: dict[str, Any], mine: dict[str, Any]) -> list[str]:
    """The names of the entries this request set or deleted (mine against base), sorted."""
    return sorted(
        str(key)
        for key in base.keys() | mine.keys()
        if key not in mine or key not in base or base[key] != mine[key]
    )


def _merge(*, base: dict[str, Any], mine: dict[str, Any], newer: dict[str, Any]) -> dict[str, Any]:
    """Apply the keys this request set or deleted (mine against base) to newer."""
    merged = dict(newer)
    for key in base.keys() | mine.keys():
        if key not in mine:
            merged.pop(key, None)
        elif key not in base or base[key] != mine[key]:
            merged[key] = mine[key]
    return merged


@functools.cache
def _serializer_class(path: str) -> Any:
    return import_string(path)


def _in_project_time(value: datetime.datetime) -> datetime.datetime:
    """An expiry datetime as a DateTimeField would store it (aware under USE_TZ)."""
    if timezone.is_naive(value):
        if settings.USE_TZ:
            # Read in TIME_ZONE, with Django's RuntimeWarning.
            field = Session._meta.get_field("expire_date")
            prepared: datetime.datetime = field.get_prep_value(value)
            return prepared
        return value
    return value if settings.USE_TZ else timezone.make_naive(value)
