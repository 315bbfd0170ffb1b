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

from django_sql_sessions.exceptions import SessionTableMissing

logger = logging.getLogger("django_sql_sessions")

# (alias, table) pairs already logged: once per process, not per request.
_reported: set[tuple[str, str]] = set()


def fix(alias: str) -> str:
    """The command that creates the package's tables on the alias (this error and W006)."""
    return f"Run 'python manage.py migrate --database={alias}'"


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
