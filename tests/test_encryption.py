"""
Session data encrypted at rest (SQL_SESSIONS_ENCRYPT, issue 23 part 1): the
data column and the cache entries sealed; plaintext and older keys' rows
still load; a row that cannot be opened loads empty, logged once; the
reencryptsessions command; a dump of the table and of Redis readable
without SECRET_KEY holds none of the data.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import importlib.util
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
import zlib
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings as django_settings
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections
from django.test import AsyncClient, Client
from django.test.utils import override_settings
from django.utils import timezone

from django_sql_sessions import checks, encryption, storage
from django_sql_sessions.backends.db import SessionStore
from django_sql_sessions.models import Session
from django_sql_sessions.storage import hash_key
from tests.conftest import clear_session_cache
from tests.helpers import cached_engine, key, saved_session

pytestmark = pytest.mark.usefixtures("engine")

ROOT = Path(__file__).resolve().parent.parent
# In every session under test: found in a dump, it is readable there.
MARKER = "alice-4f7a@example.com"
OLD_SECRET = "an-older-secret-key-of-the-tests"


@pytest.fixture
def encrypted(settings: Any) -> None:
    settings.SQL_SESSIONS_ENCRYPT = True


def stored(session_key: str) -> str:
    """The data column as the database holds it, read with raw SQL."""
    connection = connections[storage.table().alias]
    table = connection.ops.quote_name(storage.table().name)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT data FROM {table} WHERE key_hash = %s", [hash_key(session_key)])
        return str(cursor.fetchone()[0])


def write_stored(session_key: str, value: str) -> None:
    """Replace the stored data with raw SQL (an attacker, a corrupt backup), telling the cache."""
    table = storage.table()
    connection = connections[table.alias]
    name = connection.ops.quote_name(table.name)
    with table.changing([hash_key(session_key)]), connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {name} SET data = %s WHERE key_hash = %s", [value, hash_key(session_key)]
        )


ENTRY = re.compile(r"(\d+(?:\|[-+:.T\d]+){3}\|)(enc1\$[\da-f]{8}\$[A-Za-z\d+/=]+)")


def cache_values() -> list[bytes]:
    """Every value the session cache holds for this run, as a dump of it would."""
    if not cached_engine():
        return []
    cache = caches[django_settings.SESSION_CACHE_ALIAS]
    if django_settings.SESSION_CACHE_ALIAS == "sessions_redis":
        client = cache._cache.get_client(write=True)  # type: ignore[attr-defined]
        keys = list(client.scan_iter(match=f"{cache.key_prefix}:*", count=1000))
        return [bytes(value) for value in client.mget(keys) if value is not None] if keys else []
    # LocMemCache: pickled values.
    return [bytes(value) for value in cache._cache.values()]  # type: ignore[attr-defined]


def readable_without_the_key(dump: bytes) -> bool:
    """
    Whether MARKER can be read from the dump without SECRET_KEY: as it is,
    or in signed data, whose payload is only base64 (and zlib) encoded.
    """
    needle = MARKER.encode()
    if needle in dump:
        return True
    for token in re.findall(rb"\.?[A-Za-z0-9_-]{12,}", dump):
        raw = token.lstrip(b".")
        try:
            decoded = base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))
            if token.startswith(b"."):
                decoded = zlib.decompress(decoded)
        except (ValueError, zlib.error):
            continue
        if needle in decoded:
            return True
    return False


# ---------------------------------------------------------------- the cipher


@pytest.mark.parametrize("engine", [None], ids=["no-engine"], indirect=True)
def test_sealed_values_open_and_tell_nothing(settings: Any) -> None:
    signed = SessionStore().encode({"email": MARKER})
    sealed = encryption.seal(signed)
    assert sealed.startswith(encryption.current_prefix())
    assert encryption.seal(signed) != sealed, "a fresh salt and nonce each time"
    assert not readable_without_the_key(sealed.encode())
    assert readable_without_the_key(signed.encode()), "the check finds signed data"
    assert encryption.readable(sealed) == signed
    # Plaintext (written before the setting) is read as it is.
    assert encryption.readable(signed) == signed
    assert "$" not in signed


@pytest.mark.parametrize("engine", [None], ids=["no-engine"], indirect=True)
def test_keys_come_from_secret_key_and_its_fallbacks(settings: Any) -> None:
    settings.SECRET_KEY = OLD_SECRET
    old = encryption.seal("signed data")
    old_prefix = encryption.current_prefix()
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = "the-new-secret-key", [OLD_SECRET]
    assert encryption.current_prefix() != old_prefix
    assert encryption.readable(old) == "signed data"
    assert encryption.seal("x").startswith(encryption.current_prefix())
    settings.SECRET_KEY_FALLBACKS = []
    assert encryption.try_open(old) is None


@pytest.mark.parametrize("engine", [None], ids=["no-engine"], indirect=True)
@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda v: v[:-6] + ("A" if v[-6] != "A" else "B") + v[-5:], "failed authentication"),
        (lambda v: v[: len(encryption.current_prefix()) + 12], "too short"),
        (lambda v: encryption.current_prefix() + "abcde", "not valid base64"),
        (lambda v: encryption.PREFIX + "00000000$" + v.split("$")[2], "neither SECRET_KEY"),
    ],
    ids=["tampered", "truncated", "garbage", "unknown-key"],
)
def test_a_value_that_cannot_be_opened_is_logged_once_without_its_contents(
    settings: Any, caplog: pytest.LogCaptureFixture, damage: Any, reason: str
) -> None:
    sealed = encryption.seal(SessionStore().encode({"email": MARKER}))
    bad = damage(sealed)
    with caplog.at_level(logging.WARNING, "django_sql_sessions"):
        assert encryption.readable(bad, "ab" * 32) == ""
        assert encryption.readable(bad, "ab" * 32) == ""
    records = [r for r in caplog.records if "could not be decrypted" in r.getMessage()]
    assert len(records) == 1
    message = records[0].getMessage()
    assert reason in message
    assert "abababababab" in message
    assert MARKER not in message
    assert bad not in message


@pytest.mark.parametrize("engine", [None], ids=["no-engine"], indirect=True)
def test_without_cryptography(
    settings: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    sealed = encryption.seal("signed data")
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives.ciphers.aead", None)
    monkeypatch.setattr(encryption, "_cipher", [])
    with pytest.raises(ImproperlyConfigured, match=r"django-sql-sessions\[encryption\]"):
        encryption.seal("signed data")
    with caplog.at_level(logging.WARNING, "django_sql_sessions"):
        assert encryption.readable(sealed) == ""
    assert "cryptography package is not installed" in caplog.text
    # The check says so before any request does; off, it says nothing.
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    settings.SQL_SESSIONS_ENCRYPT = True
    assert "django_sql_sessions.E023" in [m.id for m in checks.check_settings(None)]
    settings.SQL_SESSIONS_ENCRYPT = False
    assert "django_sql_sessions.E023" not in [m.id for m in checks.check_settings(None)]


@pytest.mark.parametrize("engine", [None], ids=["no-engine"], indirect=True)
@pytest.mark.parametrize("value", [1, "yes", None])
def test_the_setting_must_be_a_boolean(settings: Any, value: object) -> None:
    settings.SQL_SESSIONS_ENCRYPT = value
    errors = [m for m in checks.check_settings(None) if m.id == "django_sql_sessions.E022"]
    assert errors
    assert "SQL_SESSIONS_ENCRYPT" in errors[0].msg
    with pytest.raises(ImproperlyConfigured, match="SQL_SESSIONS_ENCRYPT"):
        SessionStore().save()
    settings.SQL_SESSIONS_ENCRYPT = False  # before the engine fixture's teardown


# ------------------------------------------------------------ the engines


@pytest.mark.usefixtures("encrypted")
def test_the_engine_stores_only_sealed_data(alias: str) -> None:
    store = saved_session(email=MARKER)
    assert stored(key(store)).startswith(encryption.current_prefix())
    assert not readable_without_the_key(stored(key(store)).encode())
    assert SessionStore(key(store)).load() == {"email": MARKER}
    # The ORM, and so the admin, reads the session as the engine does.
    assert Session.objects.for_key(key(store)).get().get_decoded() == {"email": MARKER}
    for value in cache_values():
        assert not readable_without_the_key(value)
    if cached_engine():
        assert cache_values(), "the load filled the cache"


@pytest.mark.usefixtures("encrypted")
def test_async_twins_store_only_sealed_data(alias: str) -> None:
    async def scenario() -> tuple[str, dict[str, Any]]:
        store = SessionStore()
        await store.aset("email", MARKER)
        await store.asave()
        assert store.session_key is not None
        await store.acycle_key()
        await store.aset("n", 1)
        await store.asave()
        assert store.session_key is not None
        again = SessionStore(store.session_key)
        return store.session_key, dict(await again.aitems())

    session_key, loaded = async_to_sync(scenario)()
    assert loaded == {"email": MARKER, "n": 1}
    assert stored(session_key).startswith(encryption.current_prefix())
    for value in cache_values():
        assert not readable_without_the_key(value)


@pytest.mark.usefixtures("encrypted")
def test_the_orm_writes_sealed_data(alias: str) -> None:
    store = saved_session(email="first")
    sessions = Session.objects.for_key(key(store))
    sessions.update(data=Session.objects.encode({"email": MARKER}))
    assert stored(key(store)).startswith(encryption.current_prefix())
    assert SessionStore(key(store)).load() == {"email": MARKER}
    row = sessions.get()
    row.data = Session.objects.encode({"email": MARKER, "n": 2})
    row.save()
    assert stored(key(store)).startswith(encryption.current_prefix())
    assert SessionStore(key(store)).load() == {"email": MARKER, "n": 2}
    # Lookups compare what is stored: never a way to test a guess of the data.
    assert not Session.objects.filter(data=row.data).exists()
    row.data = Session.objects.encode({"email": MARKER, "n": 3})
    Session.objects.bulk_update([row], ["data"])
    assert stored(key(store)).startswith(encryption.current_prefix())
    assert SessionStore(key(store)).load() == {"email": MARKER, "n": 3}
    other = Session.objects.create(
        key_hash=hash_key("a" * 32),
        data=Session.objects.encode({"email": MARKER}),
        expire_date=row.expire_date,
    )
    assert encryption.is_sealed(stored("a" * 32))
    assert Session.objects.get(key_hash=other.key_hash).get_decoded() == {"email": MARKER}


def test_turning_it_on_logs_no_one_out(alias: str, settings: Any) -> None:
    store = saved_session(email=MARKER)
    before = stored(key(store))
    assert not encryption.is_sealed(before)
    settings.SQL_SESSIONS_ENCRYPT = True
    again = SessionStore(key(store))
    assert again.load() == {"email": MARKER}
    again["n"] = 1
    again.save()
    assert stored(key(store)).startswith(encryption.current_prefix())
    # Turning it off again: sealed rows still load, and saves write plaintext.
    settings.SQL_SESSIONS_ENCRYPT = False
    third = SessionStore(key(store))
    assert third.load() == {"email": MARKER, "n": 1}
    third["n"] = 2
    third.save()
    assert not encryption.is_sealed(stored(key(store)))
    assert SessionStore(key(store)).load() == {"email": MARKER, "n": 2}


@pytest.mark.usefixtures("encrypted")
def test_a_rotated_secret_key_keeps_sessions_and_a_save_moves_them_on(
    alias: str, settings: Any
) -> None:
    settings.SECRET_KEY = OLD_SECRET
    store = saved_session(email=MARKER)
    old_prefix = encryption.current_prefix()
    assert stored(key(store)).startswith(old_prefix)
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = "the-new-secret-key", [OLD_SECRET]
    again = SessionStore(key(store))
    assert again.load() == {"email": MARKER}
    again["n"] = 1
    again.save()
    assert stored(key(store)).startswith(encryption.current_prefix())
    assert not stored(key(store)).startswith(old_prefix)


@pytest.mark.usefixtures("encrypted")
@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_a_row_that_cannot_be_opened_is_an_empty_session_not_a_500(
    alias: str, settings: Any, caplog: pytest.LogCaptureFixture, flavour: str
) -> None:
    prefix = "" if flavour == "sync" else "/async"
    client = Client() if flavour == "sync" else AsyncClient()

    def get(path: str) -> Any:
        if isinstance(client, AsyncClient):
            return async_to_sync(client.get)(prefix + path)
        return client.get(prefix + path)

    assert get("/write/secret/").status_code == 200
    session_key = client.cookies["sessionid"].value
    sealed = stored(session_key)
    # Flip a character of the ciphertext, as a tampered or corrupt row.
    write_stored(session_key, sealed[:-6] + ("A" if sealed[-6] != "A" else "B") + sealed[-5:])
    with caplog.at_level(logging.WARNING):
        for _ in range(2):
            response = get("/read/")
            assert response.status_code == 200
            assert response.content == b"None"
    failures = [r for r in caplog.records if "could not be decrypted" in r.getMessage()]
    assert len(failures) == 1, "logged once, not at every request"
    assert not [r for r in caplog.records if "corrupted" in r.getMessage()], "logged twice"
    # The next save replaces the row: the session goes on under its key.
    assert get("/write/again/").status_code == 200
    assert get("/read/").content == b"again"
    assert client.cookies["sessionid"].value == session_key


@pytest.mark.usefixtures("encrypted")
def test_a_row_under_a_retired_key_is_an_empty_session(alias: str, settings: Any) -> None:
    settings.SECRET_KEY = OLD_SECRET
    store = saved_session(email=MARKER)
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = "the-new-secret-key", []
    again = SessionStore(key(store))
    assert again.load() == {}
    assert again.session_key == key(store), "the key stays: its next save replaces the row"


@pytest.mark.usefixtures("encrypted")
@pytest.mark.parametrize("lacking", ["the-key", "cryptography"])
@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_a_process_that_cannot_open_a_row_leaves_the_cache_alone(
    alias: str, settings: Any, monkeypatch: pytest.MonkeyPatch, lacking: str, flavour: str
) -> None:
    """
    A worker still on the old SECRET_KEY during a rotation, or one without
    cryptography, reads the session as empty, and must not offer that to the
    cache that the others read (a trial user's find).
    """
    if not cached_engine():
        pytest.skip("the cached engine's entries")
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = "the-new-secret-key", [OLD_SECRET]
    store = saved_session(email=MARKER)

    @contextlib.contextmanager
    def the_other_process() -> Iterator[SessionStore]:
        if lacking == "the-key":
            changed = override_settings(SECRET_KEY=OLD_SECRET, SECRET_KEY_FALLBACKS=[])
        else:
            changed = override_settings(SQL_SESSIONS_ENCRYPT=False)
            monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives.ciphers.aead", None)
            monkeypatch.setattr(encryption, "_cipher", [])
        with changed:
            other = SessionStore(key(store))
            # A miss: the row, which it cannot open.
            loaded = other.load() if flavour == "sync" else async_to_sync(other.aload)()
            assert loaded == {}
            yield other
        monkeypatch.undo()

    clear_session_cache(django_settings.SESSION_CACHE_ALIAS)
    with the_other_process():
        pass
    assert SessionStore(key(store)).load() == {"email": MARKER}
    # Its activity falls due: the touch must not refresh the copy either.
    rows = Session.objects.filter(key_hash=hash_key(key(store)))
    touched_before = rows.get().updated_at
    with the_other_process() as other:
        later = timezone.now() + datetime.timedelta(days=1)
        monkeypatch.setattr(timezone, "now", lambda: later)
        if flavour == "sync":
            other.record_activity()
        else:
            async_to_sync(other.arecord_activity)()
    assert rows.get().updated_at > touched_before, "the touch happened"
    assert SessionStore(key(store)).load() == {"email": MARKER}


# ------------------------------------------------------------- the command


def reencrypt(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("reencryptsessions", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_the_command_rewrites_what_is_not_under_the_current_key(alias: str, settings: Any) -> None:
    settings.SECRET_KEY = OLD_SECRET  # signs every session here, as it would on a site
    plaintext = saved_session(email=MARKER, n=1)
    settings.SQL_SESSIONS_ENCRYPT = True
    old_key = saved_session(email=MARKER, n=2)
    retired = saved_session(email=MARKER, n=3)
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = "the-new-secret-key", [OLD_SECRET]
    current = saved_session(email=MARKER, n=4)
    current_before = stored(key(current))
    # A row under a key already gone from the fallbacks (sealed with a third secret).
    with override_settings(SECRET_KEY="a-third-secret", SECRET_KEY_FALLBACKS=[]):
        unreadable = encryption.seal(SessionStore().encode({"email": MARKER}))
    write_stored(key(retired), unreadable)

    out, err = reencrypt("--batch-size", "1", "-v", "2")
    assert "Rewrote 2 sessions under the current key" in out
    assert "(3 batches)" in out
    assert "Batch 3:" in out
    assert "could not be decrypted" in err
    assert "1 session" in err
    for store, n in ((plaintext, 1), (old_key, 2), (current, 4)):
        assert stored(key(store)).startswith(encryption.current_prefix())
        assert SessionStore(key(store)).load() == {"email": MARKER, "n": n}
    assert stored(key(current)) == current_before, "a current row is not rewritten"
    assert stored(key(retired)) == unreadable, "an unreadable row is left as it is"
    # Now the old key can go: every session still loads.
    settings.SECRET_KEY_FALLBACKS = []
    assert SessionStore(key(old_key)).load() == {"email": MARKER, "n": 2}
    out, _ = reencrypt("--dry-run")
    assert "Would rewrite 0 sessions" in out


def test_the_command_decrypts_once_the_setting_is_off(alias: str, settings: Any) -> None:
    settings.SQL_SESSIONS_ENCRYPT = True
    store = saved_session(email=MARKER)
    with pytest.raises(CommandError, match="set it to False"):
        reencrypt("--decrypt")
    settings.SQL_SESSIONS_ENCRYPT = False
    with pytest.raises(CommandError, match="pass --decrypt"):
        reencrypt()
    out, _ = reencrypt("--decrypt", "--dry-run")
    assert "Would rewrite 1 session as plaintext" in out
    assert encryption.is_sealed(stored(key(store)))
    out, _ = reencrypt("--decrypt")
    assert "Rewrote 1 session as plaintext" in out
    assert not encryption.is_sealed(stored(key(store)))
    assert SessionStore(key(store)).load() == {"email": MARKER}


def test_a_save_between_the_read_and_the_rewrite_wins(
    alias: str, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = saved_session(email=MARKER, n=1)
    settings.SQL_SESSIONS_ENCRYPT = True
    table = storage.table()
    scan = type(table).scan

    def scan_then_a_request_saves(self: Any, *args: Any, **kwargs: Any) -> Any:
        rows = scan(self, *args, **kwargs)
        if rows:
            request = SessionStore(key(store))
            request["n"] = 2
            request.save()
        return rows

    monkeypatch.setattr(type(table), "scan", scan_then_a_request_saves)
    out, _ = reencrypt()
    assert "Rewrote 0 sessions" in out
    assert "Saved by requests meanwhile" in out
    assert SessionStore(key(store)).load() == {"email": MARKER, "n": 2}


def test_under_live_traffic_no_write_is_lost_and_no_one_logged_out(
    threaded_alias: str, settings: Any
) -> None:
    """Requests keep saving their sessions while the command runs, batch after batch."""
    stores = [saved_session(email=MARKER, n=0) for _ in range(20)]
    settings.SQL_SESSIONS_ENCRYPT = True
    done = threading.Event()
    written: dict[str, int] = {}
    failures: list[BaseException] = []

    def traffic(session_key: str) -> None:
        n = 0
        try:
            while not done.is_set() or n < 3:
                n += 1
                request = SessionStore(session_key)
                assert request.get("email") == MARKER, "logged out"
                request["n"] = n
                request.save()
                written[session_key] = n
        except BaseException as exc:  # reported by the test
            failures.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=traffic, args=(key(s),)) for s in stores[:10]]
    for thread in threads:
        thread.start()
    try:
        for _ in range(3):
            reencrypt("--batch-size", "3")
    finally:
        done.set()
        for thread in threads:
            thread.join(timeout=60)
    assert not failures, failures
    for store in stores:
        loaded = SessionStore(key(store)).load()
        assert loaded == {"email": MARKER, "n": written.get(key(store), 0)}
        assert stored(key(store)).startswith(encryption.current_prefix())


def test_bad_options_are_refused(alias: str, settings: Any) -> None:
    settings.SQL_SESSIONS_ENCRYPT = True
    for bad in (["--batch-size", "0"], ["--batch-size", "x"], ["--sleep", "-1"]):
        with pytest.raises(CommandError):
            reencrypt(*bad)


# ------------------------------------------------------------------ dumps


def dump_table(alias: str) -> bytes:
    """The session table as the database's own dump tool writes it (SQLite: its file)."""
    connection = connections[alias]
    db = connection.settings_dict
    table = storage.table().name
    if connection.vendor == "sqlite":
        path = Path(db["NAME"])
        return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())
    if connection.vendor == "postgresql":
        tool = [
            "pg_dump", "-h", db["HOST"], "-p", str(db["PORT"] or 5432), "-U", db["USER"],
            "-t", table, db["NAME"],
        ]  # fmt: skip
    else:
        dumper = shutil.which("mariadb-dump") or "mysqldump"
        tool = [dumper, "-h", db["HOST"], "-P", str(db["PORT"] or 3306), "-u", db["USER"]]
        tool += [f"--password={db['PASSWORD']}"] if db.get("PASSWORD") else []
        tool += [db["NAME"], table]
    if shutil.which(tool[0]) is None:
        pytest.skip(f"{tool[0]} is not installed")
    return subprocess.run(tool, check=True, capture_output=True, timeout=60).stdout


