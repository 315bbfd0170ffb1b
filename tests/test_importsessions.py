from __future__ import annotations

import base64
import datetime
import json
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore as DjangoStore
from django.contrib.sessions.models import Session as DjangoSession
from django.contrib.sessions.serializers import JSONSerializer
from django.core import signing
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.utils import timezone
from django.utils.crypto import get_random_string, salted_hmac

from django_sql_sessions import storage
from django_sql_sessions.backends.db import SessionStore
from django_sql_sessions.importing import ImportResult, import_django_sessions
from django_sql_sessions.models import Session
from django_sql_sessions.storage import hash_key
from django_sql_sessions.user_sessions import list_sessions, revoke_session

# Each test runs on the db engine and on the cached engine (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("engine")

DJANGO_ENGINE = "django.contrib.sessions.backends.db"
SALT = DjangoStore().key_salt


def later(**delta: float) -> datetime.datetime:
    return timezone.now() + datetime.timedelta(**delta)


def django_row(alias: str, data: str, *, key: str | None = None, **expiry: float) -> str:
    """A row in Django's own table on `alias`, as Django's db engine writes it."""
    key = key or get_random_string(32, "abcdefghijklmnopqrstuvwxyz0123456789")
    DjangoSession.objects.using(alias).create(
        session_key=key, session_data=data, expire_date=later(**(expiry or {"days": 1}))
    )
    return key


def encoded(data: dict[str, Any], **options: Any) -> str:
    return signing.dumps(data, salt=SALT, serializer=JSONSerializer, **options)


def run(alias: str, **options: Any) -> ImportResult:
    return import_django_sessions(source_alias=alias, **options)


def test_logged_in_under_djangos_engine_still_logged_in_after_the_switch(
    alias: str, settings: Any, make_user: Any
) -> None:
    settings.SESSION_ENGINE = DJANGO_ENGINE
    user = make_user()
    client = Client()
    client.get(f"/login/{user.pk}/")
    client.get("/write/kept/")
    assert client.get("/whoami/").content == str(user.pk).encode()
    assert DjangoSession.objects.count() == 1  # Django's table, on 'default'

    call_command("importsessions", "--from-database", "default", stdout=None)

    settings.SESSION_ENGINE = "django_sql_sessions.backends.db"
    assert client.get("/whoami/").content == str(user.pk).encode()
    assert client.get("/async/read/").content == b"kept"
    [listed] = list_sessions(user)
    cookie = client.cookies["sessionid"].value
    assert listed.id == hash_key(cookie)
    row = Session.objects.get()
    assert row.key_hash == hash_key(cookie)
    assert row.expire_date == DjangoSession.objects.get().expire_date


def test_every_format_django_reads_and_nothing_it_does_not(alias: str, settings: Any) -> None:
    old_secret = "an-old-secret-key-still-in-fallbacks"
    settings.SECRET_KEY_FALLBACKS = [old_secret]
    readable = {
        "current": encoded({SESSION_KEY: "1", "n": 1}, compress=True),
        "uncompressed": encoded({SESSION_KEY: "2", "n": 2}),
        "fallback key": encoded({SESSION_KEY: "3", "n": 3}, key=old_secret, compress=True),
        "anonymous": encoded({"cart": [1, 2]}),
    }
    serialized = json.dumps({SESSION_KEY: "4"}).encode()
    # The salt and algorithm of that format.
    pre_31_hash = salted_hmac(
        "django.contrib.sessionsSessionStore", serialized, algorithm="sha1"
    ).hexdigest()
    unreadable = {
        # Django < 3.1 wrote base64(hash:json); Django >= 4.0 no longer reads it.
        "pre-3.1": base64.b64encode(pre_31_hash.encode() + b":" + serialized).decode(),
        "unknown key": encoded({SESSION_KEY: "5"}, key="a-key-nobody-has"),
        "corrupted": encoded({SESSION_KEY: "6"})[:-3] + "xyz",
        "empty": encoded({}),
        "garbage": "not a session",
    }
    for name, data in (readable | unreadable).items():
        # Proof that the expectation is Django's own: it reads exactly these.
        assert bool(DjangoStore().decode(data)) == (name in readable), name
    keys = {name: django_row(alias, data) for name, data in (readable | unreadable).items()}
    bad_key = django_row(alias, readable["current"], key="UPPER" + "a" * 27)
    short_key = django_row(alias, readable["current"], key="abc")
    expired = django_row(alias, readable["current"], seconds=-1)

    result = run(alias)

    assert (result.imported, result.unreadable, result.expired, result.present) == (4, 7, 1, 0)
    for name in readable:
        store = SessionStore(keys[name])
        assert store.load() == DjangoStore().decode(readable[name]), name
    assert sorted(Session.objects.values_list("user_id", flat=True), key=str) == [
        "1",
        "2",
        "3",
        None,
    ]
    for key in [*(keys[name] for name in unreadable), bad_key, short_key, expired]:
        assert not Session.objects.for_key(key).exists()
    # Copied as they were: the data means what it meant.
    assert Session.objects.for_key(keys["fallback key"]).get().data == readable["fallback key"]


