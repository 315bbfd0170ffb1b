"""
Counting the statements a database receives, transaction control included.

Django's CaptureQueriesContext misses what the driver sends by itself (the
BEGIN psycopg issues when autocommit is off, mysqlclient's COMMIT), so each
vendor is counted where nothing is hidden:

- MariaDB/MySQL: the server's own per-session "Questions" counter;
- PostgreSQL: libpq's protocol trace of what the client sends to the server;
- SQLite: the library's trace callback, which sees every statement it runs.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from django.db import connections


@dataclass
class Statements:
    count: int = 0
    # The statements' text, where the vendor's counter reports it.
    sql: list[str] = field(default_factory=list)


# A frontend message that makes the server run a statement: a simple Query or
# an extended-protocol Execute.
_PG_STATEMENT = re.compile(r"^F\s+\d+\s+(Query|Execute)\b(.*)$")


@contextmanager
def count_statements(alias: str) -> Iterator[Statements]:
    connection = connections[alias]
    connection.ensure_connection()
    raw = connection.connection
    result = Statements()
    if connection.vendor == "sqlite":
        raw.set_trace_callback(result.sql.append)
        try:
            yield result
        finally:
            raw.set_trace_callback(None)
            result.count = len(result.sql)
    elif connection.vendor == "postgresql":
        from psycopg import pq

        with tempfile.TemporaryFile("w+") as trace:
            raw.pgconn.trace(trace.fileno())
            raw.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
            try:
                yield result
            finally:
                raw.pgconn.untrace()
                trace.seek(0)
                for line in trace:
                    if match := _PG_STATEMENT.match(line):
                        result.sql.append(match.group(2).strip())
                result.count = len(result.sql)
    elif connection.vendor == "mysql":
        overhead = -_questions(raw) + _questions(raw)
        before = _questions(raw)
        try:
            yield result
        finally:
            result.count = _questions(raw) - before - overhead
    else:  # pragma: no cover - SQL Server has no statement counter wired up here
        raise NotImplementedError(connection.vendor)


def _questions(raw: object) -> int:
    cursor = raw.cursor()  # type: ignore[attr-defined]
    try:
        cursor.execute("SHOW SESSION STATUS LIKE 'Questions'")
        return int(cursor.fetchone()[1])
    finally:
        cursor.close()