@pytest.mark.parametrize("encrypt", [True, False], ids=["encrypted", "control"])
def test_a_dump_of_the_table_and_the_cache_holds_no_plaintext(
    threaded_alias: str, settings: Any, encrypt: bool
) -> None:
    """The control (encryption off) shows that the same dump does expose the data."""
    settings.SQL_SESSIONS_ENCRYPT = encrypt
    stores = [saved_session(email=MARKER, n=n) for n in range(3)]
    Session.objects.for_key(key(stores[0])).update(data=Session.objects.encode({"e": MARKER}))
    for store in stores:
        SessionStore(key(store)).load()  # fills the cache
    connections[threaded_alias].close()  # SQLite: the WAL written back
    exposed = readable_without_the_key(dump_table(threaded_alias))
    exposed_in_cache = any(readable_without_the_key(value) for value in cache_values())
    assert exposed is not encrypt
    if cached_engine():
        assert exposed_in_cache is not encrypt


def test_the_command_runs_from_manage_py_with_checks(threaded_alias: str, settings: Any) -> None:
    """django-admin, with the system checks on, in a process of its own."""
    store = saved_session(email=MARKER)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "tests.encrypted_settings",
        "SQL_SESSIONS_TEST_DB_ALIAS": threaded_alias,
        "SQL_SESSIONS_TEST_RUN_ID": django_settings.RUN_ID,
    }
    command = [sys.executable, "-m", "django", "reencryptsessions", "--batch-size", "10"]
    result = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "Rewrote 1 session under the current key" in result.stdout
    settings.SQL_SESSIONS_ENCRYPT = True
    assert stored(key(store)).startswith(encryption.current_prefix())
    assert SessionStore(key(store)).load() == {"email": MARKER}