def test_expiry_kept_and_a_second_run_leaves_existing_rows_alone(alias: str) -> None:
    key = django_row(alias, encoded({"n": 1}), hours=5)
    assert run(alias).imported == 1
    row = Session.objects.for_key(key).get()
    assert row.expire_date == DjangoSession.objects.using(alias).get().expire_date
    store = SessionStore(key)
    store["n"] = 2
    store.save()
    again = run(alias)
    assert (again.imported, again.present) == (0, 1)
    assert SessionStore(key).load() == {"n": 2}


def test_batches_walk_the_whole_table(alias: str) -> None:
    keys = {django_row(alias, encoded({"i": i})) for i in range(7)}
    seen: list[int] = []
    result = run(alias, batch_size=2, progress=lambda so_far: seen.append(so_far.imported))
    assert result.batches == 4
    assert seen == [2, 4, 6, 7]
    assert {key for key in keys if Session.objects.for_key(key).exists()} == keys


def test_dry_run_writes_nothing(alias: str) -> None:
    django_row(alias, encoded({"n": 1}))
    django_row(alias, "garbage")
    result = run(alias, dry_run=True)
    assert (result.imported, result.unreadable) == (1, 1)
    assert Session.objects.count() == 0


def test_the_command_reports_what_it_did(alias: str) -> None:
    from io import StringIO

    django_row(alias, encoded({"n": 1}))
    django_row(alias, encoded({"n": 1}), seconds=-5)
    out = StringIO()
    call_command("importsessions", "--from-database", alias, "--dry-run", stdout=out)
    assert out.getvalue().startswith("Would copy 1 session from")
    assert "1 expired" in out.getvalue()
    out = StringIO()
    call_command("importsessions", "--from-database", alias, "-v", "2", stdout=out)
    assert "Batch 1: Copied 1" in out.getvalue()
    assert "Copied 1 session from" in out.getvalue()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--from-database", "nowhere"], "'nowhere' is not an alias in DATABASES"),
        (["--from-table", "x; DROP TABLE y"], "is not a plain SQL table name"),
        (["--from-table", "no_such_table"], "There is no table 'no_such_table'"),
        (["--from-table", "test_web_sessions"], "this package's own session table"),
        (["--batch-size", "0"], "--batch-size is 0"),
        (["--batch-size", "many"], "'many' is not a whole number"),
    ],
)
def test_bad_options(alias: str, options: list[str], message: str) -> None:
    django_row(alias, encoded({"n": 1}))
    with pytest.raises(CommandError, match=message):
        call_command("importsessions", "--from-database", alias, *options)
    assert Session.objects.count() == 0


