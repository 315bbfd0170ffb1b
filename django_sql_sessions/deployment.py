"""
A warning about CONN_MAX_AGE on the sessions alias under ASGI, which exhausts
the database's connections. Only a request tells the handler, so the first
ASGI request checks (docs/deployment.rst, "Behind an ASGI server").
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.handlers.asgi import ASGIHandler
from django.db import connections

from django_sql_sessions import conf

logger = logging.getLogger("django_sql_sessions")

_checked = False


def check_asgi_connections(sender: object, **kwargs: Any) -> None:
    """request_started receiver (connected in AppConfig.ready())."""
    global _checked
    if _checked:
        return
    # Not yet for WSGIHandler or the test client: the next may still be ASGI.
    if not (isinstance(sender, type) and issubclass(sender, ASGIHandler)):
        return
    _checked = True
    try:
        alias = conf.DB_ALIAS.get()
    except ImproperlyConfigured:
        return  # the system checks report it (E001)
    max_age = connections.settings[alias].get("CONN_MAX_AGE", 0)
    if max_age == 0:
        return
    # Django refuses OPTIONS["pool"] with any other CONN_MAX_AGE.
    logger.warning(
        "The sessions alias %r (SQL_SESSIONS_DB_ALIAS) has CONN_MAX_AGE = %r, and this "
        "process serves requests through ASGI. Django runs each ASGI request's database "
        "work in a thread of its own, so a persistent connection is never closed or "
        "reused: every request that reads or writes a session in the database opens a "
        "new connection, until the database server refuses connections. Set "
        "CONN_MAX_AGE = 0; on PostgreSQL also set OPTIONS['pool'] (Django's psycopg "
        "connection pool). The same holds for every alias in DATABASES. The cached "
        "engine (django_sql_sessions.backends.cached_db) serves session reads from the "
        "cache without a database connection. See the docs: Deployment, 'Behind an "
        "ASGI server'.",
        alias,
        max_age,
    )


def reset() -> None:
    """Check again on the next ASGI request (for tests)."""
    global _checked
    _checked = False
