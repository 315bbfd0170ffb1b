"""
The session engine: SESSION_ENGINE = "django_sql_sessions.backends.db".

Each operation is one statement on SQL_SESSIONS_DB_ALIAS, sent in whatever
transaction state the caller is in (in autocommit, no BEGIN/COMMIT at all):

- load: one SELECT of a live row by key hash;
- save: one UPDATE; ``UpdateError`` when the row is gone, so a session that was
  logged out in a concurrent request is never resurrected;
- create: one INSERT whose primary key detects a key collision (no probe);
- delete: one DELETE;
- cycle_key: one UPDATE that moves the row to the new key.

With SQL_SESSIONS_TOUCH_AFTER = N (seconds), a save of a session whose data
did not change is skipped unless its stored expiry is more than N seconds
behind the one it would get now: SESSION_SAVE_EVERY_REQUEST then costs one
write per session every N seconds instead of one per request.

Encoding, decoding and signing are SessionBase's, so stored data is what
Django's own engines would store.
"""

from __future__ import annotations

import datetime
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.sessions.backends.base import (
    VALID_KEY_CHARS,
    CreateError,
    SessionBase,
    UpdateError,
)
from django.db import IntegrityError, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone
from django.utils.crypto import get_random_string

from django_sql_sessions.cleanup import delete_expired
from django_sql_sessions.conf import db_alias, touch_after
from django_sql_sessions.keys import hash_key, is_valid_key
from django_sql_sessions.models import Session
from django_sql_sessions.sql import run, statements

# A fresh 32-character key collides with 1 in 36**32 existing ones; running
# out of attempts means the INSERT fails for another reason, which must not
# spin forever.
KEY_ATTEMPTS = 10


