"""
The cache in front of the session table, for backends.cached_db: what an
entry holds, how it is written so that it is never newer in the cache than
in the database, and what happens when the cache is down.

The database is the truth; the cache holds copies, keyed by key hash. Every
write to the cache is one of three:

- offer: store a copy read from, or just inserted into, the table, unless
  the cache holds a newer version or a tombstone;
- replace: after this process changed the row, store the new version (on
  Redis, where a script compares versions) or, on caches without
  compare-and-set, a tombstone;
- invalidate: a tombstone, after a delete (or any change made outside the
  engine).

A tombstone lives TOMBSTONE_SECONDS and blocks offers and replacements; a
copy whose read (or write) is older than half that is never stored, so no
copy read before a delete lands after the tombstone is gone. Cache changes
that follow a database write wait for its commit. docs/cache.rst has the
races each rule closes.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.redis import RedisCache
from django.db import connections, transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from django_sql_sessions import conf

logger = logging.getLogger("django_sql_sessions")

KEY_PREFIX = "django_sql_sessions:"
TOMBSTONE = "-"
# How long a tombstone blocks copies of a deleted or changed row; a copy
# read or written more than half this long ago is dropped instead.
TOMBSTONE_SECONDS = 10
FRESH_SECONDS = TOMBSTONE_SECONDS / 2
# After a cache error, the cache is left alone for this long: a hung cache
# costs one request per process its timeout per interval, not every request.
RETRY_AFTER = 5.0
# Cache errors are logged at most this often per process (with the count).
LOG_EVERY = 60.0
# Key hashes whose tombstones wait for the cache to come back, per process.
MAX_PENDING = 100_000

# Store the entry unless the cache holds a tombstone or a newer version. An
# equal version is replaced: same data, later activity.
_OFFER_SCRIPT = """
local current = redis.call('GET', KEYS[1])
if current then
  local version = tonumber(string.match(current, '^(%d+)|'))
  if version == nil or version > tonumber(ARGV[1]) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""

# The clock the freshness and retry rules read (tests move it).
clock = time.monotonic

# Cache errors since the process started, by cache alias: each also keeps
# the cache out of use for RETRY_AFTER seconds (reads and writes go to the
# database alone).
cache_errors: Counter[str] = Counter()


class Entry(NamedTuple):
    """A row as the cache holds it: what the engine's _Row needs."""

    data: str  # encoded and signed, as stored
    version: int
    # In the project's time, as the ORM reads them.
    expire_date: datetime.datetime
    updated_at: datetime.datetime
    created_at: datetime.datetime  # for SQL_SESSIONS_ABSOLUTE_LIFETIME

    def dump(self) -> str:
        # The version first: the offer script reads it.
        return (
            f"{self.version}|{self.expire_date.isoformat()}|{self.updated_at.isoformat()}|"
            f"{self.created_at.isoformat()}|{self.data}"
        )

    @classmethod
    def load(cls, value: str) -> Entry | None:
        """The entry in a cached value; None for a tombstone or anything else."""
        parts = value.split("|", 4)
        if len(parts) != 5:
            return None
        version, expire_date, updated_at, created_at, data = parts
        try:
            return cls(
                data,
                int(version),
                datetime.datetime.fromisoformat(expire_date),
                datetime.datetime.fromisoformat(updated_at),
                datetime.datetime.fromisoformat(created_at),
            )
        except ValueError:
            return None


ENGINE = "django_sql_sessions.backends.cached_db"


@conf.cached
def in_use() -> bool:
    """Whether SESSION_ENGINE is backends.cached_db, or a subclass of its store."""
    try:
        store = import_string(f"{settings.SESSION_ENGINE}.SessionStore")
    except ImportError:
        return False
    # By name: the engine imports this module, not the other way round.
    return any(cls.__module__ == ENGINE for cls in getattr(store, "__mro__", ()))


def read(key_hash: str) -> Entry | None:
    """The cached entry of a live session, or None (a miss, a tombstone, an error)."""
    store = _store()
    if store is None:
        return None
    try:
        value = store.get(KEY_PREFIX + key_hash)
    except Exception as exc:
        _failed(store, exc)
        return None
    return None if value is None else Entry.load(value)