def test_presence_is_checked_in_pieces(alias: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from django.db import connections
    from django.test.utils import CaptureQueriesContext

    monkeypatch.setattr(storage, "IN_LIST_SIZE", 2)
    keys = [django_row(alias, encoded({"i": i})) for i in range(5)]
    with CaptureQueriesContext(connections[alias]) as queries:
        assert run(alias).imported == 5
    # 5 keys, 2 per list: three lookups of our table's rows and three of the
    # markers, none with more than two keys.
    in_lists = [q["sql"] for q in queries if 'key_hash" IN (' in q["sql"].replace("`", '"')]
    assert len(in_lists) == 6
    assert all(q.split(" IN (")[1].split(")")[0].count(",") <= 1 for q in in_lists)
    SessionStore(keys[4]).delete()
    again = run(alias)
    assert (again.imported, again.present, again.gone) == (0, 4, 1)


@pytest.mark.parametrize("how", ["logout", "revocation"])
def test_a_second_run_never_brings_back_a_deleted_session(
    alias: str, how: str, make_user: Any
) -> None:
    # The README's procedure runs the import again after the engine switch;
    # sessions logged out or revoked in between must stay gone.
    user = make_user()
    data = encoded({"_auth_user_id": str(user.pk), "n": 1})
    logged_out, revoked, kept = (django_row(alias, data) for _ in range(3))
    assert run(alias).imported == 3
    if how == "logout":
        SessionStore(logged_out).flush()
    else:
        revoke_session(user, hash_key(revoked))
    new = django_row(alias, encoded({"n": 2}))  # created under Django's engine meanwhile

    again = run(alias)
    assert (again.imported, again.present, again.gone) == (1, 2, 1)
    gone = logged_out if how == "logout" else revoked
    assert SessionStore(gone).load() == {}
    assert SessionStore(kept).load()["n"] == 1
    assert SessionStore(new).load() == {"n": 2}
    # And a third run the same.
    assert (run(alias).imported, run(alias).gone) == (0, 1)


def test_sessions_over_the_size_limit_are_skipped(alias: str, settings: Any) -> None:
    small = django_row(alias, encoded({"n": 1}))
    big = django_row(alias, encoded({"blob": "x" * 5000}))
    settings.SQL_SESSIONS_MAX_SIZE = 1000
    result = run(alias)
    assert (result.imported, result.too_large) == (1, 1)
    assert SessionStore(small).load() == {"n": 1}
    assert SessionStore(big).load() == {}
    out = StringIO()
    call_command("importsessions", "--from-database", alias, "--dry-run", stdout=out)
    assert "1 larger than SQL_SESSIONS_MAX_SIZE" in out.getvalue()


def test_a_session_extended_under_djangos_engine_stays_gone_after_logout(alias: str) -> None:
    # Copied with a 30-minute expiry; Django's engine, still live until the
    # switch, then pushes the source row to 50 minutes. The user logs out
    # under our engine, and the next import runs 35 minutes after the first,
    # when the expiry recorded at the copy has passed but the row has not.
    t0 = timezone.now()
    key = django_row(alias, encoded({SESSION_KEY: "1"}), minutes=30)
    assert run(alias, now=t0).imported == 1
    DjangoSession.objects.using(alias).filter(session_key=key).update(
        expire_date=t0 + datetime.timedelta(minutes=50)
    )
    SessionStore(key).flush()

    later = t0 + datetime.timedelta(minutes=35)
    dry = run(alias, now=later, dry_run=True)
    again = run(alias, now=later)
    assert (dry.imported, dry.gone) == (again.imported, again.gone) == (0, 1)
    assert SessionStore(key).load() == {}
    # The memory of the copy now lasts as long as the source row.
    assert (run(alias, now=t0 + datetime.timedelta(minutes=45)).imported) == 0


def test_a_logout_under_djangos_engine_after_the_copy_deletes_the_copy(alias: str) -> None:
    # Copied at step 2; the user then logs out while Django's engine still
    # runs, which deletes the source row. The copy must not keep the old
    # cookie working after the switch.
    t0 = timezone.now()
    logged_out, kept = django_row(alias, encoded({"n": 1})), django_row(alias, encoded({"n": 2}))
    assert run(alias, now=t0).imported == 2
    DjangoSession.objects.using(alias).filter(session_key=logged_out).delete()
    # Django's cycle_key() (a login under its engine) moves a session too.
    moved = DjangoSession.objects.using(alias).get(session_key=kept)
    moved.delete()
    new_key = django_row(alias, moved.session_data)

    later = t0 + datetime.timedelta(minutes=5)
    dry = run(alias, now=later, dry_run=True)
    assert (dry.vanished, dry.imported) == (2, 1)
    assert SessionStore(logged_out).load() == {"n": 1}  # a dry run deletes nothing
    again = run(alias, now=later)
    assert (again.vanished, again.imported) == (2, 1)
    assert SessionStore(logged_out).load() == {}
    assert SessionStore(kept).load() == {}
    assert SessionStore(new_key).load() == {"n": 2}
    assert run(alias, now=later + datetime.timedelta(minutes=1)).vanished == 0


def test_copies_from_another_source_are_left_alone(alias: str, settings: Any) -> None:
    key = django_row(alias, encoded({"n": 1}))
    assert run(alias).imported == 1
    # A second source that does not hold that key: its import deletes nothing
    # copied from the first.
    other = "default" if alias != "default" else "sqlitefile"
    result = run(other, now=timezone.now() + datetime.timedelta(minutes=1))
    assert result.vanished == 0
    assert SessionStore(key).load() == {"n": 1}
