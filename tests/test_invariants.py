"""
The invariants of the session table, on every public path that changes a
session row (issue 20, "One door to the session table").

Each cell of the matrix is one path (PATHS, below: every public writer of
the package must be in it, or in NOT_WRITERS with the reason it writes
nothing) x engine (db, cached on Redis) x sync/async x transaction mode
(autocommit; inside atomic(), committed; atomic() rolled back; an earlier
on_commit callback of the project raising; and for the engine's save,
autocommit off and then a rollback). Each cell checks:

(a) a change that commits moved the row's version (a delete left no row);
    a change that is rolled back left the row exactly as it was;
(b) a second process of the site (tests/second_process.py: its own database
    connection and Redis client, the same engine), which loaded the session
    before the change, loads afterwards what the database holds: never the
    old data, never data that was rolled back;
(c) a path that ends the session keeps it ended: a save from a store that
    loaded the session before (a request still under way) does not bring
    it back.

Only public APIs are used, so the matrix holds across the storage redesign.
The second process cannot see a test's uncommitted writes, so the tests run
in autocommit on a database the second process shares: SQLite in a file
("sqlitefile"), or the run's PostgreSQL and MariaDB test databases.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import inspect
import json
import os
import select
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from io import StringIO
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings as django_settings
from django.contrib.auth import SESSION_KEY, alogin, get_user_model, login
from django.contrib.auth.models import AnonymousUser, update_last_login
from django.contrib.auth.signals import user_logged_in
from django.contrib.sessions.backends.base import UpdateError
from django.contrib.sessions.backends.db import SessionStore as DjangoStore
from django.contrib.sessions.models import Session as DjangoSession
from django.core.management import call_command
from django.db import transaction
from django.http import HttpRequest
from django.test import AsyncClient, Client, RequestFactory
from django.test.utils import override_settings
from django.utils import timezone
from django.utils.crypto import get_random_string
from django.utils.module_loading import import_string

from django_sql_sessions import admin as sessions_admin
from django_sql_sessions import caching, cleanup, importing, limits, user_sessions
from django_sql_sessions.backends import cached_db, db
from django_sql_sessions.base_session import AbstractSession, SessionManager, SessionQuerySet
from django_sql_sessions.cleanup import delete_expired
from django_sql_sessions.models import Session
from django_sql_sessions.storage import hash_key, session_model
from django_sql_sessions.user_sessions import (
    arevoke_all_sessions,
    arevoke_session,
    revoke_all_sessions,
    revoke_session,
)
from tests.conftest import _alias_params, _use_alias, clear_session_cache, ping_redis

ROOT = Path(__file__).resolve().parent.parent
CHANGELIST = "/admin/django_sql_sessions/session/"
ENGINES = {
    "db": "django_sql_sessions.backends.db",
    "cached": cached_db.__name__,
    # A session model with a column of its own (tests/custom_sessions), on
    # the paths that write the model's table through the engine and the ORM.
    "custom": "tests.custom_sessions.engine",
    "custom-cached": "tests.custom_sessions.cached_engine",
}
CUSTOM_MODEL_PATHS = {
    "save",
    "cycle_key",
    "delete",
    "model_save",
    "model_delete",
    "queryset_force_expiry",
    "queryset_update_data",
    "queryset_delete",
    "manager_save",
    "clearsessions",
    "revoke_all_sessions",
    "max_per_user",
    "reencryptsessions",
}
CACHE_ALIAS = "sessions_redis"
NO_REDIS = "redis not configured: REDIS_URL is not set"  # as tests/conftest.py says it
# The owner of the session under test, in its data (login()'s key) and in
# the user_id column. No such user needs to exist.
OWNER = "4242"
OLD = {"value": "old", SESSION_KEY: OWNER}
NEW = {"value": "new", SESSION_KEY: OWNER}
# The session under test was created this long before the test, so that its
# last activity is due again (SQL_SESSIONS_ACTIVITY_INTERVAL, 300 s).
AGE = 3600
# The expiry paths move both processes' clocks this far ahead, past the
# session's expiry (SESSION_COOKIE_AGE, two weeks): it expired after both
# processes loaded it.
LATER = 15 * 24 * 3600


# ---------------------------------------------------------------- the paths


@dataclasses.dataclass
class Case:
    """One cell's session, and what its path needs."""

    alias: str
    engine: str
    flavour: str
    store_class: type[db.SessionStore]
    staff: Any
    key: str = ""
    # Loaded in this process before the change: the store the engine paths
    # act through, and one nobody uses until (c).
    store: db.SessionStore = dataclasses.field(default=None)  # type: ignore[assignment]
    stale: db.SessionStore = dataclasses.field(default=None)  # type: ignore[assignment]
    # Keys the change moved the session to (cycle_key()).
    new_keys: list[str] = dataclasses.field(default_factory=list)
    client: Client | AsyncClient | None = None


