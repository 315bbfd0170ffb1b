"""
The session table's one door: every read and write of a session row goes
through a SessionTable, which keeps the invariants (version, cache, lifetime,
size) once. docs/design.rst, "The storage layer", has the picture and the rules.
"""

from __future__ import annotations

import binascii
import dataclasses
import datetime
import hashlib
import logging
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from django.apps import apps
from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import F, Field
from django.utils import timezone
from django.utils.module_loading import import_string

from django_sql_sessions import conf
from django_sql_sessions.cursors import ALL, ONE, execute, fetch_one, send
from django_sql_sessions.dialects import statements
from django_sql_sessions.encryption import PREFIX, current_prefix, readable, seal
from django_sql_sessions.exceptions import SessionTooLarge
from django_sql_sessions.sql import Statements, to_db_datetime

if TYPE_CHECKING:
    from django_sql_sessions.base_session import AbstractSession

logger = logging.getLogger("django_sql_sessions")

# SQL_SESSIONS_ABSOLUTE_LIFETIME = 0 (off): the load statement still takes a
# bound, one no session reaches.
FOREVER = 100 * 365 * 24 * 3600
# How long what migrate recorded of a cache in front of the table is
# believed before it is read again (see SessionTable._missed_the_cache()).
FRONTED_RECHECK = 600.0
# Key hashes per IN (...) list: SQLite builds before 3.32 take at most 999
# parameters, and shorter lists keep each statement's locks short.
IN_LIST_SIZE = 500
# Long enough for any primary key Django's login() stores as text: integers,
# UUIDs, and the usual string keys. A longer one is not indexed (see
# user_id_from_session()).
USER_ID_MAX_LENGTH = 255


def hash_key(key: str) -> str:
    """
    Return the digest stored in place of ``key``, so that a database dump is
    no pile of cookies. Keys have 165 bits of entropy: no salt is needed.
    """
    return hashlib.sha256(key.encode("ascii")).hexdigest()


def user_id_from_session(data: dict[str, Any]) -> str | None:
    """The user_id column's value for session data: login()'s user key, or None."""
    value = data.get(SESSION_KEY)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # written by code other than login(); same user
    if isinstance(value, str) and 0 < len(value) <= USER_ID_MAX_LENGTH:
        return value
    # Anonymous, or a value login() never writes: the session still works,
    # it is just not in the user index.
    return None


@dataclasses.dataclass(slots=True)
class Row:
    """A session row as the table last read or wrote it."""

    key_hash: str
    data: str  # encoded and signed, as stored
    version: int
    # As the driver returned them (most loads never look), or datetimes.
    expire_date: Any
    updated_at: Any
    created_at: Any = None  # only the cached engine's entries need it
    # The data decoded, from an authenticated cache entry: no decode needed.
    session: dict[str, Any] | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Values:
    """What a save writes besides the data: see SessionTable.insert()/update()."""

    expire_date: datetime.datetime
    now: datetime.datetime
    user_id: str | None
    ip: str | None  # None keeps what is stored (a save outside a request)
    user_agent: str | None
    extra: tuple[Any, ...] = ()  # the values of SessionTable.extra's columns


