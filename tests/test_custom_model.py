"""
Django's documented way to extend a session model ("Extending
database-backed session engines"), on this engine: tests/custom_sessions
has a model with an account_id column and engines overriding
get_model_class() and create_model_instance(), as Django's example does.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth import SESSION_KEY
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from django_sql_sessions import caching, storage
from django_sql_sessions.models import Session
from django_sql_sessions.routers import DedicatedSessionRouter, SessionRouter
from django_sql_sessions.storage import hash_key
from django_sql_sessions.user_sessions import list_sessions, revoke_all_sessions
from tests.conftest import clear_session_cache, ping_redis
from tests.custom_sessions import cached_engine, engine
from tests.custom_sessions.models import CustomSession

CHANGELIST = "/admin/custom_sessions/customsession/"


@pytest.fixture(params=["db", "cached-redis"])
def store_class(
    request: pytest.FixtureRequest, alias: str, settings: Any
) -> Iterator[type[engine.SessionStore]]:
    """SESSION_ENGINE set to the custom engine, or to its cached twin on Redis."""
    if request.param == "db":
        settings.SESSION_ENGINE = engine.__name__
        yield engine.SessionStore
        return
    if "sessions_redis" not in settings.CACHES:
        pytest.skip("redis not configured: REDIS_URL is not set")
    ping_redis()
    settings.SESSION_ENGINE = cached_engine.__name__
    settings.SESSION_CACHE_ALIAS = "sessions_redis"
    caching.reset()
    yield cached_engine.SessionStore  # type: ignore[misc]
    clear_session_cache("sessions_redis")
    caching.reset()


def account_of(session_key: str | None) -> Any:
    assert session_key is not None
    return CustomSession.objects.values_list("account_id", flat=True).get(
        key_hash=hash_key(session_key)
    )


def test_the_engine_follows_the_model(store_class: type[engine.SessionStore]) -> None:
    assert storage.session_model() is CustomSession
    table = store_class.table()
    assert table.name == "custom_sessions_customsession"
    assert [field.name for field in table.extra] == ["account_id"]
    # Every path shares the engine's table object, and so its cache.
    assert storage.table() is table
    assert storage.table(CustomSession) is table


def test_the_column_is_written_on_create_and_on_save(
    store_class: type[engine.SessionStore],
) -> None:
    store = store_class()
    store[SESSION_KEY] = "7"
    store.create()
    key = store.session_key
    assert account_of(key) == 7
    assert not Session.objects.exists()  # the package's own table is not used

    store = store_class(key)
    store[SESSION_KEY] = "8"
    store.save()
    assert account_of(key) == 8
    assert CustomSession.objects.filter(account_id=8).count() == 1

    store = store_class(key)
    del store[SESSION_KEY]
    store.save()
    assert account_of(key) is None
    assert store_class(key).load() == {}  # no data left but the deletion

    store = store_class(key)
    store["cart"] = ["book"]
    store.save()
    assert store_class(key).load() == {"cart": ["book"]}


def test_a_merged_save_writes_the_column(store_class: type[engine.SessionStore]) -> None:
    first = store_class()
    first[SESSION_KEY] = "1"
    first.create()
    key = first.session_key
    second = store_class(key)
    second.load()
    first[SESSION_KEY] = "2"
    first.save()
    second["other"] = "x"
    second.save()  # a conflict: merged onto the first's data, the column with it
    assert store_class(key).load() == {SESSION_KEY: "2", "other": "x"}
    assert account_of(key) == 2


def test_the_async_twins_write_the_column(store_class: type[engine.SessionStore]) -> None:
    async_to_sync(async_twins)(store_class)


async def async_twins(store_class: type[engine.SessionStore]) -> None:
    store = store_class()
    await store.aset(SESSION_KEY, "21")
    await store.asave()
    key = store.session_key
    assert await CustomSession.objects.filter(account_id=21).acount() == 1
    again = store_class(key)
    await again.aset(SESSION_KEY, "22")
    await again.asave()
    assert await CustomSession.objects.filter(account_id=22).acount() == 1
    instance = await store_class(key).acreate_model_instance({SESSION_KEY: "23"})
    assert isinstance(instance, CustomSession)
    assert (instance.account_id, instance.key_hash) == (23, hash_key(key or ""))
    assert instance._state.adding  # unsaved, as Django's


def test_the_cache_is_told_of_orm_writes(store_class: type[engine.SessionStore]) -> None:
    store = store_class()
    store.update({SESSION_KEY: "5", "value": "old"})
    store.save()
    key = store.session_key
    assert key is not None
    assert store_class(key).load()["value"] == "old"  # cached, on the cached engine

    rows = CustomSession.objects.filter(account_id=5)
    rows.update(data=CustomSession.objects.encode({SESSION_KEY: "5", "value": "new"}))
    assert store_class(key).load()["value"] == "new"

    row = CustomSession.objects.get(account_id=5)
    row.data = CustomSession.objects.encode({"value": "newer"})
    row.save()
    assert store_class(key).load() == {"value": "newer"}

    row.delete()
    assert store_class(key).load() == {}

    store = store_class()
    store.update({SESSION_KEY: "5"})
    store.save()
    assert store_class(store.session_key).load() == {SESSION_KEY: "5"}
    CustomSession.objects.filter(account_id=5).delete()
    assert store_class(store.session_key).load() == {}


def test_the_users_sessions_api(store_class: type[engine.SessionStore], make_user: Any) -> None:
    user = make_user("carol")
    stores = []
    for _ in range(2):
        store = store_class()
        store[SESSION_KEY] = str(user.pk)
        store.save()
        stores.append(store)
    assert {s.id for s in list_sessions(user)} == {hash_key(s.session_key or "") for s in stores}
    assert revoke_all_sessions(user, keep=stores[0]) == 1
    assert store_class(stores[1].session_key).load() == {}
    assert store_class(stores[0].session_key).load() == {SESSION_KEY: str(user.pk)}


def test_the_admin(store_class: type[engine.SessionStore], make_user: Any) -> None:
    admin = make_user("admin", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(admin)  # its own session is in the custom table too
    assert account_of(client.session.session_key) == admin.pk
    user = make_user("dave")
    other = store_class()
    other[SESSION_KEY] = str(user.pk)
    other.save()
    assert other.session_key is not None
    key_hash = hash_key(other.session_key)

    listed = client.get(CHANGELIST)
    assert listed.status_code == 200
    assert key_hash[:12] in listed.content.decode()
    detail = client.get(f"{CHANGELIST}{key_hash}/change/")
    assert detail.status_code == 200
    assert "dave" in detail.content.decode()
    revoked = client.post(
        CHANGELIST, {"action": "revoke", "_selected_action": [key_hash]}, follow=True
    )
    assert "Revoked 1 session." in revoked.content.decode()
    assert store_class(other.session_key).load() == {}
    assert client.get(CHANGELIST).status_code == 200  # the admin's own session lives on


def test_the_commands(store_class: type[engine.SessionStore], make_user: Any) -> None:
    user = make_user("erin")
    live = store_class()
    live[SESSION_KEY] = str(user.pk)
    live.save()
    expired = store_class()
    expired["x"] = 1
    expired.set_expiry(timezone.now() - datetime.timedelta(seconds=1))
    expired.save()
    assert CustomSession.objects.count() == 2

    call_command("clearsessions")
    assert list(CustomSession.objects.values_list("account_id", flat=True)) == [user.pk]

    out = StringIO()
    call_command("sessionstats", stdout=out)
    assert "custom_sessions_customsession" in out.getvalue()

    out = StringIO()
    call_command("revokesessions", "--user-id", str(user.pk), stdout=out)
    assert "Revoked 1 session" in out.getvalue()
    assert not CustomSession.objects.exists()

    expired = store_class()
    expired["x"] = 1
    expired.set_expiry(timezone.now() - datetime.timedelta(seconds=1))
    expired.save()
    call_command("purgesessions", stdout=StringIO())
    assert not CustomSession.objects.exists()


def test_importsessions_fills_the_column(
    store_class: type[engine.SessionStore], alias: str, make_user: Any
) -> None:
    from django.contrib.sessions.backends.db import SessionStore as DjangoStore

    store = DjangoStore()
    store[SESSION_KEY] = "31"
    store.save()
    key = store.session_key
    assert key is not None
    call_command("importsessions", stdout=StringIO())
    assert account_of(key) == 31
    assert store_class(key).load() == {SESSION_KEY: "31"}


def test_the_routers_pin_the_model(alias: str) -> None:
    for router in (SessionRouter(), DedicatedSessionRouter()):
        assert router.db_for_read(CustomSession) == alias
        assert router.db_for_write(CustomSession) == alias
        assert router.allow_migrate(alias, "custom_sessions", "customsession") is True
    other = "default" if alias != "default" else "sessions_elsewhere"
    assert SessionRouter().allow_migrate(other, "custom_sessions", "customsession") is False
    # The project's other models are none of the router's business.
    assert SessionRouter().allow_migrate(alias, "accounts", "uuiduser") is None
    assert SessionRouter().db_for_read(Group) is None
    assert DedicatedSessionRouter().allow_migrate(alias, "auth", "group") is (
        None if alias == "default" else False
    )
