"""
Optional cleanup without cron: SQL_SESSIONS_GC_FREQUENCY = N makes about one
request in N delete one batch of expired sessions once its response has been
sent (on request_finished), as koa-generic-session-sequelize's gcFrequency did.

It never adds latency to the request that drew it, never runs twice at once
in one process (nor across processes: the cleanup lock), and never raises
into the request: a failure is logged to the "django_sql_sessions" logger.
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
        finally:
            # Django already closed (or kept) the request's connection before
            # this ran; a connection opened here is not left behind.
            if not was_open:
                connection.close()


collector = GarbageCollector()
