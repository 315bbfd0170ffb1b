"""Small helpers that several test modules share."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.test import Client

from django_sql_sessions import storage
from django_sql_sessions.backends.db import SessionStore
from django_sql_sessions.models import Session
from django_sql_sessions.storage import hash_key


def saved_session(**data: Any) -> SessionStore:
    """A new session holding `data`, saved through the engine."""
    store = SessionStore()
    store.update(data)
    store.save()
    return store


def key(store: SessionStore) -> str:
    """The store's key, which the test knows is set."""
    assert store.session_key is not None
    return store.session_key


def row_of(client: Client) -> Session:
    """The row of the session in the client's cookie."""
    return Session.objects.for_key(client.cookies["sessionid"].value).get()


def logged_in_client(user: Any, path: str = "/login/{}/") -> Client:
    """A browser that logged `user` in through a view (so through the middleware)."""
    client = Client()
    assert client.get(path.format(user.pk)).status_code == 200
    return client


def error_codes(error: BaseException | None) -> list[object]:
    """The SQLSTATEs (psycopg) and error numbers (MySQLdb) along the chain of causes."""
    codes: list[object] = []
    while error is not None:
        codes += [getattr(error, "sqlstate", None), error.args[0] if error.args else None]
        error = error.__cause__
    return codes


def cached_engine() -> bool:
    """Whether the test runs on the cached engine (see the engine fixture)."""
    return bool(settings.SESSION_ENGINE == "django_sql_sessions.backends.cached_db")


def wrote_raw_sql(session_key: str) -> None:
    """
    Tell the cached engine's cache that a test changed the session's row with
    raw SQL, which the cache cannot see (docs/cache.rst); a no-op otherwise.
    """
    # The documented way: raw SQL runs inside the table's changing().
    with storage.table().changing([hash_key(session_key)]):
        pass