class SessionStore(SessionBase):
    @classmethod
    def get_model_class(cls) -> type[Session]:
        return Session

    def _validate_session_key(self, key: object) -> bool:
        return is_valid_key(key)

    def _get_new_session_key(self) -> str:
        # No existence probe: the INSERT's primary key reports a collision.
        return get_random_string(32, VALID_KEY_CHARS)

    async def _aget_new_session_key(self) -> str:
        return self._get_new_session_key()

    def load(self) -> dict[str, Any]:
        if self.session_key is None:
            return {}
        connection = _connection()
        now = timezone.now()
        _rowcount, row = run(
            connection,
            statements(connection).load,
            [hash_key(self.session_key), _db_datetime(connection, now)],
            fetch=True,
        )
        if row is None:
            # Missing or expired: never adopt a key we did not issue.
            self._session_key = None
            return {}
        data = self.decode(row[0])
        if touch_after():
            # What save() compares against to tell an untouched session.
            self._loaded = (_from_db_datetime(connection, row[1]), self.serializer().dumps(data))
        return data

    async def aload(self) -> dict[str, Any]:
        """See load()."""
        return await sync_to_async(self.load)()

    def exists(self, session_key: str) -> bool:
        if not is_valid_key(session_key):
            return False
        connection = _connection()
        _rowcount, row = run(
            connection, statements(connection).exists, [hash_key(session_key)], fetch=True
        )
        return row is not None

    async def aexists(self, session_key: str) -> bool:
        """See exists()."""
        return await sync_to_async(self.exists)(session_key)

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

    async def acreate(self) -> None:
        """See create()."""
        await sync_to_async(self.create)()

    def save(self, must_create: bool = False) -> None:
        if self.session_key is None:
            return self.create()
        data = self._get_session(no_load=must_create)  # type: ignore[attr-defined]
        connection = _connection()
        sql = statements(connection)
        now = timezone.now()
        expire_date = self.get_expiry_date(modification=now)
        if not must_create and self._untouched(data, expire_date):
            return None
        encoded = self.encode(data)
        db_expire_date = _db_datetime(connection, expire_date)
        db_now = _db_datetime(connection, now)
        key_hash = hash_key(self.session_key)
        if must_create:
            try:
                inserted, _row = run(
                    connection, sql.insert, [key_hash, encoded, db_expire_date, db_now, db_now]
                )
            except IntegrityError as exc:
                raise CreateError from exc
            if not inserted:
                raise CreateError
        else:
            updated, _row = run(
                connection, sql.update, [encoded, db_expire_date, db_now, key_hash]
            )
            if not updated:
                # The row is gone: deleted by a logout or revocation elsewhere,
                # or by cleanup. Re-inserting it would undo that.
                raise UpdateError
        return None

    def _untouched(self, data: dict[str, Any], expire_date: datetime.datetime) -> bool:
        """Whether this save would only push the expiry forward by <= TOUCH_AFTER."""
        seconds = touch_after()
        loaded = getattr(self, "_loaded", None)
        if not seconds or self.modified or loaded is None or loaded[1] is None:
            return False
        stored_expiry, snapshot = loaded
        # Compared as serialized data, so that a change made in place (a list
        # in the session appended to without setting modified) is written.
        if self.serializer().dumps(data) != snapshot:
            return False
        return bool(
            stored_expiry <= expire_date <= stored_expiry + datetime.timedelta(seconds=seconds)
        )

    async def asave(self, must_create: bool = False) -> None:
        """See save()."""
        await sync_to_async(self.save)(must_create)

    def delete(self, session_key: str | None = None) -> None:
        if session_key is None:
            if self.session_key is None:
                return
            session_key = self.session_key
        if not is_valid_key(session_key):
            return
        connection = _connection()
        run(connection, statements(connection).delete, [hash_key(session_key)])

    async def adelete(self, session_key: str | None = None) -> None:
        """See delete()."""
        await sync_to_async(self.delete)(session_key)

    def cycle_key(self) -> None:
        """
        Move the session to a new key, keeping its data, in one UPDATE.

        Django's engines insert a copy under a new key and then delete the old
        row; moving the row is one round trip and leaves no moment at which
        both keys, or neither, are valid.
        """
        data = self._session  # type: ignore[attr-defined]
        old_key = self.session_key
        if old_key is None:
            self.create()
            return
        connection = _connection()
        sql = statements(connection)
        now = timezone.now()
        encoded = self.encode(data)
        expire_date = _db_datetime(connection, self.get_expiry_date(modification=now))
        db_now = _db_datetime(connection, now)
        old_hash = hash_key(old_key)
        new_key = self._get_new_session_key()
        new_hash = hash_key(new_key)
        params = [new_hash, encoded, expire_date, db_now, old_hash]
        if sql.rekey_guarded:
            params.append(new_hash)
        try:
            moved, _row = run(connection, sql.rekey, params)
        except IntegrityError:
            moved = 0  # the new key is taken; take Django's path below
        if moved:
            self._session_key = new_key
            self.modified = True
            return
        # The old row is gone (deleted by a concurrent request) or the new key
        # collided: do what Django does, a new row and no old one.
        self.create()
        self.delete(old_key)

    async def acycle_key(self) -> None:
        """See cycle_key()."""
        await sync_to_async(self.cycle_key)()

    @classmethod
    def clear_expired(cls) -> None:
        delete_expired()

    @classmethod
    async def aclear_expired(cls) -> None:
        """See clear_expired()."""
        await sync_to_async(delete_expired)()


def _connection() -> BaseDatabaseWrapper:
    return connections[db_alias()]


def _db_datetime(connection: BaseDatabaseWrapper, value: datetime.datetime) -> Any:
    return connection.ops.adapt_datetimefield_value(value)


def _from_db_datetime(connection: BaseDatabaseWrapper, value: Any) -> datetime.datetime:
    """Convert an expire_date read with raw SQL as the ORM would (time zone included)."""
    column = Session._meta.get_field("expire_date").get_col(Session._meta.db_table)
    for converter in connection.ops.get_db_converters(column) + column.get_db_converters(
        connection
    ):
        value = converter(value, column, connection)
    assert isinstance(value, datetime.datetime)
    return value
