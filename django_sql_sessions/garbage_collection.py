"""
Cleanup without cron: SQL_SESSIONS_GC_FREQUENCY = N makes about one request in
N delete one batch of expired sessions after its response (request_finished),
one at a time, never raising into the request.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from typing import Any

from django.db import connections

from django_sql_sessions import conf
from django_sql_sessions.cleanup import delete_expired

logger = logging.getLogger("django_sql_sessions")


class GarbageCollector:
    def __init__(self, draw: Callable[[], float] = random.random) -> None:
        self.draw = draw  # tests inject a deterministic one
        self.running = threading.Lock()

    def __call__(self, sender: Any = None, **kwargs: Any) -> None:
        try:
            frequency = conf.GC_FREQUENCY.get()
            if not frequency or self.draw() * frequency >= 1:
                return
            if not self.running.acquire(blocking=False):
                return
            try:
                self.collect()
            finally:
                self.running.release()
        except Exception:
            logger.exception("Expired-session garbage collection failed")

    def collect(self) -> None:
        connection = connections[conf.DB_ALIAS.get()]
        was_open = connection.connection is not None
        try:
            delete_expired(max_batches=1, via="garbage_collection")
        finally:  # Django closed (or kept) the request's connection already
            if not was_open:
                connection.close()


collector = GarbageCollector()