Change = Callable[[Case], None]
AsyncChange = Callable[[Case], Awaitable[None]]


@dataclasses.dataclass(frozen=True)
class WritePath:
    name: str
    # The public names this path exercises (see test_every_public_writer_is_in_the_matrix).
    covers: tuple[str, ...]
    run: Change
    arun: AsyncChange
    # The original key no longer loads afterwards (logout, revocation,
    # expiry, a new key), and whether the row itself is gone.
    ends: bool = False
    deletes: bool = False
    # How the async column runs when the path has no async twin.
    async_note: str = ""
    # Seconds the clocks move ahead before the change (the expiry paths).
    moved: float = 0.0
    # Settings for this path, on top of the suite's.
    settings: tuple[tuple[str, object], ...] = ()
    # Makes the session and returns its key (default: the engine saves OLD).
    create: Callable[[Case], str] | None = None
    # Runs after both processes loaded the session, before the change.
    prepare: Change | None = None
    # Also run with autocommit off and then a rollback.
    manual: bool = False


@contextlib.contextmanager
def clock_moved(seconds: float) -> Iterator[None]:
    real = timezone.now
    ahead = datetime.timedelta(seconds=seconds)
    with mock.patch.object(timezone, "now", side_effect=lambda: real() + ahead):
        yield


def engine_session(case: Case) -> str:
    """OLD, saved by the engine AGE seconds ago."""
    with clock_moved(-AGE):
        store = case.store_class()
        store.update(OLD)
        store.save()
    assert store.session_key is not None
    return store.session_key


def new_key(case: Case) -> None:
    assert case.store.session_key is not None
    case.new_keys.append(case.store.session_key)


def in_a_day() -> datetime.datetime:
    return timezone.now() + datetime.timedelta(days=1)


def expired_now() -> datetime.datetime:
    return timezone.now() - datetime.timedelta(seconds=1)


# The engine.


def save(case: Case) -> None:
    case.store["value"] = "new"
    case.store.save()


async def asave(case: Case) -> None:
    await case.store.aset("value", "new")
    await case.store.asave()


def set_expiry_save(case: Case) -> None:
    case.store.set_expiry(7200)
    case.store.save()


async def aset_expiry_save(case: Case) -> None:
    await case.store.aset_expiry(7200)
    await case.store.asave()


def record_activity(case: Case) -> None:
    case.store.record_activity()


async def arecord_activity(case: Case) -> None:
    await case.store.arecord_activity()


def cycle_key(case: Case) -> None:
    case.store.cycle_key()
    new_key(case)


async def acycle_key(case: Case) -> None:
    await case.store.acycle_key()
    new_key(case)


def engine_delete(case: Case) -> None:
    case.store.delete()


async def engine_adelete(case: Case) -> None:
    await case.store.adelete()


def flush(case: Case) -> None:
    case.store.flush()


async def aflush(case: Case) -> None:
    await case.store.aflush()


# The model, its queryset and its manager.


def model_save(case: Case) -> None:
    row = session_model().objects.for_key(case.key).get()
    row.data = session_model().objects.encode(NEW)
    row.save()


async def model_asave(case: Case) -> None:
    row = await session_model().objects.for_key(case.key).aget()
    row.data = session_model().objects.encode(NEW)
    await row.asave()


def model_delete(case: Case) -> None:
    session_model().objects.for_key(case.key).get().delete()


async def model_adelete(case: Case) -> None:
    row = await session_model().objects.for_key(case.key).aget()
    await row.adelete()


def force_expiry(case: Case) -> None:
    session_model().objects.for_key(case.key).update(expire_date=expired_now())


async def aforce_expiry(case: Case) -> None:
    await session_model().objects.for_key(case.key).aupdate(expire_date=expired_now())


def update_data(case: Case) -> None:
    session_model().objects.for_key(case.key).update(data=session_model().objects.encode(NEW))


async def aupdate_data(case: Case) -> None:
    await (
        session_model().objects.for_key(case.key).aupdate(data=session_model().objects.encode(NEW))
    )


def queryset_delete(case: Case) -> None:
    session_model().objects.for_key(case.key).delete()


async def queryset_adelete(case: Case) -> None:
    await session_model().objects.for_key(case.key).adelete()