@pytest.mark.usefixtures("encrypted")
def test_importsessions_writes_sealed_rows(alias: str) -> None:
    from django.contrib.sessions.backends.db import SessionStore as DjangoStore
    from django.contrib.sessions.models import Session as DjangoSession

    django_key = "b" * 32
    DjangoSession.objects.using(alias).create(
        session_key=django_key,
        session_data=DjangoStore().encode({"email": MARKER}),
        expire_date=timezone.now() + datetime.timedelta(days=1),
    )
    call_command("importsessions", "--from-database", alias, stdout=StringIO())
    assert stored(django_key).startswith(encryption.current_prefix())
    assert SessionStore(django_key).load() == {"email": MARKER}


@pytest.mark.parametrize("engine", [None], ids=["no-engine"], indirect=True)
@pytest.mark.parametrize(
    ("session", "compressed"),
    [
        ({}, False),
        ({"email": MARKER}, False),
        ({"cart": list(range(500))}, True),
        ({"text": "\u00e9" * 600, "n": None}, True),
    ],
    ids=["empty", "small", "compressed", "unicode"],
)
def test_a_sealed_row_is_read_without_a_second_signature_check(
    settings: Any, session: dict[str, Any], compressed: bool
) -> None:
    """What storage.opened_session() reads is what Django's decode() reads."""
    store = SessionStore()
    signed = store.encode(session)
    assert signed.startswith(".") is compressed
    assert storage.opened_session(signed, store.serializer) == store.decode(signed) == session
    assert storage.opened_session("not signed data", store.serializer) is None


