"""
What the package sends: statements with named parameters, and datetimes
converted as the ORM would. The SQL itself is each vendor's (dialects.py).

Each statement names its parameters (%(key_hash)s) and is bound by name, so
no caller can pass them in the wrong order. None needs BEGIN/COMMIT around
it, and none leaves a caller's transaction aborted for an expected outcome
(a key collision is 0 rows or a statement-level error).
"""

from __future__ import annotations

import dataclasses
import datetime
import re
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import DateTimeField, Value

_PARAMETER = re.compile(r"%\((\w+)\)s")


@dataclasses.dataclass(frozen=True)
class Statement:
    """A statement with named parameters, and what the drivers are sent."""

    sql: str  # with %(name)s parameters
    names: tuple[str, ...]  # in the order they occur, repeats included
    format: str  # %s placeholders: Django's cursors, psycopg, MySQLdb, pyodbc
    qmark: str  # ? placeholders: the sqlite3 module
    expected: frozenset[str]  # the names, each once: cursors.send() checks the values

    @classmethod
    def of(cls, sql: str) -> Statement:
        names = tuple(_PARAMETER.findall(sql))
        return cls(
            sql, names, _PARAMETER.sub("%s", sql), _PARAMETER.sub("?", sql), frozenset(names)
        )


@dataclasses.dataclass(frozen=True)
class Statements:
    # -> (data, expire_date, version, updated_at) of a live session: not
    # expired, and created (or moved to its key) after born_after
    load: Statement
    # As load, and created_at: the cached engine's entries carry it, so that
    # a hit can apply SQL_SESSIONS_ABSOLUTE_LIFETIME as the load does.
    load_created: Statement
    # -> (data, version) of a live row
    reload: Statement
    # As reload, locking the row until the transaction ends; None where the
    # database has no row locks (SQLite, which serializes writers instead).
    reload_locked: Statement | None
    # -> a row if the key is taken, live or not
    exists: Statement
    # 0 rows or an IntegrityError when the key is taken; version 1
    insert: Statement
    # 0 rows when the row is gone or has another version. Keeps a later
    # stored expiry, and the stored ip and user_agent where these are NULL
    # (not recorded by this request).
    update: Statement
    # As update, but sets the expiry as given.
    update_exact: Statement
    # Sets updated_at (and the device details, as update does) if it is at
    # or before `due` and the row still has `version`, which it moves on: a
    # write since has recorded the activity itself.
    touch_activity: Statement
    delete: Statement
    # Moves the row to new_key_hash: 0 rows when the old row is gone (or, on
    # PostgreSQL, when the new key is taken), an IntegrityError elsewhere
    # when the new key is taken; bumps the version.
    rekey: Statement
    # -> (how many sessions are expired,)
    count_expired: Statement
    # -> (expire_date, key_hash) of the offset+1th expired row in that
    # order, if any
    batch_end: Statement
    # As batch_end, among rows after (after, after_key) in that order.
    batch_end_after: Statement
    # Rows up to (until, until_key) in (expire_date, key_hash) order; and
    # those after (after, after_key) as well.
    delete_until: Statement
    delete_between: Statement


def to_db_datetime(connection: BaseDatabaseWrapper, value: datetime.datetime) -> Any:
    """An aware datetime as a statement parameter, adapted as the ORM would."""
    return connection.ops.adapt_datetimefield_value(value)


# What the ORM converts a DateTimeField column's values with; converters only
# look at the expression's output field.
_DATETIME = Value(None, output_field=DateTimeField())


def from_db_datetime(connection: BaseDatabaseWrapper, value: Any) -> datetime.datetime:
    """
    A datetime column read with raw SQL, converted as the ORM would (time
    zone included). A value converted already (an aware datetime; no driver
    returns one that a converter changes) is returned as it is: the cached
    engine's rows hold converted values.
    """
    if isinstance(value, datetime.datetime) and value.tzinfo is not None:
        return value
    for converter in connection.ops.get_db_converters(_DATETIME):
        value = converter(value, _DATETIME, connection)
    assert isinstance(value, datetime.datetime)
    return value
