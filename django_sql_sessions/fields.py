from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper

from django_sql_sessions.dialects import for_vendor
from django_sql_sessions.keys import HASH_LENGTH

if TYPE_CHECKING:
    _CharField = models.CharField[str, str]
else:
    _CharField = models.CharField


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
