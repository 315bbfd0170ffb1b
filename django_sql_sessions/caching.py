"""
The cache in front of the session table (backends.cached_db):
CachedSessionTable wraps a storage.SessionTable with the same interface and
serves loads from SESSION_CACHE_ALIAS. docs/cache.rst describes the entries,
the three kinds of cache write (offer, replace, tombstone) and the races
each rule closes.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

from django.conf import settings
from django.core import signing
from django.core.cache import caches
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.redis import RedisCache
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.module_loading import import_string

from django_sql_sessions import conf
from django_sql_sessions.encryption import PREFIX, seal, try_open
from django_sql_sessions.signals import counted
from django_sql_sessions.sql import from_db_datetime
from django_sql_sessions.storage import (
    Row,
    SessionTable,
    Values,
    after_commit,
    in_transaction,
    plain_table,
)

logger = logging.getLogger("django_sql_sessions")

KEY_PREFIX = "django_sql_sessions:"
TOMBSTONE = "-"
# A copy read or written more than half a tombstone's life ago is dropped.
TOMBSTONE_SECONDS = 10
FRESH_SECONDS = TOMBSTONE_SECONDS / 2
# After a cache error, the cache is left alone for this long: a hung cache
# costs one request per process its timeout per interval, not every request.
RETRY_AFTER = 5.0
LOG_EVERY = 60.0
MAX_PENDING = 100_000

# An equal version is replaced (same data, later activity), and so is
# anything unreadable, which would otherwise block the key until it expires.
_OFFER_SCRIPT = """
local current = redis.call('GET', KEYS[1])
if current == '-' then return 0 end
local version = current and tonumber(string.match(current, '^(%d+)|'))
if version and version > tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""

clock = time.monotonic  # tests move it

# Cache errors since the process started, by cache alias.
cache_errors: Counter[str] = Counter()

ENGINE = "django_sql_sessions.backends.cached_db"
# Entries are sealed in a context of their own: no entry opens as a row's data.
CACHE = "cache"
# SessionBase.key_salt of the engines' stores (both classes are SessionStore).
_SALT = "django.contrib.sessions.SessionStore"


@conf.cached
def in_use() -> bool:
    """Whether SESSION_ENGINE is backends.cached_db, or a subclass of its store."""
    try:
        store = import_string(f"{settings.SESSION_ENGINE}.SessionStore")
    except ImportError:
        return False
    # By name: the engine imports this module, not the other way round.
    return any(cls.__module__ == ENGINE for cls in getattr(store, "__mro__", ()))


@conf.cached
def cached_table() -> CachedSessionTable:
    """The session table behind SESSION_CACHE_ALIAS; its state lives as long as the settings."""
    return CachedSessionTable(plain_table(), settings.SESSION_CACHE_ALIAS)


