"""
The cache-fronted engine: SESSION_ENGINE = "django_sql_sessions.backends.cached_db".

The db engine on the session table behind Django's cache (SESSION_CACHE_ALIAS):
reads are served from the cache when it holds the session, with no SQL and
no database connection on a hit. The database stays the truth: every write
is the table's statement first, then the cache (caching.CachedSessionTable
says how, docs/cache.rst why). A cache that fails or times out is left out
for a few seconds, and the engine is the db engine meanwhile.
"""

from __future__ import annotations

from django_sql_sessions import caching
from django_sql_sessions.backends import db
from django_sql_sessions.storage import SessionTable


class SessionStore(db.SessionStore):
    @classmethod
    def make_table(cls) -> SessionTable:
        return caching.cached_table()
