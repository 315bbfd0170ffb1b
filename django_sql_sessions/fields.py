from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper

from django_sql_sessions import encryption
from django_sql_sessions.dialects import for_vendor
from django_sql_sessions.keys import HASH_LENGTH

if TYPE_CHECKING:
    _CharField = models.CharField[str, str]
    _TextField = models.TextField[str, str]
else:
    _CharField = models.CharField
    _TextField = models.TextField


class KeyHashField(_CharField):
    """
    The hex SHA-256 digest of a session key, in each vendor's narrowest type
    that compares it byte for byte: a CharField would be a utf8mb4 varchar on
    MySQL and get a second, unused ``_like`` index on PostgreSQL.
    """

    description = "SHA-256 digest of a session key"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["max_length"] = HASH_LENGTH
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> Any:
        name, path, args, kwargs = super().deconstruct()
        del kwargs["max_length"]
        return name, path, args, kwargs

    def get_internal_type(self) -> str:
        # Not "CharField": Django's PostgreSQL bulk insert (UNNEST) would cast
        # to char[], which is char(1)[] and truncates every digest.
        return "KeyHashField"

    def db_type(self, connection: BaseDatabaseWrapper) -> str:
        return for_vendor(connection.vendor).key_hash_type


class SessionDataField(_TextField):
    """
    The signed session data, sealed in the database when SQL_SESSIONS_ENCRYPT
    is on (encryption.py): the ORM's reads and writes, and so the admin's and
    the commands', see what the engine sees. Lookups compare what is stored.
    """

    def deconstruct(self) -> Any:
        # A TextField to migrations: the column is the same, sealed or not.
        name, _path, args, kwargs = super().deconstruct()
        return name, "django.db.models.TextField", args, kwargs

    def get_db_prep_save(self, value: Any, connection: BaseDatabaseWrapper) -> Any:
        value = super().get_db_prep_save(value, connection)
        return encryption.stored(value) if isinstance(value, str) else value

    def from_db_value(self, value: Any, expression: Any, connection: BaseDatabaseWrapper) -> Any:
        return encryption.readable(value) if isinstance(value, str) else value