def bulk_update(case: Case) -> None:
    row = session_model().objects.for_key(case.key).get()
    row.data = session_model().objects.encode(NEW)
    session_model().objects.bulk_update([row], ["data"])


async def abulk_update(case: Case) -> None:
    row = await session_model().objects.for_key(case.key).aget()
    row.data = session_model().objects.encode(NEW)
    await session_model().objects.abulk_update([row], ["data"])


def update_or_create(case: Case) -> None:
    session_model().objects.update_or_create(
        key_hash=hash_key(case.key), defaults={"data": session_model().objects.encode(NEW)}
    )


async def aupdate_or_create(case: Case) -> None:
    await session_model().objects.aupdate_or_create(
        key_hash=hash_key(case.key), defaults={"data": session_model().objects.encode(NEW)}
    )


def manager_save(case: Case) -> None:
    session_model().objects.save(case.key, NEW, in_a_day())


def manager_save_empty(case: Case) -> None:
    session_model().objects.save(case.key, {}, in_a_day())


# The admin, over HTTP.


def log_staff_in(case: Case) -> None:
    case.client = AsyncClient() if case.flavour == "async" else Client()
    case.client.force_login(case.staff)


def revoke_form(case: Case) -> dict[str, Any]:
    return {"action": "revoke", "_selected_action": [hash_key(case.key)], "index": "0"}


def admin_revoke(case: Case) -> None:
    assert isinstance(case.client, Client)
    response = case.client.post(CHANGELIST, revoke_form(case))
    assert response.status_code == 302, response


async def admin_arevoke(case: Case) -> None:
    assert isinstance(case.client, AsyncClient)
    response = await case.client.post(CHANGELIST, revoke_form(case))
    assert response.status_code == 302, response


# The commands, cleanup and the garbage collector.


def command(*args: str) -> Change:
    def run(case: Case) -> None:
        call_command(*args, stdout=StringIO())

    return run


def import_sessions(case: Case) -> None:
    call_command("importsessions", "--from-database", case.alias, stdout=StringIO())


def imported_then_logged_out(case: Case) -> str:
    """
    A session of Django's engine, imported, then logged out in Django's
    table (before the switch): the next import deletes the copy.
    """
    store = DjangoStore()
    key = get_random_string(32, "abcdefghijklmnopqrstuvwxyz0123456789")
    DjangoSession.objects.using(case.alias).create(
        session_key=key, session_data=store.encode(OLD), expire_date=in_a_day()
    )
    import_sessions(case)
    DjangoSession.objects.using(case.alias).filter(session_key=key).delete()
    return key


def plaintext_session(case: Case) -> str:
    """OLD, saved before SQL_SESSIONS_ENCRYPT was turned on: the command's work."""
    with override_settings(SQL_SESSIONS_ENCRYPT=False):
        return engine_session(case)


def clearsessions(case: Case) -> None:
    call_command("clearsessions")


async def aclear_expired(case: Case) -> None:
    await case.store_class.aclear_expired()


def run_delete_expired(case: Case) -> None:
    delete_expired()


def request_with_gc(case: Case) -> None:
    # SQL_SESSIONS_GC_FREQUENCY = 1: every request collects, after its response.
    assert Client().get("/plain/").status_code == 200


# The users' sessions API.


def api_revoke(case: Case) -> None:
    assert revoke_session(OWNER, hash_key(case.key))


async def api_arevoke(case: Case) -> None:
    assert await arevoke_session(OWNER, hash_key(case.key))


def api_revoke_all(case: Case) -> None:
    assert revoke_all_sessions(OWNER) == 1


async def api_arevoke_all(case: Case) -> None:
    assert await arevoke_all_sessions(OWNER) == 1


# SQL_SESSIONS_MAX_PER_USER = 1: another login of the owner revokes the
# session under test, its least recently active.


@contextlib.contextmanager
def owner_logging_in(case: Case) -> Iterator[tuple[HttpRequest, Any]]:
    """A request with a new session of the engine, and the owner (not saved anywhere)."""
    request = RequestFactory().get("/")
    request.session = case.store_class()
    request.user = AnonymousUser()
    # Django's last_login update would save the owner, who is no saved user.
    user_logged_in.disconnect(dispatch_uid="update_last_login")
    try:
        yield request, get_user_model()(pk=int(OWNER), username="owner")
    finally:
        user_logged_in.connect(update_last_login, dispatch_uid="update_last_login")


def limit_login(case: Case) -> None:
    with owner_logging_in(case) as (request, owner):
        login(request, owner, backend=BACKEND)


