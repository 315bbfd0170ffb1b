"""
The cache-fronted engine: SESSION_ENGINE = "django_sql_sessions.backends.cached_db".

The db engine, with reads served from Django's cache (SESSION_CACHE_ALIAS)
when it holds the session: no SQL, and no database connection, on a hit.
The database stays the truth: every write is the db engine's statement
first, then the cache (caching.py says how, docs/cache.rst why). A cache
that fails or times out is left out for a few seconds, and the engine is the
db engine meanwhile.
"""

from __future__ import annotations

import datetime
from typing import Any

from django.contrib.sessions.backends.base import UpdateError
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone

from django_sql_sessions import caching, conf
from django_sql_sessions.backends import db
from django_sql_sessions.keys import hash_key, is_valid_key
from django_sql_sessions.models import session_connection
from django_sql_sessions.sql import Statements, fetch_one, from_db_datetime, to_db_datetime


class SessionStore(db.SessionStore):
    # When the row this store read or wrote was created (or moved to its
    # key), which entries carry for SQL_SESSIONS_ABSOLUTE_LIFETIME; None
    # when this store does not know.
    _created_at: datetime.datetime | None = None

    def load(self) -> dict[str, Any]:
        self._row = None
        self._replace = False
        self._created_at = None
        key = self.session_key
        if key is None:
            return {}
        key_hash = hash_key(key)
        now = timezone.now()
        # The db engine's conditions: not expired, not past the lifetime.
        born_after = now - datetime.timedelta(seconds=conf.ABSOLUTE_LIFETIME.get() or db.FOREVER)
        entry = caching.read(key_hash)
        if entry is not None and entry.expire_date > now and entry.created_at > born_after:
            data = self.decode(entry.data)
            loaded = db._Loaded(entry.expire_date, entry.updated_at)
            self._row = db._Row(entry.data, entry.version, data.get(db.EXPIRY_KEY), loaded)
            self._created_at = entry.created_at
            return data
        # A miss: the db engine's load, with created_at for the entry.
        since = caching.clock()
        connection, sql = session_connection()
        row = fetch_one(
            connection,
            sql.load_created,
            key_hash=key_hash,
            now=to_db_datetime(connection, now),
            born_after=to_db_datetime(connection, born_after),
        )
        if row is None:
            # Missing or expired: never adopt a key we did not issue.
            self._session_key = None
            return {}
        raw, expire_date, version, updated_at, created_at = row
        data = self.decode(raw)
        self._row = db._Row(
            raw, version, data.get(db.EXPIRY_KEY), db._Loaded(expire_date, updated_at)
        )
        self._created_at = from_db_datetime(connection, created_at)
        entry = caching.Entry(
            raw,
            version,
            from_db_datetime(connection, expire_date),
            from_db_datetime(connection, updated_at),
            self._created_at,
        )
        caching.offer(key_hash, entry, since, using=connection.alias)
        return data

    def _insert(
        self,
        connection: BaseDatabaseWrapper,
        sql: Statements,
        key: str,
        data: dict[str, Any],
        now: datetime.datetime,
    ) -> None:
        since = caching.clock()
        super()._insert(connection, sql, key, data, now)
        self._created_at = now
        # A new key: nothing older can be cached under it, so the session is
        # offered as any read is (a tombstone of a revocation still wins).
        entry = self._entry(now, self.get_expiry_date(modification=now))
        assert entry is not None
        caching.offer(hash_key(key), entry, since, using=connection.alias)

    def _write(
        self,
        connection: BaseDatabaseWrapper,
        sql: Statements,
        key_hash: str,
        data: dict[str, Any],
        row: db._Row,
        now: datetime.datetime,
        *,
        exact: bool,
    ) -> bool:
        since = caching.clock()
        if not super()._write(connection, sql, key_hash, data, row, now, exact=exact):
            return False
        # After a conflict the stored expiry may be later than this one
        # (update keeps the later); the entry's is never later than the row's.
        expire_date = self.get_expiry_date(modification=now, expiry=data.get(db.EXPIRY_KEY))
        entry = self._entry(now, expire_date)
        if entry is None:
            caching.invalidate([key_hash], using=connection.alias)
        else:
            caching.replace(key_hash, entry, since, using=connection.alias)
        return True

    def _update(
        self,
        connection: BaseDatabaseWrapper,
        sql: Statements,
        key_hash: str,
        data: dict[str, Any],
        now: datetime.datetime,
    ) -> None:
        try:
            super()._update(connection, sql, key_hash, data, now)
        except UpdateError:
            # The row is gone: whoever deleted it without telling the cache
            # (raw SQL, another engine) leaves no copy behind either.
            caching.invalidate([key_hash], using=connection.alias)
            raise

    def _entry(
        self, now: datetime.datetime, expire_date: datetime.datetime
    ) -> caching.Entry | None:
        """
        The cache entry of the row this store has just written at `now`, or
        None if it does not know when the row was created (a save without a
        load).
        """
        row = self._row
        assert row is not None
        if self._created_at is None:
            return None
        return caching.Entry(row.data, row.version, expire_date, now, self._created_at)

    def _activity_touched(
        self,
        connection: BaseDatabaseWrapper,
        key_hash: str,
        row: db._Row,
        now: datetime.datetime,
    ) -> None:
        # The same version with the new updated_at, so that the next request
        # served from the cache does not find the activity due again.
        if row.loaded is None or self._created_at is None:
            return
        expire_date = from_db_datetime(connection, row.loaded.expire_date)
        entry = caching.Entry(row.data, row.version, expire_date, now, self._created_at)
        caching.replace(key_hash, entry, caching.clock(), using=connection.alias)

    def delete(self, session_key: str | None = None) -> None:
        key = self.session_key if session_key is None else session_key
        super().delete(session_key)
        if is_valid_key(key):
            connection, _sql = session_connection()
            caching.invalidate([hash_key(key)], using=connection.alias)

    def cycle_key(self) -> None:
        old_key = self.session_key
        # The move sets created_at to a moment after this one: an entry that
        # says it is earlier ends no later than the row.
        moved_at = timezone.now()
        super().cycle_key()
        self._created_at = moved_at
        # The row moved to the new key (or was gone): the old key's entry
        # must not outlive it. The new key has none until the next save.
        if old_key is not None and old_key != self.session_key:
            connection, _sql = session_connection()
            caching.invalidate([hash_key(old_key)], using=connection.alias)
