"""
The raw-driver floor: the statements a session store cannot avoid, sent
straight through the driver in autocommit, with no Django in between (on
PostgreSQL, prepared). With signed_cookies' request it makes the "limit" row
of benchmarks/run.py.

- read, miss: one SELECT by key;
- write, touch, cycle: one SELECT, then one upsert (for cycle, one UPDATE that
  moves the row to its new key);
- new: one upsert.

It runs on the same table and rows as the engine, with a payload encoded once.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable
from typing import Any

# Statements the floor sends per operation, by workload.
STATEMENTS = {"read": 1, "fill": 1, "miss": 1, "write": 2, "touch": 2, "new": 1, "cycle": 2}


def connect(settings_dict: dict[str, Any], vendor: str) -> Any:
    if vendor == "postgresql":
        import psycopg

        return psycopg.connect(
            host=settings_dict["HOST"],
            port=settings_dict["PORT"],
            user=settings_dict["USER"],
            password=settings_dict["PASSWORD"],
            dbname=settings_dict["NAME"],
            autocommit=True,
            # Each statement prepared on the server from its first execution.
            prepare_threshold=0,
        )
    if vendor == "mysql":
        import MySQLdb

        connection = MySQLdb.connect(
            host=settings_dict["HOST"],
            port=int(settings_dict["PORT"]),
            user=settings_dict["USER"],
            password=settings_dict["PASSWORD"],
            database=settings_dict["NAME"],
            charset="utf8mb4",
        )
        connection.autocommit(True)
        return connection
    return sqlite3.connect(settings_dict["NAME"], isolation_level=None)


class Floor:
    def __init__(self, connection: Any, vendor: str, table: str, payload: str) -> None:
        self.connection = connection
        self.payload = payload
        mark = "?" if vendor == "sqlite" else "%s"
        quote = "`" if vendor == "mysql" else '"'
        t = f"{quote}{table}{quote}"
        self.select = f"SELECT data, expire_date FROM {t} WHERE key_hash = {mark}"
        columns = "(key_hash, data, expire_date, created_at, updated_at, version)"
        values = f"({mark}, {mark}, {mark}, {mark}, {mark}, 1)"
        if vendor == "mysql":
            conflict = (
                "ON DUPLICATE KEY UPDATE data = VALUES(data), expire_date = VALUES(expire_date)"
            )
        else:
            conflict = (
                "ON CONFLICT (key_hash) DO UPDATE SET data = excluded.data, "
                "expire_date = excluded.expire_date"
            )
        self.upsert = f"INSERT INTO {t} {columns} VALUES {values} {conflict}"
        self.move = (
            f"UPDATE {t} SET key_hash = {mark}, data = {mark}, expire_date = {mark} "
            f"WHERE key_hash = {mark}"
        )
        self.cursor = connection.cursor()

    def _fetch(self, key: str) -> Any:
        self.cursor.execute(self.select, (_hash(key),))
        return self.cursor.fetchone()

    def read(self, key: str, expire: Any) -> None:
        self._fetch(key)

    def write(self, key: str, expire: Any) -> None:
        self._fetch(key)
        self.cursor.execute(self.upsert, (_hash(key), self.payload, expire, expire, expire))

    def new(self, key: str, expire: Any) -> None:
        self.cursor.execute(self.upsert, (_hash(key), self.payload, expire, expire, expire))

    def cycle(self, key: str, new_key: str, expire: Any) -> None:
        self._fetch(key)
        self.cursor.execute(self.move, (_hash(new_key), self.payload, expire, _hash(key)))

    def operation(self, workload: str) -> Callable[..., None]:
        return {
            "read": self.read,
            "fill": self.read,
            "miss": self.read,
            "write": self.write,
            "touch": self.write,
            "new": self.new,
        }[workload]


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode("ascii")).hexdigest()