class SessionTable:
    """
    The session rows on one alias and table. Methods take key hashes, never
    raw keys. The cached engine wraps an instance (caching.CachedSessionTable)
    with the same interface.
    """

    def __init__(self, alias: str, name: str, extra: tuple[Field[Any, Any], ...] = ()) -> None:
        self.alias = alias
        self.name = name
        self.extra = extra  # the columns a subclass of the session model adds
        # Fixed for the instance's life: a changed setting makes a new one.
        self.lifetime = datetime.timedelta(seconds=conf.ABSOLUTE_LIFETIME.get() or FOREVER)
        self.max_size = conf.MAX_SIZE.get()
        self.encrypt = conf.ENCRYPT.get()
        self.serializer = import_string(settings.SESSION_SERIALIZER)
        # The statements' attribute on each connection object (per vendor).
        self._kept = f"_django_sql_sessions_statements_{name}"
        # What migrate recorded of a cache in front (caching.record_in_database()).
        self._fronted_by: str | None = None
        self._fronted_until = 0.0
        self._missed = 0

    @property
    def undelivered(self) -> int:
        """Deletes and changes the cache in front was not told of: it may still serve them."""
        return self._missed

    def _missed_the_cache(self, key_hashes: Sequence[str]) -> None:
        """Count and log changes a cache that migrate recorded in front will not hear of."""
        from django_sql_sessions import caching

        if not key_hashes or caching.in_use():
            return
        now = time.monotonic()
        if now >= self._fronted_until:
            model = apps.get_model("django_sql_sessions", "FrontingCache")
            records = model.objects.filter(session_table=self.name)
            try:
                # A failed query must not abort the caller's transaction.
                with transaction.atomic(using=self.alias):
                    self._fronted_by = next(iter(records.values_list("cache", flat=True)), None)
            except DatabaseError as exc:
                # Migration 0006 not run yet: only this warning is lost.
                logger.warning("Could not read %s: %s", model._meta.db_table, exc)
                self._fronted_by = None
            self._fronted_until = now + FRONTED_RECHECK
        if self._fronted_by is None:
            return
        self._missed += len(key_hashes)
        logger.error(
            "The session table %r on %r is served from the cache %s (migrate recorded the "
            "cached engine), but this process runs SESSION_ENGINE = %r: %d deleted or "
            "changed %s may still be served from the cache by other processes until its "
            "TIMEOUT ends. Run this process with the site's SESSION_ENGINE and CACHES.",
            self.name,
            self.alias,
            self._fronted_by,
            settings.SESSION_ENGINE,
            len(key_hashes),
            "session" if len(key_hashes) == 1 else "sessions",
        )

    @property
    def connection(self) -> BaseDatabaseWrapper:
        return connections[self.alias]

    def statements(self) -> tuple[BaseDatabaseWrapper, Statements]:
        """The connection to the alias, and the statements for its vendor."""
        connection = connections[self.alias]
        return connection, connection.__dict__.get(self._kept) or self._compile(connection)

    def _compile(self, connection: BaseDatabaseWrapper) -> Statements:
        columns = tuple(str(field.column) for field in self.extra)
        compiled = connection.__dict__[self._kept] = statements(connection, self.name, columns)
        return compiled

    # The load and the update inline statements(): a call costs a microsecond.

    def load(self, key_hash: str, *, with_created: bool = False) -> Row | None:
        """The live row: not expired, and not past SQL_SESSIONS_ABSOLUTE_LIFETIME."""
        connection = connections[self.alias]
        sql = connection.__dict__.get(self._kept) or self._compile(connection)
        now = timezone.now()
        adapt = connection.ops.adapt_datetimefield_value
        found = send(
            connection,
            sql.load_created if with_created else sql.load,
            {"key_hash": key_hash, "now": adapt(now), "born_after": adapt(now - self.lifetime)},
            ONE,
        )
        if found is None:
            return None
        data, expire_date, version, updated_at, *created_at = found
        row = Row(key_hash, data, version, expire_date, updated_at, *created_at)
        if data.startswith(PREFIX):  # inline: a plaintext row's load makes no call
            row.data = readable(data, key_hash)
            # The cipher authenticated it: no signature to check (opened_session()).
            row.session = opened_session(row.data, self.serializer)
        return row

    def exists(self, key_hash: str) -> bool:
        """Whether the key is taken, by a live or an expired row."""
        connection, sql = self.statements()
        return fetch_one(connection, sql.exists, key_hash=key_hash) is not None

    def reload(self, key_hash: str, *, lock: bool) -> tuple[str, int] | None:
        """(data, version) of the row if it is live; locked until the transaction ends."""
        connection, sql = self.statements()
        statement = sql.reload_locked if lock and sql.reload_locked else sql.reload
        now = connection.ops.adapt_datetimefield_value(timezone.now())
        found = fetch_one(connection, statement, key_hash=key_hash, now=now)
        return None if found is None else (readable(found[0], key_hash), found[1])

    @property
    def locks_rows(self) -> bool:
        """Whether reload(lock=True) locks the row (not SQLite, which serializes writers)."""
        return self.statements()[1].reload_locked is not None

    # The engine's writes.

    def insert(self, key_hash: str, data: str, values: Values) -> Row | None:
        """Insert a new row at version 1; None if the key is taken."""
        if len(data) > self.max_size:
            raise too_large(data, self.max_size)
        connection, sql = self.statements()
        inserted = execute(
            connection,
            sql.insert,
            key_hash=key_hash,
            data=seal(data) if self.encrypt else data,
            expire_date=to_db_datetime(connection, values.expire_date),
            now=to_db_datetime(connection, values.now),
            user_id=values.user_id,
            ip=values.ip,
            user_agent=values.user_agent,
            **(self._extra_params(connection, values) if self.extra else {}),
        )
        if not inserted:
            return None
        return Row(key_hash, data, 1, values.expire_date, values.now, values.now)

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
        """
        Write the row if it still has row.version; return it as written, or None.
        keep_later_expiry keeps a newer request's later expiry; restart_lifetime
        starts SQL_SESSIONS_ABSOLUTE_LIFETIME again (a login).
        """
        if len(data) > self.max_size:
            raise too_large(data, self.max_size)
        connection = connections[self.alias]
        sql = connection.__dict__.get(self._kept) or self._compile(connection)
        adapt = connection.ops.adapt_datetimefield_value
        now = adapt(values.now)
        updated = send(
            connection,
            sql.update if keep_later_expiry else sql.update_exact,
            {
                "data": seal(data) if self.encrypt else data,
                "expire_date": adapt(values.expire_date),
                "now": now,
                "born": now if restart_lifetime else None,
                "key_hash": key_hash,
                "version": row.version,
                "user_id": values.user_id,
                "ip": values.ip,
                "user_agent": values.user_agent,
                **(self._extra_params(connection, values) if self.extra else {}),
            },
        )
        if not updated:
            return None
        created_at = values.now if restart_lifetime else row.created_at
        return Row(key_hash, data, row.version + 1, values.expire_date, values.now, created_at)

    def _extra_params(self, connection: BaseDatabaseWrapper, values: Values) -> dict[str, Any]:
        return {  # x0, x1, ...: see Dialect.compile()
            f"x{i}": field.get_db_prep_save(value, connection)
            for i, (field, value) in enumerate(zip(self.extra, values.extra, strict=True))
        }

    def rekey(self, key_hash: str, new_key_hash: str, now: datetime.datetime) -> bool:
        """
        Move the row to a new key; False if it is gone (or, on PostgreSQL,
        the new key is taken: an IntegrityError elsewhere).
        """
        connection, sql = self.statements()
        return bool(
            execute(
                connection,
                sql.rekey,
                new_key_hash=new_key_hash,
                now=to_db_datetime(connection, now),
                key_hash=key_hash,
            )
        )

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
        """Set last activity (and device details) if at or before `due`, at row.version."""
        connection, sql = self.statements()
        return bool(
            execute(
                connection,
                sql.touch_activity,
                now=to_db_datetime(connection, now),
                key_hash=key_hash,
                version=row.version,
                due=to_db_datetime(connection, due),
                ip=ip,
                user_agent=user_agent,
            )
        )

    def delete(self, key_hash: str) -> None:
        connection, sql = self.statements()
        execute(connection, sql.delete, key_hash=key_hash)

    # reencryptsessions: the data as stored, sealed or not.

    def scan(self, after: str, limit: int, *, sealed_only: bool) -> list[tuple[str, str, int]]:
        """
        (key_hash, data as stored, version) of up to `limit` rows after the
        key hash `after`, in its order, expired ones too: those not sealed
        under the current key, or (sealed_only) those sealed at all.
        """
        connection, sql = self.statements()
        if sealed_only:
            statement, pattern = sql.scan_sealed, f"{PREFIX}%"
        else:
            statement, pattern = sql.scan_unsealed, f"{current_prefix()}%"
        params = {"after": after, "pattern": pattern, "limit": limit}
        rows = send(connection, statement, params, ALL)
        return [(str(key_hash), str(data), int(version)) for key_hash, data, version in rows]

    def reseal(self, key_hash: str, version: int, data: str) -> bool:
        """
        Store the row's data as `data` (the same session, sealed anew) if it
        still has `version`, which moves on, as with every write: a request
        that read the row before merges onto it instead of overwriting it.
        """
        connection, sql = self.statements()
        with self.changing([key_hash]):
            changed = execute(
                connection, sql.reseal, key_hash=key_hash, version=version, data=data
            )
        self._missed_the_cache([key_hash])
        return bool(changed)

    # The ORM's writes, and so the admin's, the commands' and the users' sessions API's.

    def update_rows(self, queryset: Any, values: dict[str, Any]) -> int:
        """queryset.update(**values), moving each row's version on."""
        if isinstance(data := values.get("data"), str) and len(data) > self.max_size:
            raise too_large(data, self.max_size)
        values.setdefault("version", F("version") + 1)
        updated = 0
        for chunk, key_hashes in self._in_chunks(queryset):
            with self.changing(key_hashes):
                updated += chunk.update_unguarded(**values)
            self._missed_the_cache(key_hashes)
        return updated

    def delete_rows(self, queryset: Any) -> tuple[int, dict[str, int]]:
        """queryset.delete(), in chunks whose key hashes the cache is told."""
        deleted, per_model = 0, dict[str, int]()
        for chunk, key_hashes in self._in_chunks(queryset):
            with self.changing(key_hashes):
                count, counts = chunk.delete_unguarded()
            self._missed_the_cache(key_hashes)
            deleted += count
            for label, n in counts.items():
                per_model[label] = per_model.get(label, 0) + n
        return deleted, per_model

    def save_instance(self, instance: Any, save: Callable[[], None]) -> None:
        """instance.save(): the ORM's own save, with the version moved on for an existing row."""
        if isinstance(data := instance.data, str) and len(data) > self.max_size:
            raise too_large(data, self.max_size)
        if instance._state.adding:
            save()
            return
        with self.changing([instance.key_hash]):
            save()
        self._missed_the_cache([instance.key_hash])

    def delete_instance(self, instance: Any, delete: Callable[[], Any]) -> Any:
        key_hash = instance.key_hash
        with self.changing([key_hash]):
            result = delete()
        self._missed_the_cache([key_hash])
        return result

    def _in_chunks(self, queryset: Any) -> Iterator[tuple[Any, Sequence[str]]]:
        """
        The queryset's rows, selected first so the cache is told exactly which
        change, in chunks of IN_LIST_SIZE rows that still match.
        """
        key_hashes = list(queryset.values_list("key_hash", flat=True))
        for chunk in in_lists(key_hashes):
            yield queryset.filter(key_hash__in=chunk), chunk

    @contextmanager
    def changing(self, key_hashes: Sequence[str]) -> Iterator[None]:
        """Around every change of these rows outside the engine: see CachedSessionTable."""
        yield