def offer(key_hash: str, entry: Entry, since: float, *, using: str) -> None:
    """
    Store an entry that a read or an INSERT begun at monotonic time `since`
    returned, unless the cache holds a newer version or a tombstone. Nothing
    is stored from inside a transaction, whose reads may be older than the
    last commit.
    """
    if not _autocommit(using):
        return
    store = _store()
    if store is None or clock() - since > FRESH_SECONDS:
        return
    ttl = _ttl(store.cache, entry)
    if ttl is None:
        return
    try:
        store.offer(KEY_PREFIX + key_hash, entry, ttl)
    except Exception as exc:
        _failed(store, exc)


def replace(key_hash: str, entry: Entry, since: float, *, using: str) -> None:
    """
    After this process changed the row (a write begun at monotonic time
    `since`), once it is committed: store the new entry unless a newer one
    or a tombstone is there, where the cache can compare versions; a
    tombstone otherwise.
    """

    def action() -> None:
        store = _store()
        if store is None:
            _pend([key_hash])
            return
        ttl = _ttl(store.cache, entry)
        try:
            if ttl is None or not store.compares or clock() - since > FRESH_SECONDS:
                store.tombstone([KEY_PREFIX + key_hash])
            else:
                store.offer(KEY_PREFIX + key_hash, entry, ttl)
        except Exception as exc:
            _failed(store, exc)
            _pend([key_hash])

    _when_committed(using, action)


def invalidate(key_hashes: Iterable[str], *, using: str) -> None:
    """Tombstone these sessions' entries once the current transaction on `using` commits."""
    hashes = list(key_hashes)
    if not hashes:
        return

    def action() -> None:
        store = _store()
        if store is None:
            _pend(hashes)
            return
        try:
            store.tombstone([KEY_PREFIX + key_hash for key_hash in hashes])
        except Exception as exc:
            _failed(store, exc)
            _pend(hashes)

    _when_committed(using, action)


def _autocommit(using: str) -> bool:
    connection = connections[using]
    return not connection.in_atomic_block and connection.autocommit


def _when_committed(using: str, action: Callable[[], None]) -> None:
    """Run action after the transaction on `using` commits, or now in autocommit."""
    connection = connections[using]
    if connection.in_atomic_block:
        transaction.on_commit(action, using=using)
    else:
        # In autocommit the write is committed. (Under manual transaction
        # management Django cannot wait for the commit either; the cache is
        # changed now.)
        action()


def _ttl(cache: BaseCache, entry: Entry) -> float | None:
    """Seconds the entry may live: until the session expires, at most the cache's TIMEOUT."""
    seconds = (entry.expire_date - timezone.now()).total_seconds()
    timeout = cache.default_timeout
    if timeout is not None:
        seconds = min(seconds, timeout)
    return seconds if seconds >= 1 else None


# The cache is out of use until this monotonic time, after an error.
_down_until = 0.0
_logged_at: float | None = None
_errors_since_log = 0
_pending: dict[str, None] = {}
_lock = threading.Lock()


def _failed(store: _Store, exc: Exception) -> None:
    global _down_until, _logged_at, _errors_since_log
    now = clock()
    with _lock:
        cache_errors[store.alias] += 1
        _errors_since_log += 1
        _down_until = now + RETRY_AFTER
        if _logged_at is not None and now - _logged_at < LOG_EVERY:
            return
        count, _errors_since_log, _logged_at = _errors_since_log, 0, now
    logger.warning(
        "Session cache %r failed (%d %s since the last report); sessions are read "
        "from and written to the database alone for %g seconds: %s",
        store.alias,
        count,
        "error" if count == 1 else "errors",
        RETRY_AFTER,
        exc,
    )


def _pend(key_hashes: list[str]) -> None:
    """Remember tombstones the cache could not take, for when it answers again."""
    with _lock:
        for key_hash in key_hashes:
            if len(_pending) >= MAX_PENDING:
                logger.error(
                    "Session cache: more than %d tombstones are waiting for the cache; "
                    "changes to other sessions may be served stale from it until its "
                    "TIMEOUT ends.",
                    MAX_PENDING,
                )
                return
            _pending[key_hash] = None


