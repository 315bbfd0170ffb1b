"""
A sessions alias on a server that refuses writes: a standby or replica, or a
server or connection set read-only. Sessions are written on every login, so
such an alias cannot work, and says so in the same words twice: check E015
(``manage.py check --database <alias>``) before any request, and the
SessionDatabaseReadOnly error raised by the first write the server refuses.
"""

from __future__ import annotations

import logging

from django.db.backends.base.base import BaseDatabaseWrapper

from django_sql_sessions.exceptions import SessionDatabaseReadOnly

logger = logging.getLogger("django_sql_sessions")

FIX = (
    "Point SQL_SESSIONS_DB_ALIAS at the primary (the server that accepts writes): "
    "every login and every session change is a write. Send only other reads to replicas."
)

# PostgreSQL's read_only_sql_transaction: a hot standby, or
# default_transaction_read_only / SET TRANSACTION READ ONLY. CockroachDB
# raises it for the same settings (it has no standbys to connect to; check
# E015 does not ask it).
_POSTGRESQL_READ_ONLY = "25006"
# MySQL and MariaDB: ER_OPTION_PREVENTS_STATEMENT, which for the engine's
# INSERT, UPDATE and DELETE on its own table can only be --read-only or
# --super-read-only; and ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION
# (transaction_read_only, tx_read_only, SET TRANSACTION READ ONLY).
_MYSQL_READ_ONLY = (1290, 1792)
# SQL Server's "Failed to update database ... because the database is
# read-only" (a read-only database, or a readable secondary replica). pyodbc
# only carries it in the message, as "(3906)".
_SQL_SERVER_READ_ONLY = "(3906)"

# Aliases whose refusal has been logged: once per process, not per request.
_reported: set[str] = set()


def problem(alias: str, why: str) -> str:
    """What is wrong, naming the setting and the alias (check E015 and the error)."""
    return (
        f"SQL_SESSIONS_DB_ALIAS {alias!r} is a standby or read-only database server "
        f"({why}), so no session can be saved"
    )


def refused_as_read_only(vendor: str, error: BaseException) -> bool:
    """
    Whether a statement failed because the server refuses writes. `error` is
    the driver's exception, or Django's with the driver's as its cause.
    """
    return any(
        exc is not None and _says_read_only(vendor, exc) for exc in (error, error.__cause__)
    )


def _says_read_only(vendor: str, exc: BaseException) -> bool:
    if vendor in ("postgresql", "cockroachdb"):
        # psycopg 3 says sqlstate, psycopg2 pgcode.
        code = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
        return code == _POSTGRESQL_READ_ONLY
    if vendor == "mysql":
        return bool(exc.args) and exc.args[0] in _MYSQL_READ_ONLY
    if vendor == "microsoft":
        return any(_SQL_SERVER_READ_ONLY in str(arg) for arg in exc.args)
    return False


def refusal(alias: str, error: BaseException) -> SessionDatabaseReadOnly:
    """The error for a write the alias's server refused; logged once per alias and process."""
    message = (
        f"{problem(alias, 'it refused a write: ' + str(error).strip().splitlines()[0])}. {FIX}"
    )
    if alias not in _reported:
        _reported.add(alias)
        logger.error("%s", message)
    return SessionDatabaseReadOnly(message)


def why_read_only(connection: BaseDatabaseWrapper) -> str | None:
    """Why the connection's server or session refuses writes, or None if it does not."""
    vendor = connection.vendor
    if vendor not in ("postgresql", "mysql", "microsoft"):
        return None
    with connection.cursor() as cursor:
        if vendor == "postgresql":
            cursor.execute(
                "SELECT pg_is_in_recovery(), current_setting('default_transaction_read_only'), "
                "current_setting('transaction_read_only')"
            )
            in_recovery, default_read_only, read_only = cursor.fetchone()
            if in_recovery:
                return "a standby: pg_is_in_recovery() is true"
            if default_read_only == "on":
                return "default_transaction_read_only is on"
            if read_only == "on":
                return "transaction_read_only is on"
        elif vendor == "mysql":
            # SHOW VARIABLES, not @@name: each server has only some of these
            # (super_read_only is MySQL's, tx_read_only gone from MySQL 8,
            # transaction_read_only new in MariaDB 11.1), and an unknown
            # @@name is an error. Session values, as this connection sees them.
            cursor.execute(
                "SHOW VARIABLES WHERE Variable_name IN "
                "('read_only', 'super_read_only', 'transaction_read_only', 'tx_read_only')"
            )
            on = sorted(name for name, value in cursor.fetchall() if value not in ("OFF", "0"))
            if on:
                return f"{' and '.join(on)} {'is' if len(on) == 1 else 'are'} ON"
        else:
            cursor.execute(SQL_SERVER_UPDATEABILITY)
            (updateability,) = cursor.fetchone()
            if updateability == "READ_ONLY":
                return "DATABASEPROPERTYEX(DB_NAME(), 'Updateability') is READ_ONLY"
    return None


# What a read-only database or a readable secondary replica answers with READ_ONLY.
SQL_SERVER_UPDATEABILITY = (
    "SELECT CONVERT(nvarchar(128), DATABASEPROPERTYEX(DB_NAME(), 'Updateability'))"
)