@conf.cached
def session_model() -> type[AbstractSession]:
    """SESSION_ENGINE's get_model_class() if it is this package's engine; else models.Session."""
    try:  # by name, as caching.in_use(): the engine imports this module
        mro = import_string(f"{settings.SESSION_ENGINE}.SessionStore").__mro__
    except (ImportError, AttributeError):
        mro = ()
    if any(c.__module__ == "django_sql_sessions.backends.db" for c in mro):
        return mro[0].get_model_class()  # type: ignore[no-any-return]
    return apps.get_model("django_sql_sessions", "Session")


@conf.cached
def plain_table() -> SessionTable:
    """The table of session_model() on SQL_SESSIONS_DB_ALIAS."""
    return _new_table(session_model())


def _new_table(model: type[AbstractSession]) -> SessionTable:
    base = apps.get_model("django_sql_sessions", "Session")
    name = session_table() if model is base else model._meta.db_table
    columns = {field.column for field in base._meta.concrete_fields}
    extra = tuple(f for f in model._meta.concrete_fields if f.column not in columns)
    return SessionTable(conf.DB_ALIAS.get(), name, extra)


def table_mismatch(name: object) -> str | None:
    """What is wrong if SQL_SESSIONS_TABLE is not the model's table (check E014), or None."""
    # Through the app registry: the model module imports this one.
    loaded = apps.get_model("django_sql_sessions", "Session")._meta.db_table
    if name == loaded:
        return None
    return f"SQL_SESSIONS_TABLE is {name!r}, but the session model was loaded with {loaded!r}"