async def limit_alogin(case: Case) -> None:
    with owner_logging_in(case) as (request, owner):
        await alogin(request, owner, backend=BACKEND)


def via_sync_to_async(change: Change) -> AsyncChange:
    async def run(case: Case) -> None:
        await sync_to_async(change)(case)

    return run


NO_TWIN = "sync_to_async: no async twin"
GC = (("SQL_SESSIONS_GC_FREQUENCY", 1),)

BACKEND = "django.contrib.auth.backends.ModelBackend"

# Every public path that changes a session row. A new path joins this list.
PATHS = (
    # The engine (SessionStore).
    WritePath("save", ("SessionStore.save", "SessionStore.asave"), save, asave, manual=True),
    WritePath(
        "set_expiry_save",
        ("SessionStore.set_expiry", "SessionStore.aset_expiry"),
        set_expiry_save,
        aset_expiry_save,
    ),
    WritePath(
        "record_activity",
        ("SessionStore.record_activity", "SessionStore.arecord_activity"),
        record_activity,
        arecord_activity,
        settings=(("SQL_SESSIONS_ACTIVITY_INTERVAL", 300),),
    ),
    WritePath(
        "cycle_key",
        ("SessionStore.cycle_key", "SessionStore.acycle_key"),
        cycle_key,
        acycle_key,
        ends=True,
    ),
    WritePath(
        "delete",
        ("SessionStore.delete", "SessionStore.adelete"),
        engine_delete,
        engine_adelete,
        ends=True,
        deletes=True,
    ),
    WritePath(
        "flush",
        ("SessionStore.flush", "SessionStore.aflush"),
        flush,
        aflush,
        ends=True,
        deletes=True,
    ),
    # The model, its queryset and its manager.
    WritePath("model_save", ("Session.save", "Session.asave"), model_save, model_asave),
    WritePath(
        "model_delete",
        ("Session.delete", "Session.adelete"),
        model_delete,
        model_adelete,
        ends=True,
        deletes=True,
    ),
    WritePath(
        "queryset_force_expiry",
        ("SessionQuerySet.update", "SessionQuerySet.aupdate"),
        force_expiry,
        aforce_expiry,
        ends=True,
    ),
    WritePath(
        "queryset_update_data",
        ("SessionQuerySet.update", "SessionQuerySet.aupdate"),
        update_data,
        aupdate_data,
    ),
    WritePath(
        "queryset_delete",
        ("SessionQuerySet.delete", "SessionQuerySet.adelete"),
        queryset_delete,
        queryset_adelete,
        ends=True,
        deletes=True,
    ),
    WritePath(
        "queryset_bulk_update",
        ("SessionQuerySet.bulk_update", "SessionQuerySet.abulk_update"),
        bulk_update,
        abulk_update,
    ),
    WritePath(
        "queryset_update_or_create",
        ("SessionQuerySet.update_or_create", "SessionQuerySet.aupdate_or_create"),
        update_or_create,
        aupdate_or_create,
    ),
    WritePath(
        "manager_save",
        ("SessionManager.save",),
        manager_save,
        via_sync_to_async(manager_save),
        async_note=NO_TWIN,
    ),
    WritePath(
        "manager_save_empty",
        ("SessionManager.save",),
        manager_save_empty,
        via_sync_to_async(manager_save_empty),
        ends=True,
        deletes=True,
        async_note=NO_TWIN,
    ),
    # The admin over HTTP: the async column posts through AsyncClient.
    WritePath(
        "admin_revoke",
        ("SessionAdmin.revoke",),
        admin_revoke,
        admin_arevoke,
        ends=True,
        deletes=True,
        prepare=log_staff_in,
    ),
    # Commands, cleanup and the garbage collector.
    WritePath(
        "revokesessions",
        ("command:revokesessions", "user_sessions.revoke_users_sessions"),
        command("revokesessions", "--user-id", OWNER),
        via_sync_to_async(command("revokesessions", "--user-id", OWNER)),
        ends=True,
        deletes=True,
        async_note=NO_TWIN,
    ),
    WritePath(
        "importsessions",
        ("command:importsessions", "importing.import_django_sessions"),
        import_sessions,
        via_sync_to_async(import_sessions),
        ends=True,
        deletes=True,
        async_note=NO_TWIN,
        create=imported_then_logged_out,
    ),
    WritePath(
        "purgesessions",
        ("command:purgesessions",),
        command("purgesessions"),
        via_sync_to_async(command("purgesessions")),
        ends=True,
        deletes=True,
        async_note=NO_TWIN,
        moved=LATER,
    ),
    WritePath(
        "clearsessions",
        ("command:clearsessions", "SessionStore.clear_expired", "SessionStore.aclear_expired"),
        clearsessions,
        aclear_expired,
        ends=True,
        deletes=True,
        moved=LATER,
    ),
    WritePath(
        "delete_expired",
        ("cleanup.delete_expired",),
        run_delete_expired,
        via_sync_to_async(run_delete_expired),
        ends=True,
        deletes=True,
        async_note=NO_TWIN,
        moved=LATER,
    ),
    WritePath(
        "gc_after_request",
        ("cleanup.collector",),
        request_with_gc,
        via_sync_to_async(request_with_gc),
        ends=True,
        deletes=True,
        async_note=NO_TWIN + " (Django's AsyncClient closes the response in another thread)",
        moved=LATER,
        settings=GC,
    ),
    # The users' sessions API.
    WritePath(
        "revoke_session",
        ("user_sessions.revoke_session", "user_sessions.arevoke_session"),
        api_revoke,
        api_arevoke,
        ends=True,
        deletes=True,
    ),
    WritePath(
        "revoke_all_sessions",
        ("user_sessions.revoke_all_sessions", "user_sessions.arevoke_all_sessions"),
        api_revoke_all,
        api_arevoke_all,
        ends=True,
        deletes=True,
    ),
    # SQL_SESSIONS_ENCRYPT turned on: the command seals the plaintext row.
    WritePath(
        "reencryptsessions",
        ("command:reencryptsessions",),
        command("reencryptsessions"),
        via_sync_to_async(command("reencryptsessions")),
        async_note=NO_TWIN,
        settings=(("SQL_SESSIONS_ENCRYPT", True),),
        create=plaintext_session,
    ),
    # SQL_SESSIONS_MAX_PER_USER, at a login (Django's login() and alogin()).
    WritePath(
        "max_per_user",
        ("limits.limit_at_login",),
        limit_login,
        limit_alogin,
        ends=True,
        deletes=True,
        settings=(("SQL_SESSIONS_MAX_PER_USER", 1),),
    ),
)