@pytest.mark.usefixtures("encrypted")
def test_sealed_data_that_is_not_a_session_falls_back_to_decode(
    alias: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = saved_session(email=MARKER)
    Session.objects.for_key(key(store)).update(data="not signed data")
    assert encryption.is_sealed(stored(key(store)))
    with caplog.at_level(logging.WARNING):
        assert SessionStore(key(store)).load() == {}
    assert "corrupted" in caplog.text  # Django's decode() had the last word


@pytest.mark.usefixtures("encrypted")
def test_a_cache_entry_does_not_open_as_a_rows_data(
    alias: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The cache's entries are sealed in a context of their own."""
    if not cached_engine():
        pytest.skip("the cached engine's entries")
    store = saved_session(email=MARKER)
    SessionStore(key(store)).load()
    sealed_tails = []
    for value in cache_values():
        # "version|expire|updated|created|" then the sealed part, whose
        # associated data is the context, the key hash and that header.
        if found := ENTRY.search(value.decode("latin-1")):
            sealed_tails.append((found[2], f"cache{hash_key(key(store))}|{found[1]}"))
    assert sealed_tails, "the entry's session part is sealed"
    tail, context = sealed_tails[0]
    assert encryption.try_open(tail, context.encode()) is not None
    write_stored(key(store), tail)
    with caplog.at_level(logging.WARNING):
        assert SessionStore(key(store)).load() == {}
    assert "failed authentication" in caplog.text