def session_table() -> str:
    """
    SQL_SESSIONS_TABLE, still the model's table: an engine that followed a
    changed setting would write one table while the model reads another.
    """
    name = conf.TABLE.get()
    if problem := table_mismatch(name):
        raise ImproperlyConfigured(
            f"{problem}: the table cannot change while the process runs "
            "(override_settings included). Set it before Django starts."
        )
    return name


def table(model: type[AbstractSession] | None = None) -> SessionTable:
    """
    The session table every path uses: behind the cache when the cached engine
    is SESSION_ENGINE, so no write forgets it; a model no engine uses, plain.
    """
    from django_sql_sessions import caching

    if model is not None and model is not session_model():
        return conf.kept.get(model) or conf.remember(model, lambda: _new_table(model))
    return caching.cached_table() if caching.in_use() else plain_table()


_URLSAFE = bytes.maketrans(b"-_", b"+/")


def opened_session(signed: str, serializer: Any) -> dict[str, Any] | None:
    """
    The session in signed data that came out of the cipher, without checking
    its signature: AES-GCM under a key from SECRET_KEY authenticated it, and
    only this package seals, so the signature's HMAC (most of a decode) would
    prove nothing more. None if it is not signing.dumps()'s format; the
    engine's decode() then decides.
    """
    try:
        # signing.dumps(): base64 (after "." if compressed), ":", timestamp, ":", signature.
        payload = signed.rsplit(":", 2)[0].encode()
        compressed = payload[:1] == b"."
        payload = payload[1:] if compressed else payload
        # base64.urlsafe_b64decode() in one step: the call layers cost a microsecond.
        raw = binascii.a2b_base64(payload.translate(_URLSAFE) + b"=" * (-len(payload) % 4))
        session = serializer().loads(zlib.decompress(raw) if compressed else raw)
    except Exception:
        return None
    return session if isinstance(session, dict) else None


