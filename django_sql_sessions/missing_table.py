"""
A table that is not on the alias: ``migrate --database=<alias>`` was
forgotten, or the table was dropped or renamed. The driver's error names
neither the alias nor the command that creates the table, and the first
login is a 500. The first statement that meets it raises SessionTableMissing
instead, naming both, and logs it once per process; check W006 (E006 when
the migrations are recorded) says the same before any request, on
``check --database <alias>`` and when runserver starts.
"""

from __future__ import annotations

import logging
import re

from django_sql_sessions.exceptions import SessionTableMissing

logger = logging.getLogger("django_sql_sessions")

# How each database says that a table does not exist, and where its message
# names the table. SQLite: the message only (its code, SQLITE_ERROR, covers
# every SQL error). PostgreSQL (and CockroachDB): undefined_table. MySQL and
# MariaDB (and TiDB): ER_NO_SUCH_TABLE. SQL Server: "Invalid object name",
# which pyodbc carries in the message only, as "(208)".
_SQLITE = re.compile(r"no such table: (\S+)")
_POSTGRESQL_UNDEFINED_TABLE = "42P01"
_POSTGRESQL = re.compile(r'relation "([^"]+)" does not exist')
_MYSQL_NO_SUCH_TABLE = 1146
_MYSQL = re.compile(r"Table '(?:[^'.]*\.)?([^'.]+)' doesn't exist")
_SQL_SERVER_INVALID_OBJECT = "(208)"
_SQL_SERVER = re.compile(r"Invalid object name '([^']+)'")

# (alias, table) pairs already logged: once per process, not per request.
_reported: set[tuple[str, str]] = set()


def fix(alias: str) -> str:
    """The command that creates the package's tables on the alias (this error and W006)."""
    return f"Run 'python manage.py migrate --database={alias}'"


def missing_table(vendor: str, error: BaseException) -> str | None:
    """
    The table a statement failed on because it does not exist ("" if the
    database's message does not name it), or None if it failed for another
    reason. `error` is the driver's exception, or Django's with the driver's
    as its cause.
    """
    for exc in (error, error.__cause__):
        if exc is not None and (table := _says_missing(vendor, exc)) is not None:
            return table
    return None


def _says_missing(vendor: str, exc: BaseException) -> str | None:
    message = str(exc)
    if vendor == "sqlite":
        found = _SQLITE.search(message)
        return found[1] if found else None
    if vendor in ("postgresql", "cockroachdb"):
        # psycopg 3 says sqlstate, psycopg2 pgcode.
        code = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
        if code != _POSTGRESQL_UNDEFINED_TABLE:
            return None
        found = _POSTGRESQL.search(message)
    elif vendor == "mysql":
        if not exc.args or exc.args[0] != _MYSQL_NO_SUCH_TABLE:
            return None
        found = _MYSQL.search(message)
    elif vendor == "microsoft":
        if not any(_SQL_SERVER_INVALID_OBJECT in str(arg) for arg in exc.args):
            return None
        found = _SQL_SERVER.search(message)
    else:
        return None
    return found[1] if found else ""


def missing(alias: str, table: str) -> SessionTableMissing:
    """The error for a statement on a table the alias does not have; logged once per process."""
    named = f"table {table!r}" if table else "a table the statement needs"
    message = (
        f"Database {alias!r} has no {named}: its migrations have not run there. "
        f"{fix(alias)} to create it (if migrate has nothing to do, the table was "
        f"dropped or renamed: 'python manage.py check --database {alias}' says why)."
    )
    if (alias, table) not in _reported:
        _reported.add((alias, table))
        logger.error("%s", message)
    return SessionTableMissing(message)