class CachedSessionTable(SessionTable):
    """A SessionTable behind Django's cache; the ORM's writes go through changing()."""

    def __init__(self, table: SessionTable, cache_alias: str) -> None:
        super().__init__(table.alias, table.name, table.extra)
        self.table = table
        self.cache_alias = cache_alias
        connection = table.connection
        db = connection.settings_dict
        scope = f"{connection.vendor}|{db['HOST']}|{db['PORT']}|{db['NAME']}|{table.name}"
        self.prefix = f"{KEY_PREFIX}{hashlib.sha256(scope.encode()).hexdigest()[:12]}:"
        self._mac_key = hashlib.sha256(
            b"django_sql_sessions.cache" + force_bytes(settings.SECRET_KEY)
        ).digest()
        self._codec = self.serializer()  # SessionTable's SESSION_SERIALIZER
        self._down_until = 0.0
        self._logged_at: float | None = None
        self._errors_since_log = 0
        self._pending: dict[str, None] = {}
        self._lock = threading.Lock()

    def key(self, key_hash: str) -> str:
        return self.prefix + key_hash

    def load(self, key_hash: str, *, with_created: bool = False) -> Row | None:
        now = timezone.now()
        entry = self._read(key_hash)
        if (
            entry is not None
            and entry.expire_date > now
            and entry.created_at > now - self.table.lifetime
        ):
            return entry
        since = clock()
        row = self.table.load(key_hash, with_created=True)
        if row is not None:
            connection = self.table.connection
            row.expire_date = from_db_datetime(connection, row.expire_date)
            row.updated_at = from_db_datetime(connection, row.updated_at)
            row.created_at = from_db_datetime(connection, row.created_at)
            self._offer(key_hash, row, since)
        return row

    def reload(self, key_hash: str, *, lock: bool) -> tuple[str, int] | None:
        found = self.table.reload(key_hash, lock=lock)
        if found is None:
            # Whoever deleted it without telling the cache (raw SQL) leaves
            # no copy behind either. Now: the engine's own transaction
            # around this read is rolled back.
            self._tombstone([key_hash])
        return found

    def insert(self, key_hash: str, data: str, values: Values) -> Row | None:
        since = clock()
        row = self.table.insert(key_hash, data, values)
        if row is not None:
            self._offer(key_hash, row, since)
        return row

    def update(
        self,
        key_hash: str,
        row: Row,
        data: str,
        values: Values,
        *,
        keep_later_expiry: bool = False,
        restart_lifetime: bool = False,
    ) -> Row | None:
        # In a transaction the commit may come long after: see changing().
        waits = in_transaction(self.alias)
        since = clock()
        with self.changing([key_hash]) if waits else nullcontext():
            written = self.table.update(
                key_hash,
                row,
                data,
                values,
                keep_later_expiry=keep_later_expiry,
                restart_lifetime=restart_lifetime,
            )
        # None: another version is stored; the engine's retry replaces the entry.
        if not waits and written is not None:
            self._replace(key_hash, written, since)
        return written

    def rekey(self, key_hash: str, new_key_hash: str, now: datetime.datetime) -> bool:
        with self.changing([key_hash]):
            return self.table.rekey(key_hash, new_key_hash, now)

    def touch(
        self,
        key_hash: str,
        row: Row,
        now: datetime.datetime,
        due: datetime.datetime,
        *,
        ip: str | None,
        user_agent: str | None,
    ) -> bool:
        if in_transaction(self.alias):
            with self.changing([key_hash]):
                return self.table.touch(key_hash, row, now, due, ip=ip, user_agent=user_agent)
        since = clock()
        touched = self.table.touch(key_hash, row, now, due, ip=ip, user_agent=user_agent)
        # The same version with the new updated_at, so that the next request
        # served from the cache does not find the activity due again.
        if touched and row.created_at is not None:
            entry = Row(key_hash, row.data, row.version + 1, row.expire_date, now, row.created_at)
            entry.expire_date = from_db_datetime(self.table.connection, row.expire_date)
            self._replace(key_hash, entry, since)
        return touched

    def delete(self, key_hash: str) -> None:
        with self.changing([key_hash]):
            self.table.delete(key_hash)

    @contextmanager
    def changing(self, key_hashes: Sequence[str]) -> Iterator[None]:
        """
        Tombstone these rows around a change: inside a transaction before
        the statement too (the commit may come after a reader's copy of the
        old row), and after the commit.
        """
        if in_transaction(self.alias):
            self._tombstone(key_hashes)
        with self.table.changing(key_hashes):
            yield
        hashes = list(key_hashes)
        after_commit(self.alias, lambda: self._tombstone(hashes))

    def _read(self, key_hash: str) -> Row | None:
        """The entry in the cache, live or not; None for a miss, a tombstone or an error."""
        store = self._cache()
        if store is None:
            return None
        try:
            value = store.get(self.prefix + key_hash)
        except Exception as exc:
            self._failed(exc)
            return None
        return None if value is None else self._unpack(key_hash, value)

    def _offer(self, key_hash: str, row: Row, since: float) -> None:
        """Store a copy a read or INSERT begun at clock() `since` returned, if still fresh."""
        if not row.data or in_transaction(self.alias) or clock() - since > FRESH_SECONDS:
            # No data: this process could not open the row (a key it lacks,
            # no cryptography); a process that can would be served its copy.
            return
        cache = self._cache()
        if cache is None:
            return
        ttl = _ttl(cache.cache, row)
        if ttl is None:
            return
        try:
            cache.offer(self.prefix + key_hash, row.version, self._pack(key_hash, row), ttl)
        except Exception as exc:
            self._failed(exc)

    def _replace(self, key_hash: str, row: Row, since: float) -> None:
        """After this process changed the row in autocommit: the new entry, or a tombstone."""
        cache = self._cache()
        if cache is None:
            self._pend([key_hash])
            return
        # Inline, not _ttl(): the save path's call count (tests/test_call_counts.py).
        ttl = (row.expire_date - timezone.now()).total_seconds()
        if (timeout := cache.cache.default_timeout) is not None:
            ttl = min(ttl, timeout)
        try:
            if (
                ttl < 1
                or not row.data  # unreadable here, as in _offer()
                or row.created_at is None
                or not cache.compares
                or clock() - since > FRESH_SECONDS
            ):
                cache.tombstone([self.prefix + key_hash])
            else:
                cache.offer(self.prefix + key_hash, row.version, self._pack(key_hash, row), ttl)
        except Exception as exc:
            self._failed(exc)
            self._pend([key_hash])

    def _tombstone(self, key_hashes: Sequence[str]) -> None:
        """Tombstone these entries now, or keep them for when the cache answers."""
        hashes = list(key_hashes)
        if not hashes:
            return
        cache = self._cache()
        if cache is None:
            self._pend(hashes)
            return
        try:
            cache.tombstone([self.prefix + key_hash for key_hash in hashes])
        except Exception as exc:
            self._failed(exc)
            self._pend(hashes)

    @property
    def undelivered(self) -> int:
        """Tombstones waiting for the cache to answer: copies other processes may still serve."""
        return len(self._pending)

    def _missed_the_cache(self, key_hashes: Sequence[str]) -> None:
        pass  # this is the cache: changing() told it

    # An entry: "version|expire_date|updated_at|created_at|" (the header; the
    # version first, the offer script reads it), then "n|payload data": the
    # session serialized (n characters of SESSION_SERIALIZER's output) and as
    # stored (signed). In the clear, HMAC-SHA256 of all that follows as
    # "|mac"; under SQL_SESSIONS_ENCRYPT, "n|payload data" is sealed instead,
    # with the header in the cipher's associated data, which authenticates it
    # as the MAC would. Both cover the key hash the entry is stored under, so
    # whoever can write to the cache cannot copy one user's entry to another
    # session's key. See docs/cache.rst, "Entries".

    def _pack(self, key_hash: str, row: Row) -> str:
        try:
            # A store not named SessionStore has another salt: no payload.
            session = signing.loads(row.data, salt=_SALT, serializer=self.serializer)
            payload = self._codec.dumps(session).decode("latin-1")
        except Exception:
            payload = ""
        header = (
            f"{row.version}|{row.expire_date.isoformat()}|{row.updated_at.isoformat()}|"
            f"{row.created_at.isoformat()}|"
        )
        tail = f"{len(payload)}|{payload}{row.data}"
        if self.encrypt:
            return header + seal(tail, f"{CACHE}{key_hash}|{header}".encode())
        body = header + tail
        # Inline, as in _unpack(): the save path's call count (tests/test_call_counts.py).
        mac = hmac.new(self._mac_key, f"{key_hash}|{body}".encode(), hashlib.sha256)
        return f"{body}|{mac.hexdigest()[:32]}"

    def _unpack(self, key_hash: str, value: str) -> Row | None:
        """The entry in a cached value; None for a tombstone or anything unreadable."""
        fromisoformat = datetime.datetime.fromisoformat
        try:
            version, expire_date, updated_at, created_at, tail = value.split("|", 4)
            if tail.startswith(PREFIX):
                # Sealed; None if changed or under a key since retired: a miss.
                opened = try_open(tail, f"{CACHE}{key_hash}|{value[: -len(tail)]}".encode())
                if opened is None:
                    return None
                tail = opened
            else:
                # A tombstone, corrupt, or written under another SECRET_KEY: a miss.
                body, _, mac = value.rpartition("|")
                expected = hmac.new(self._mac_key, f"{key_hash}|{body}".encode(), hashlib.sha256)
                if not hmac.compare_digest(mac, expected.hexdigest()[:32]):
                    return None
                tail = tail[: -len(mac) - 1]
            length, rest = tail.split("|", 1)
            n = int(length)
            row = Row(
                key_hash,
                rest[n:],
                int(version),
                fromisoformat(expire_date),
                fromisoformat(updated_at),
                fromisoformat(created_at),
                self._codec.loads(rest[:n].encode("latin-1")) if n else None,
            )
        except ValueError:
            return None
        # Written under the other USE_TZ: not comparable with now.
        if (row.expire_date.tzinfo is not None) != settings.USE_TZ:
            return None
        return row

    def _cache(self) -> _Store | None:
        """The session cache, or None while it is out of use after an error."""
        if self._down_until and clock() < self._down_until:
            return None
        cache = caches[self.cache_alias]
        # Kept on the cache object (one per thread or request context).
        store: _Store | None = cache.__dict__.get(_KEPT_STORE)
        if store is None:
            store = cache.__dict__[_KEPT_STORE] = (
                _RedisStore(self.cache_alias, cache)
                if isinstance(cache, RedisCache)
                else _Store(self.cache_alias, cache)
            )
        if self._pending and not self._deliver(store):
            return None
        return store

    def _failed(self, exc: Exception) -> None:
        now = clock()
        with self._lock:
            cache_errors[self.cache_alias] += 1
            self._errors_since_log += 1
            self._down_until = now + RETRY_AFTER
            if self._logged_at is not None and now - self._logged_at < LOG_EVERY:
                return
            count, self._errors_since_log, self._logged_at = self._errors_since_log, 0, now
        logger.warning(
            "Session cache %r failed (%s since the last report); sessions are read "
            "from and written to the database alone for %g seconds: %s",
            self.cache_alias,
            counted(count, "error", "errors"),
            RETRY_AFTER,
            exc,
        )

    def _pend(self, key_hashes: list[str]) -> None:
        with self._lock:
            for key_hash in key_hashes:
                if len(self._pending) >= MAX_PENDING:
                    logger.error(
                        "Session cache: more than %d tombstones are waiting for the cache; "
                        "changes to other sessions may be served stale from it until its "
                        "TIMEOUT ends.",
                        MAX_PENDING,
                    )
                    return
                self._pending[key_hash] = None

    def _deliver(self, store: _Store) -> bool:
        """Send the tombstones that waited for the cache; whether it took them."""
        with self._lock:
            hashes = list(self._pending)
        try:
            for start in range(0, len(hashes), 1000):
                store.tombstone([self.prefix + h for h in hashes[start : start + 1000]])
        except Exception as exc:
            self._failed(exc)
            return False
        with self._lock:
            for key_hash in hashes:
                self._pending.pop(key_hash, None)
        logger.info(
            "Session cache %r answers again; %s sent.",
            self.cache_alias,
            counted(len(hashes), "tombstone", "tombstones"),
        )
        return True