def in_lists(key_hashes: Sequence[str]) -> Iterator[Sequence[str]]:
    """key_hashes in slices of IN_LIST_SIZE, for key_hash__in lookups."""
    for start in range(0, len(key_hashes), IN_LIST_SIZE):
        yield key_hashes[start : start + IN_LIST_SIZE]


def too_large(data: str, limit: int) -> SessionTooLarge:
    """The error for encoded data over SQL_SESSIONS_MAX_SIZE (`limit`)."""
    # Signed session data is ASCII: a byte a character in every encoding.
    exc = SessionTooLarge(
        f"The session is {len(data)} bytes encoded, more than "
        f"SQL_SESSIONS_MAX_SIZE ({limit} bytes); nothing was written."
    )
    exc.size, exc.limit = len(data), limit
    return exc


def in_transaction(alias: str) -> bool:
    """Whether a statement on `alias` now is not committed when it returns."""
    connection = connections[alias]
    if connection.in_atomic_block:
        return True
    if connection.connection is None:
        # Not connected yet: Django's flag is False until then, and asking connects.
        return not connection.settings_dict["AUTOCOMMIT"]
    return not connection.autocommit


def after_commit(alias: str, action: Callable[[], None]) -> None:
    """
    Run action once the transaction on `alias` commits, whatever earlier
    on_commit callbacks do; now in autocommit or manual transactions.
    """
    connection = connections[alias]
    if connection.in_atomic_block:
        transaction.on_commit(action, using=alias, robust=True)
    else:
        action()
