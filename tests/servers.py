"""Helpers for tests that need a database server to misbehave."""

from __future__ import annotations

from django.db import connections


def kill(alias: str) -> None:
    """End the alias's server session from another connection, as a failover would."""
    connection = connections[alias]
    params = connection.get_connection_params()
    if connection.vendor == "postgresql":
        import psycopg

        pid = connection.connection.info.backend_pid
        params.pop("cursor_factory", None)
        params.pop("context", None)
        with psycopg.connect(**params, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    else:
        import MySQLdb

        thread_id = connection.connection.thread_id()
        admin = MySQLdb.connect(**params)
        try:
            admin.cursor().execute(f"KILL {int(thread_id)}")
        finally:
            admin.close()