def _ttl(cache: BaseCache, row: Row) -> float | None:
    """Seconds the entry may live: until the session expires, at most the cache's TIMEOUT."""
    seconds = (row.expire_date - timezone.now()).total_seconds()
    if (timeout := cache.default_timeout) is not None:
        seconds = min(seconds, timeout)
    return seconds if seconds >= 1 else None


class _Store:
    """Any Django cache, through its API: no compare-and-set, so changes tombstone."""

    compares = False

    def __init__(self, alias: str, cache: BaseCache) -> None:
        self.alias = alias
        self.cache = cache

    def get(self, key: str) -> str | None:
        value = self.cache.get(key)
        return value if isinstance(value, str) else None

    def offer(self, key: str, version: int, value: str, ttl: float) -> None:
        self.cache.add(key, value, ttl)

    def tombstone(self, keys: list[str]) -> None:
        self.cache.set_many(dict.fromkeys(keys, TOMBSTONE), TOMBSTONE_SECONDS)


class _RedisStore(_Store):
    """Django's RedisCache, through its client: the offer script compares versions."""

    compares = True

    def __init__(self, alias: str, cache: BaseCache) -> None:
        super().__init__(alias, cache)
        # One client per configuration and process: Django makes a cache
        # object with its own pool per thread and, under ASGI, per request,
        # which would connect to Redis on every request. redis-py's clients
        # are thread-safe.
        kept = cache.__dict__.get(_KEPT_CLIENT)
        if kept is None:
            config = (alias, repr(cache._servers), repr(cache._options))  # type: ignore[attr-defined]
            with _clients_lock:
                kept = _clients.get(config)
                if kept is None:
                    client = cache._cache.get_client(write=True)  # type: ignore[attr-defined]
                    kept = _clients[config] = (client, client.register_script(_OFFER_SCRIPT))
            cache.__dict__[_KEPT_CLIENT] = kept
        self.client, self.script = kept

    def get(self, key: str) -> str | None:
        value = self.client.get(self.cache.make_key(key))
        return None if value is None else bytes(value).decode("utf-8", "replace")

    def offer(self, key: str, version: int, value: str, ttl: float) -> None:
        self.script(keys=[self.cache.make_key(key)], args=[version, value, int(ttl * 1000)])

    def tombstone(self, keys: list[str]) -> None:
        pipeline = self.client.pipeline(transaction=False)
        for key in keys:
            pipeline.set(self.cache.make_key(key), TOMBSTONE, px=TOMBSTONE_SECONDS * 1000)
        pipeline.execute()