def _store() -> _Store | None:
    """The session cache, or None while it is out of use after an error."""
    if _down_until and clock() < _down_until:
        return None
    alias = settings.SESSION_CACHE_ALIAS
    cache = caches[alias]
    store: _Store = (
        _RedisStore(alias, cache) if isinstance(cache, RedisCache) else _Store(alias, cache)
    )
    if _pending and not _deliver(store):
        return None
    return store


def _deliver(store: _Store) -> bool:
    """Send the tombstones that waited for the cache; whether it took them."""
    with _lock:
        hashes = list(_pending)
    try:
        for start in range(0, len(hashes), 1000):
            store.tombstone([KEY_PREFIX + h for h in hashes[start : start + 1000]])
    except Exception as exc:
        _failed(store, exc)
        return False
    with _lock:
        for key_hash in hashes:
            _pending.pop(key_hash, None)
    sent = len(hashes)
    logger.info(
        "Session cache %r answers again; %d %s sent.",
        store.alias,
        sent,
        "tombstone" if sent == 1 else "tombstones",
    )
    return True


class _Store:
    """Any Django cache, through its API: no compare-and-set, so changes tombstone."""

    compares = False

    def __init__(self, alias: str, cache: BaseCache) -> None:
        self.alias = alias
        self.cache = cache

    def get(self, key: str) -> str | None:
        value = self.cache.get(key)
        return value if isinstance(value, str) else None

    def offer(self, key: str, entry: Entry, ttl: float) -> None:
        self.cache.add(key, entry.dump(), ttl)

    def tombstone(self, keys: list[str]) -> None:
        self.cache.set_many(dict.fromkeys(keys, TOMBSTONE), TOMBSTONE_SECONDS)


class _RedisStore(_Store):
    """Django's RedisCache, through its client: the offer script compares versions."""

    compares = True

    def __init__(self, alias: str, cache: BaseCache) -> None:
        super().__init__(alias, cache)
        # One client and script per cache configuration and process, kept on
        # each cache object too for the next look-up: making a redis.Redis
        # costs more than a GET, and Django makes a cache object, with a
        # connection pool of its own, per thread and, under ASGI, per
        # request (a context of its own), which would connect to Redis on
        # every request. redis-py's clients and pools are thread-safe.
        kept = cache.__dict__.get(_KEPT_CLIENT)
        if kept is None:
            config = (alias, repr(cache._servers), repr(cache._options))  # type: ignore[attr-defined]
            with _lock:
                kept = _clients.get(config)
                if kept is None:
                    client = cache._cache.get_client(write=True)  # type: ignore[attr-defined]
                    kept = _clients[config] = (client, client.register_script(_OFFER_SCRIPT))
            cache.__dict__[_KEPT_CLIENT] = kept
        self.client, self.script = kept

    def get(self, key: str) -> str | None:
        value = self.client.get(self.cache.make_key(key))
        return None if value is None else bytes(value).decode("ascii", "replace")

    def offer(self, key: str, entry: Entry, ttl: float) -> None:
        self.script(
            keys=[self.cache.make_key(key)], args=[entry.version, entry.dump(), int(ttl * 1000)]
        )

    def tombstone(self, keys: list[str]) -> None:
        pipeline = self.client.pipeline(transaction=False)
        for key in keys:
            pipeline.set(self.cache.make_key(key), TOMBSTONE, px=TOMBSTONE_SECONDS * 1000)
        pipeline.execute()


_KEPT_CLIENT = "_django_sql_sessions_client"
# (alias, servers, options) -> (client, offer script), per process.
_clients: dict[tuple[str, str, str], tuple[Any, Any]] = {}


def forget_clients(*, setting: str = "", **kwargs: Any) -> None:
    """
    Make Redis clients anew after CACHES changes (connected to setting_changed
    in AppConfig.ready()), as Django makes its cache objects anew.
    """
    if setting == "CACHES":
        with _lock:
            _clients.clear()


def reset() -> None:
    """Forget errors and waiting tombstones (for tests)."""
    global _down_until, _logged_at, _errors_since_log
    with _lock:
        _down_until = 0.0
        _logged_at = None
        _errors_since_log = 0
        _pending.clear()