# Public names that change no existing session row, and why.
NOT_WRITERS = {
    "SessionStore.load": "reads",
    "SessionStore.aload": "reads",
    "SessionStore.exists": "reads",
    "SessionStore.aexists": "reads",
    "SessionStore.get_expiry_date": "reads",
    "SessionStore.aget_expiry_date": "reads",
    "SessionStore.get_expiry_age": "reads",
    "SessionStore.aget_expiry_age": "reads",
    "SessionStore.get_model_class": "reads",
    "SessionStore.decode": "decodes data",
    "SessionStore.create_model_instance": "an unsaved instance; saves write its columns (save)",
    "SessionStore.acreate_model_instance": "an unsaved instance (see create_model_instance)",
    "SessionStore.table": "returns the storage layer every path here goes through",
    "SessionStore.make_table": "makes the storage layer that table() keeps",
    "SessionStore.restart_lifetime": (
        "marks the store in memory (a login); the next save() writes it (save)"
    ),
    "SessionQuerySet.update_unguarded": (
        "the ORM's own update(), called only by the storage layer for update() "
        "(queryset_update_data, queryset_force_expiry)"
    ),
    "SessionQuerySet.delete_unguarded": (
        "the ORM's own delete(), called only by the storage layer for delete() (queryset_delete)"
    ),
    "SessionStore.clear": "changes the store in memory; the next save() writes it (save)",
    "SessionStore.create": "inserts a new row under a new key, which nobody can have loaded",
    "SessionStore.acreate": "inserts a new row under a new key, which nobody can have loaded",
    "Session.get_decoded": "reads",
    "Session.is_expired": "reads",
    "Session.last_activity": "reads",
    "Session.get_session_store_class": "reads",
    "SessionQuerySet.active": "builds a query",
    "SessionQuerySet.expired": "builds a query",
    "SessionQuerySet.for_key": "builds a query",
    "SessionQuerySet.create": "inserts a new row",
    "SessionQuerySet.acreate": "inserts a new row",
    "SessionQuerySet.bulk_create": "inserts new rows",
    "SessionQuerySet.abulk_create": "inserts new rows",
    "SessionQuerySet.get_or_create": "reads, or inserts a new row",
    "SessionQuerySet.aget_or_create": "reads, or inserts a new row",
    "SessionManager.get_queryset": "builds a query",
    "SessionManager.active": "builds a query",
    "SessionManager.expired": "builds a query",
    "SessionManager.for_key": "builds a query",
    "SessionManager.encode": "encodes data",
    "user_sessions.user_id": "reads",
    "user_sessions.users_by_id": "reads",
    "user_sessions.list_sessions": "reads",
    "user_sessions.alist_sessions": "reads",
    "cleanup.count_expired": "reads",
    "cleanup.lock_name": "names the cleanup lock",
    "cleanup.single_runner": "takes the cleanup lock (a lease row, not a session row)",
    "command:sessionstats": "reads",
}

