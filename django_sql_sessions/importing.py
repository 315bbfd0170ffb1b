"""
Copy the live rows of Django's session table into ours, keys hashed. Safe to
run again: ImportedSession remembers every copied key, so a later run never
brings back a session deleted since (docs/design.rst, "Moving in").
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable

from django.conf import settings
from django.db import connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone
from django.utils.module_loading import import_string

from django_sql_sessions import conf
from django_sql_sessions.backends.db import SessionStore
from django_sql_sessions.base_session import AbstractSession
from django_sql_sessions.cursors import ALL, fetch_one, send
from django_sql_sessions.dialects import dialect
from django_sql_sessions.keys import is_valid_key
from django_sql_sessions.models import ImportedSession
from django_sql_sessions.sql import from_db_datetime, to_db_datetime
from django_sql_sessions.storage import (
    hash_key,
    in_lists,
    plain_table,
    session_model,
    user_id_from_session,
)

DEFAULT_SOURCE_TABLE = "django_session"


@dataclasses.dataclass
class ImportResult:
    imported: int = 0  # copied (or, in a dry run, would be)
    present: int = 0  # already in our table: left as they are
    gone: int = 0  # copied by an earlier run and deleted since (logged out, revoked)
    too_large: int = 0  # larger than SQL_SESSIONS_MAX_SIZE: skipped
    vanished: int = 0  # copied, then deleted in the source: the copies are deleted too
    unreadable: int = 0  # a key or data that Django would not load: skipped
    expired: int = 0  # expired in the source: skipped
    batches: int = 0


# Called after each batch with the totals so far.
Progress = Callable[[ImportResult], None]


class ImportProblem(ValueError):
    """The source named cannot be imported from; the message says why."""


def import_django_sessions(
    *,
    source_alias: str = "default",
    source_table: str = DEFAULT_SOURCE_TABLE,
    batch_size: int = 1000,
    dry_run: bool = False,
    now: datetime.datetime | None = None,
    progress: Progress | None = None,
) -> ImportResult:
    source = _source(source_alias, source_table)
    count_expired, select = dialect(source).import_statements(source.ops.quote_name(source_table))
    now = now or timezone.now()
    cutoff = to_db_datetime(source, now)
    result = ImportResult()
    expired = fetch_one(source, count_expired, cutoff=cutoff)
    assert expired is not None
    result.expired = int(expired[0])
    store = SessionStore()
    model, extra = session_model(), plain_table().extra
    target = connections[conf.DB_ALIAS.get()]
    max_bytes = conf.MAX_SIZE.get()
    label = f"{source_alias}.{source_table}"
    seen: set[str] = set()  # in a dry run, which writes no seen_at
    last_key = ""
    while True:
        rows = send(
            source, select, {"after": last_key, "cutoff": cutoff, "limit": batch_size}, ALL
        )
        if not rows:
            break
        last_key = rows[-1][0]
        sessions = {}
        # The source's current expiry of every live key in the batch.
        expiries = {
            hash_key(key): from_db_datetime(source, expire_date)
            for key, _data, expire_date in rows
            if is_valid_key(key)
        }
        for key, data, expire_date in rows:
            decoded = store.decode(data) if is_valid_key(key) else {}
            if not decoded:
                result.unreadable += 1
                continue
            if len(data) > max_bytes:
                result.too_large += 1
                continue
            key_hash = hash_key(key)
            sessions[key_hash] = model(
                key_hash=key_hash,
                data=data,
                expire_date=from_db_datetime(source, expire_date),
                # Django's table does not say when a session began.
                created_at=now,
                updated_at=now,
                user_id=user_id_from_session(decoded),
            )
            if extra:  # the model's own columns, as the engine fills them
                engine = import_string(f"{settings.SESSION_ENGINE}.SessionStore")(key)
                engine._session_cache = decoded
                made = engine.create_model_instance(decoded)
                for field in extra:
                    setattr(sessions[key_hash], field.attname, getattr(made, field.attname))
        present = set(_expiries(model, list(sessions)))
        markers = _expiries(ImportedSession, list(expiries))
        gone = set(markers) & set(sessions) - present
        new = [s for key_hash, s in sessions.items() if key_hash not in present | set(markers)]
        if dry_run:
            seen.update(markers)
        else:
            _extend_markers(markers, expiries, now)
        if new and not dry_run:
            # A row another import inserted since is skipped where the backend can.
            conflicts = target.features.supports_ignore_conflicts
            with transaction.atomic(using=target.alias):
                model.objects.bulk_create(new, ignore_conflicts=conflicts)
                ImportedSession.objects.bulk_create(
                    [ImportedSession(s.key_hash, s.expire_date, label, now) for s in new],
                    ignore_conflicts=conflicts,
                )
        result.present += len(present)
        result.gone += len(gone)
        result.imported += len(new)
        result.batches += 1
        if progress:
            progress(result)
    # A live marker not seen in the source: Django's engine deleted the row
    # after it was copied, and the copy would keep the old cookie working.
    vanished = ImportedSession.objects.filter(source=label, expire_date__gt=now)
    if dry_run:
        result.vanished = sum(
            1 for h in vanished.values_list("key_hash", flat=True) if h not in seen
        )
        return result
    vanished_hashes = list(vanished.filter(seen_at__lt=now).values_list("key_hash", flat=True))
    for chunk in in_lists(vanished_hashes):
        with transaction.atomic(using=target.alias):
            model.objects.filter(key_hash__in=chunk).delete()
            ImportedSession.objects.filter(key_hash__in=chunk).delete()
    result.vanished = len(vanished_hashes)
    # Markers last as long as their rows (extended above): an expired one guards none.
    ImportedSession.objects.filter(expire_date__lte=now).delete()
    return result


def _expiries(
    model: type[AbstractSession] | type[ImportedSession], key_hashes: list[str]
) -> dict[str, datetime.datetime]:
    """The expiries of these key hashes' rows in the model's table, expired or not."""
    found: dict[str, datetime.datetime] = {}
    for chunk in in_lists(key_hashes):
        rows = model.objects.filter(key_hash__in=chunk)
        found.update(rows.values_list("key_hash", "expire_date"))
    return found


def _extend_markers(
    markers: dict[str, datetime.datetime],
    expiries: dict[str, datetime.datetime],
    now: datetime.datetime,
) -> None:
    """
    Record that these markers' rows are still in the source, and keep each
    until its row expires: Django's engine may have pushed the expiry on.
    """
    for chunk in in_lists(list(markers)):
        ImportedSession.objects.filter(key_hash__in=chunk).update(seen_at=now)
    for key_hash, marker_expiry in markers.items():
        if expiries[key_hash] > marker_expiry:
            ImportedSession.objects.filter(key_hash=key_hash).update(
                expire_date=expiries[key_hash]
            )


def _source(alias: str, table: str) -> BaseDatabaseWrapper:
    if alias not in settings.DATABASES:
        raise ImportProblem(
            f"{alias!r} is not an alias in DATABASES (the aliases are "
            f"{', '.join(map(repr, settings.DATABASES))})."
        )
    if conf.table_name_rule("table", table):
        raise ImportProblem(f"{table!r} is not a plain SQL table name.")
    if alias == conf.DB_ALIAS.get() and table == conf.TABLE.get():
        raise ImportProblem(f"{table!r} on {alias!r} is this package's own session table.")
    connection = connections[alias]
    if table not in connection.introspection.table_names():
        raise ImportProblem(f"There is no table {table!r} in database {alias!r}.")
    return connection