_KEPT_CLIENT = "_django_sql_sessions_client"
_KEPT_STORE = "_django_sql_sessions_store"
# (alias, servers, options) -> (client, offer script), per process.
_clients: dict[tuple[str, str, str], tuple[Any, Any]] = {}
_clients_lock = threading.Lock()


def forget_clients(*, setting: str = "", **kwargs: Any) -> None:
    """setting_changed receiver: new Redis clients for new CACHES, as Django does."""
    if setting == "CACHES":
        with _clients_lock:
            _clients.clear()


def record_in_database(*, using: str, **kwargs: Any) -> None:
    """
    post_migrate receiver: record whether the cached engine fronts the table,
    for processes configured without it (storage.SessionTable.undelivered).
    """
    from django_sql_sessions.models import FrontingCache

    table = plain_table()
    if using != table.alias:
        return
    if FrontingCache._meta.db_table not in table.connection.introspection.table_names():
        return  # migrated backwards
    records = FrontingCache.objects.filter(session_table=table.name)
    if in_use():
        cache = caches[settings.SESSION_CACHE_ALIAS]
        records.update_or_create(
            session_table=table.name,
            defaults={
                "cache": f"{settings.SESSION_CACHE_ALIAS} ({type(cache).__name__})"[:200],
                "recorded_at": timezone.now(),
            },
        )
    else:
        records.delete()


def reset() -> None:
    """Forget cache errors and waiting tombstones (for tests)."""
    table = cached_table()
    with table._lock:
        table._down_until, table._logged_at, table._errors_since_log = 0.0, None, 0
        table._pending.clear()