# The persistence API every SessionStore inherits from Django's SessionBase.
SESSION_BASE_API = (
    *("load", "aload", "exists", "aexists", "create", "acreate", "save", "asave"),
    *("delete", "adelete", "flush", "aflush", "cycle_key", "acycle_key"),
    *("set_expiry", "aset_expiry", "clear_expired", "aclear_expired"),
)
# The writers every model and queryset inherits from Django's ORM.
ORM_WRITERS = {
    "Session": ("save", "asave", "delete", "adelete"),
    "SessionQuerySet": (
        *("update", "aupdate", "delete", "adelete", "bulk_update", "abulk_update"),
        *("create", "acreate", "bulk_create", "abulk_create"),
        *("get_or_create", "aget_or_create", "update_or_create", "aupdate_or_create"),
    ),
}


def defined_here(owner: Any) -> set[str]:
    """The public functions and properties that a class or module defines itself."""
    module = owner.__module__ if inspect.isclass(owner) else owner.__name__
    names = set()
    for name, value in vars(owner).items():
        if name.startswith("_"):
            continue
        function = value.fget if isinstance(value, property) else value
        function = getattr(function, "__func__", function)  # classmethod, staticmethod
        if inspect.isfunction(function) and function.__module__ == module:
            names.add(name)
    return names


def public_writer_candidates() -> set[str]:
    """Every public name of the package that might change a session row."""
    found = {
        f"SessionStore.{name}"
        for cls in (db.SessionStore, cached_db.SessionStore)
        for name in defined_here(cls) | set(SESSION_BASE_API)
    }
    # The model's behaviour is its abstract base's (base_session.py).
    model_api = defined_here(Session) | defined_here(AbstractSession) | set(ORM_WRITERS["Session"])
    found |= {f"Session.{n}" for n in model_api}
    found |= {
        f"SessionQuerySet.{name}"
        for name in defined_here(SessionQuerySet) | set(ORM_WRITERS["SessionQuerySet"])
    }
    found |= {f"SessionManager.{n}" for n in defined_here(SessionManager)}
    for module in (user_sessions, cleanup, importing, limits):
        prefix = module.__name__.rsplit(".", 1)[1]
        found |= {f"{prefix}.{name}" for name in defined_here(module)}
    commands = Path(importing.__file__).parent / "management" / "commands"
    found |= {f"command:{p.stem}" for p in commands.glob("*.py") if not p.stem.startswith("_")}
    found.add("command:clearsessions")  # Django's, through clear_expired()
    found |= {f"SessionAdmin.{name}" for name in sessions_admin.SessionAdmin.actions}
    found.add("cleanup.collector")  # SQL_SESSIONS_GC_FREQUENCY, on request_finished
    return found


def test_every_public_writer_is_in_the_matrix() -> None:
    covered = {name for path in PATHS for name in path.covers}
    found = public_writer_candidates()
    unlisted = found - covered - set(NOT_WRITERS)
    assert not unlisted, (
        f"public names neither in PATHS nor in NOT_WRITERS: {sorted(unlisted)}; a path that "
        "changes a session row joins PATHS"
    )
    stale = (covered | set(NOT_WRITERS)) - found
    assert not stale, f"PATHS or NOT_WRITERS name what the package no longer has: {sorted(stale)}"
    assert not covered & set(NOT_WRITERS)
    assert len({path.name for path in PATHS}) == len(PATHS)


# ---------------------------------------------------------- the second process


class SecondProcess:
    """tests/second_process.py, started once per database and asked to load sessions."""

    TIMEOUT = 60.0

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self.log = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed by stop()
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "SQL_SESSIONS_TEST_RUN_ID": django_settings.RUN_ID,
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.second_process", alias],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        assert self._answer() == {"ready": True}

    def load(self, engine: str, session_key: str, seconds: float = 0.0) -> Any:
        """What the second process's engine loads for the key: its data, or None."""
        assert self.process.stdin is not None
        self.process.stdin.write(f"load {engine} {session_key} {seconds}\n")
        self.process.stdin.flush()
        answer = self._answer()
        assert "error" not in answer, f"the second process failed: {answer['error']}"
        # An error would send it to the database alone, hiding a stale cache.
        assert answer["cache_errors"] == 0, "the second process's cache failed"
        return answer["data"]

    def _answer(self) -> Any:
        stdout = self.process.stdout
        assert stdout is not None
        ready, _, _ = select.select([stdout], [], [], self.TIMEOUT)
        line = stdout.readline() if ready else ""
        if not line:
            self.log.seek(0)
            raise AssertionError(f"the second process did not answer: {self.log.read()}")
        return json.loads(line)

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        assert self.process.stdout is not None
        self.process.stdout.close()
        self.log.close()


