"""SESSION_ENGINE = "tests.custom_sessions.cached_engine": the same model behind the cache."""

from __future__ import annotations

from django_sql_sessions.backends.cached_db import SessionStore as CachedStore
from tests.custom_sessions.engine import AccountColumn


class SessionStore(AccountColumn, CachedStore):
    pass
