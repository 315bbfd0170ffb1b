from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.utils import timezone

from django_sql_sessions.backends.db import SessionStore
from django_sql_sessions.models import Session
from django_sql_sessions.storage import hash_key

# Each test runs on the db engine and on the cached engine (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("engine")


def make(alias: str, expire_in: datetime.timedelta, **data: Any) -> SessionStore:
    store = SessionStore()
    store.update(data)
    store.set_expiry(timezone.now() + expire_in)
    store.save()
    return store


def test_manager_is_pinned_to_the_alias(alias: str, settings: Any) -> None:
    settings.DATABASE_ROUTERS = []  # Django alone would send reads to 'default'
    assert Session.objects.all().db == alias
    assert Session.objects.active().db == alias


def test_active_expired_and_for_key(alias: str) -> None:
    live = make(alias, datetime.timedelta(hours=1), n=1)
    dead = make(alias, datetime.timedelta(hours=-1), n=2)
    assert live.session_key
    assert dead.session_key

    assert [s.key_hash for s in Session.objects.active()] == [hash_key(live.session_key)]
    assert [s.key_hash for s in Session.objects.expired()] == [hash_key(dead.session_key)]
    session = Session.objects.for_key(live.session_key).get()
    assert session.get_decoded() == {"n": 1, "_session_expiry": live["_session_expiry"]}
    assert not session.is_expired()
    assert Session.objects.for_key(dead.session_key).get().is_expired()
    assert str(session) == hash_key(live.session_key)[:12]
    assert live.session_key not in str(session)


def test_manager_save_and_encode(alias: str) -> None:
    key = "k" * 32
    expire = timezone.now() + datetime.timedelta(days=1)
    Session.objects.save(key, {"a": 1}, expire)
    assert SessionStore(key).load() == {"a": 1}

    Session.objects.save(key, {"a": 2}, expire)
    assert SessionStore(key).load() == {"a": 2}
    assert Session.objects.count() == 1
    assert SessionStore().decode(Session.objects.encode({"b": 3})) == {"b": 3}

    Session.objects.save(key, {}, expire)  # empty data deletes, like Django's manager
    assert not Session.objects.exists()


def test_get_session_store_class() -> None:
    # The db engine's, whichever engine runs: the model and both engines
    # share one format.
    from django_sql_sessions.backends import db

    assert Session.get_session_store_class() is db.SessionStore