@pytest.fixture(scope="module", params=_alias_params(sqlite_alias="sqlitefile"))
def database(request: pytest.FixtureRequest, django_db_setup: None) -> str:
    """Each database the run has, SQLite in a file (which another process can open)."""
    return str(request.param)


@pytest.fixture(scope="module")
def second_process(database: str) -> Iterator[SecondProcess]:
    process = SecondProcess(database)
    yield process
    process.stop()


@pytest.fixture
def sessions_alias(database: str, django_db_blocker: Any, settings: Any) -> Iterator[str]:
    """The database, in autocommit, as SQL_SESSIONS_DB_ALIAS; its tables emptied afterwards."""
    yield from _use_alias(database, django_db_blocker, settings)


@pytest.fixture(scope="module")
def staff(django_db_setup: None, django_db_blocker: Any) -> Iterator[Any]:
    """A superuser (on 'default', where users live) for the admin path."""
    from django.contrib.auth import get_user_model

    with django_db_blocker.unblock():
        user = get_user_model()._default_manager.create_superuser(
            username="invariants-staff", password="secret"
        )
        yield user
        user.delete()


def use_engine(engine: str, settings: Any) -> type[db.SessionStore]:
    settings.SESSION_ENGINE = ENGINES[engine]
    if engine.endswith("cached"):
        settings.SESSION_CACHE_ALIAS = CACHE_ALIAS
        ping_redis()
    store: type[db.SessionStore] = import_string(f"{ENGINES[engine]}.SessionStore")
    return store


@pytest.fixture
def cache_left_clean() -> Iterator[None]:
    """Forget cache errors before; after, no new error, and this run's Redis keys deleted."""
    caching.reset()
    errors = sum(caching.cache_errors.values())
    yield
    failed = sum(caching.cache_errors.values()) - errors
    if CACHE_ALIAS in django_settings.CACHES:
        clear_session_cache(CACHE_ALIAS)
    caching.reset()
    # An error would have sent the engine to the database alone, hiding a stale cache.
    assert not failed, "the session cache failed in this process"


# ----------------------------------------------------------------- the matrix


class ProjectCallbackFailed(Exception):
    """An on_commit callback of the project's, registered before the change, raising."""


class Rollback(Exception):
    pass


def fail_on_commit() -> None:
    raise ProjectCallbackFailed


def atomic_after_a_failing_callback(alias: str, change: Callable[[], None]) -> None:
    with transaction.atomic(using=alias):
        transaction.on_commit(fail_on_commit, using=alias)
        change()


MODES = ("autocommit", "atomic", "atomic_rolled_back", "on_commit_raises")
MANUAL_MODE = "autocommit_off_rolled_back"


def run_in_mode(mode: str, alias: str, change: Callable[[], None]) -> bool:
    """Run the change in the transaction mode; return whether it was committed."""
    if mode == "autocommit":
        change()
        return True
    if mode == "atomic":
        with transaction.atomic(using=alias):
            change()
        return True
    if mode == "atomic_rolled_back":
        with contextlib.suppress(Rollback), transaction.atomic(using=alias):
            change()
            raise Rollback
        return False
    if mode == "on_commit_raises":
        # Django runs the callbacks after the commit; the first that raises
        # propagates, and the later ones (non-robust) never run.
        with pytest.raises(ProjectCallbackFailed):
            atomic_after_a_failing_callback(alias, change)
        return True
    assert mode == MANUAL_MODE
    transaction.set_autocommit(False, using=alias)
    try:
        change()
        transaction.rollback(using=alias)
    finally:
        transaction.set_autocommit(True, using=alias)
    return False


@dataclasses.dataclass(frozen=True)
class Cell:
    path: WritePath
    engine: str
    flavour: str
    mode: str


