"""
The distance from a session's load() and save() to the driver (issue 20):
a load calls at most 10 of the package's own functions, in at most 3 of its
files; a save at most 14, in at most 3 files. Counted with sys.setprofile:
every call into a function whose code lives in the package (for a load,
the store's construction included; for a save, the save() of a store that
has loaded and changed the session); calls into Django, the drivers and the
standard library are not counted. Measured after a first load and save have warmed
the process's caches (settings, compiled statements, Redis clients).
"""

from __future__ import annotations

import inspect
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from django.db import connections
from django.test.utils import CaptureQueriesContext

import django_sql_sessions
from django_sql_sessions.backends.db import SessionStore

# Each test runs on the db engine and on the cached engine (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("engine")

PACKAGE = Path(django_sql_sessions.__file__).resolve().parent
LOAD_LIMIT = (10, 3)  # calls, files
SAVE_LIMIT = (14, 3)
# The cached engine's save goes through one more file by design: the cache
# wrapper (caching.py) around the table (storage.py). Its hit does not.
CACHED_SAVE_LIMIT = (14, 4)
# A generator or coroutine frame reports a "call" each time it resumes; only
# its first is a call.
RESUMABLE = inspect.CO_GENERATOR | inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR


@contextmanager
def package_calls() -> Iterator[Counter[str]]:
    """Count calls into the package's functions, by "file:function"."""
    calls: Counter[str] = Counter()
    started: list[FrameType] = []  # kept alive, so that no id is reused
    prefix = f"{PACKAGE}/"

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if event != "call":
            return
        code = frame.f_code
        if not code.co_filename.startswith(prefix):
            return
        if code.co_flags & RESUMABLE:
            if any(frame is seen for seen in started):
                return
            started.append(frame)
        # co_qualname is new in Python 3.11.
        name = getattr(code, "co_qualname", code.co_name)
        calls[f"{Path(code.co_filename).relative_to(PACKAGE)}:{name}"] += 1

    sys.setprofile(profile)
    try:
        yield calls
    finally:
        sys.setprofile(None)


def report(what: str, calls: Counter[str], limit: tuple[int, int]) -> str:
    files = {name.split(":", 1)[0] for name in calls}
    listed = ", ".join(f"{name} x{count}" for name, count in calls.items())
    return (
        f"{what}: {calls.total()} calls in {len(files)} files (limit {limit[0]} in "
        f"{limit[1]}): {listed}"
    )


def within(calls: Counter[str], limit: tuple[int, int]) -> bool:
    files = {name.split(":", 1)[0] for name in calls}
    return calls.total() <= limit[0] and len(files) <= limit[1]


def saved(**data: Any) -> str:
    store = SessionStore()
    store.update(data)
    store.save()
    assert store.session_key is not None
    return store.session_key


def warm_up() -> None:
    """A load and a save first, so that what is counted is every request's cost."""
    store = SessionStore(saved(n=0))
    store["n"] = 1
    store.save()


def cached(store_class: type[SessionStore]) -> bool:
    return store_class.__module__.endswith("cached_db")


def test_a_load(alias: str, engine: type[SessionStore]) -> None:
    warm_up()
    session_key = saved(n=1)
    if cached(engine):
        # A miss fills the cache (if the save did not): a hit is counted.
        assert SessionStore(session_key).load() == {"n": 1}
        with CaptureQueriesContext(connections[alias]) as queries:
            SessionStore(session_key).load()
        assert not queries.captured_queries, "the load is not a hit"
    # Not inside CaptureQueriesContext, whose debug cursor takes another path.
    with package_calls() as calls:
        data = SessionStore(session_key).load()
    assert data == {"n": 1}
    assert within(calls, LOAD_LIMIT), report("load", calls, LOAD_LIMIT)


def test_a_save(alias: str, engine: type[SessionStore]) -> None:
    warm_up()
    session_key = saved(n=1)
    if cached(engine):
        assert SessionStore(session_key).load() == {"n": 1}
    with package_calls() as before_save:
        store = SessionStore(session_key)
        store["n"] = 2  # loads it
    with package_calls() as calls:
        store.save()
    assert SessionStore(session_key).load() == {"n": 2}
    limit = CACHED_SAVE_LIMIT if cached(engine) else SAVE_LIMIT
    assert within(calls, limit), (
        report("save", calls, limit)
        + f"; before it, the store's construction, load and change: {before_save.total()} calls"
    )
