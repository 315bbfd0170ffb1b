"""
Statements bound by parameter name (%(key_hash)s), so no caller can pass them
in the wrong order, and datetimes converted as the ORM would. The SQL itself
is each vendor's (dialects.py).
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
    load_created: Statement  # and created_at, for the cached engine's entries
    reload: Statement  # -> (data, version) of a live row
    reload_locked: Statement | None  # and a row lock; None on SQLite
    exists: Statement  # -> a row if the key is taken, live or not
    insert: Statement  # 0 rows or an IntegrityError when the key is taken
    # 0 rows when the row is gone or has another version. Keeps a later
    # stored expiry, and the stored ip and user_agent where these are NULL.
    update: Statement
    update_exact: Statement  # as update, with the expiry as given
    # Sets updated_at and the device details if it is at or before `due`
    # and the row still has `version`: a write since recorded the activity.
    touch_activity: Statement
    delete: Statement
    # Moves the row to new_key_hash: 0 rows when the old row is gone (or, on
    # PostgreSQL, the new key taken), else an IntegrityError if it is taken.
    rekey: Statement
    count_expired: Statement
    # -> (expire_date, key_hash) of the offset+1th expired row in that
    # order; or of those after (after, after_key).
    batch_end: Statement
    batch_end_after: Statement
    # Rows up to (until, until_key); or those after (after, after_key) too.
    delete_until: Statement
    delete_between: Statement
    # reencryptsessions: -> (key_hash, data, version) of the next rows after
    # `after` whose data is NOT LIKE, or LIKE, `pattern`; and a rewrite of
    # one row's data at `version`, which moves on.
    scan_unsealed: Statement
    scan_sealed: Statement
    reseal: Statement


def to_db_datetime(connection: BaseDatabaseWrapper, value: datetime.datetime) -> Any:
    """An aware datetime as a statement parameter, adapted as the ORM would."""
    return connection.ops.adapt_datetimefield_value(value)


# Converters only look at the expression's output field.
_DATETIME = Value(None, output_field=DateTimeField())


def from_db_datetime(connection: BaseDatabaseWrapper, value: Any) -> datetime.datetime:
    """
    A datetime column read with raw SQL, converted as the ORM would. An
    aware datetime is converted already (the cached engine's rows).
    """
    if isinstance(value, datetime.datetime) and value.tzinfo is not None:
        return value
    for converter in connection.ops.get_db_converters(_DATETIME):
        value = converter(value, _DATETIME, connection)
    assert isinstance(value, datetime.datetime)
    return value