def cells() -> list[Any]:
    params = []
    for path in PATHS:
        for engine in ENGINES:
            if engine.startswith("custom") and path.name not in CUSTOM_MODEL_PATHS:
                continue
            marks = []
            if engine.endswith("cached") and CACHE_ALIAS not in django_settings.CACHES:
                marks.append(pytest.mark.skip(reason=NO_REDIS))
            for flavour in ("sync", "async"):
                for mode in (*MODES, MANUAL_MODE) if path.manual else MODES:
                    params.append(
                        pytest.param(
                            Cell(path, engine, flavour, mode),
                            id=f"{path.name}-{engine}-{flavour}-{mode}",
                            marks=marks,
                        )
                    )
    return params


def truth(session_key: str) -> Any:
    """What a fresh load from the database finds for the key: its data, or None."""
    # The db engine of the engine's model (for the cached engines, without the cache).
    store = session_model().get_session_store_class()(session_key)
    data = store.load()
    return None if store.session_key is None else data


def row(key_hash: str) -> dict[str, Any] | None:
    columns = ("data", "version", "expire_date", "created_at", "updated_at", "user_id")
    values: dict[str, Any] | None = (
        session_model().objects.filter(key_hash=key_hash).values(*columns).first()
    )
    return values


def version(key_hash: str) -> int | None:
    model = session_model()
    return model.objects.filter(key_hash=key_hash).values_list("version", flat=True).first()


@pytest.mark.usefixtures("cache_left_clean")
@pytest.mark.parametrize("cell", cells())
def test_invariants(
    cell: Cell,
    sessions_alias: str,
    second_process: SecondProcess,
    staff: Any,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path, engine = cell.path, cell.engine
    store_class = use_engine(engine, settings)
    for name, value in path.settings:
        setattr(settings, name, value)
    case = Case(sessions_alias, engine, cell.flavour, store_class, staff)
    case.key = (path.create or engine_session)(case)
    key_hash = hash_key(case.key)
    case.store, case.stale = store_class(case.key), store_class(case.key)
    assert case.store.get("value") == case.stale.get("value") == "old"
    if path.prepare:
        path.prepare(case)
    assert second_process.load(engine, case.key) == OLD, "the second process did not load it"
    before = row(key_hash)
    assert before is not None
    if path.moved:
        real = timezone.now
        ahead = datetime.timedelta(seconds=path.moved)
        monkeypatch.setattr(timezone, "now", lambda: real() + ahead)

    if cell.flavour == "sync":
        committed = run_in_mode(cell.mode, sessions_alias, lambda: path.run(case))
    else:
        committed = run_in_mode(cell.mode, sessions_alias, lambda: async_to_sync(path.arun)(case))

    problems = []
    # (b) The second process loads what the database holds.
    for session_key in (case.key, *case.new_keys):
        expected, seen = truth(session_key), second_process.load(engine, session_key, path.moved)
        if seen != expected:
            which = "the old key" if session_key == case.key else "the new key"
            problems.append(
                f"(b) the second process loads {seen!r} for {which}; the database holds "
                f"{expected!r}"
            )
    if not committed:
        # (a) Rolled back: the row is as it was, and the old data is what loads.
        if row(key_hash) != before:
            problems.append(f"(a) rolled back, but the row changed: {before} -> {row(key_hash)}")
        if not path.moved and truth(case.key) != OLD:
            problems.append(f"(a) rolled back, but the session loads {truth(case.key)!r}")
    else:
        # (a) Committed: the version moved, or the row is gone.
        current = hash_key(case.new_keys[-1]) if case.new_keys else key_hash
        after = version(current)
        if path.deletes:
            if after is not None:
                problems.append("(a) the row is still there")
        elif row(current) == before:
            problems.append("the path changed nothing: the cell proves nothing")
        elif after is None or after <= before["version"]:
            problems.append(f"(a) the version did not move: {before['version']} -> {after}")
        if path.ends:
            if truth(case.key) is not None:
                problems.append("(c) the session still loads after it ended")
            # (c) A request that loaded the session before saves it now.
            case.stale["value"] = "stale write"
            with contextlib.suppress(UpdateError):
                case.stale.save()
            if truth(case.key) is not None:
                problems.append(
                    "(c) a save from a store that loaded it before brought the session back"
                )
            elif path.deletes and version(key_hash) is not None:
                problems.append("(c) a save from a store that loaded it before re-created the row")
    note = (
        f" [async column: {path.async_note}]"
        if cell.flavour == "async" and path.async_note
        else ""
    )
    assert not problems, "; ".join(problems) + note


def test_async_twins_are_what_they_say() -> None:
    # The async column's twins are the engine's and Django's own, not this
    # module's sync_to_async; the paths without one say so.
    for path in PATHS:
        wrapped = path.arun.__qualname__.startswith("via_sync_to_async")
        assert wrapped == bool(path.async_note), path.name
