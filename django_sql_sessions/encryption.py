"""
Session data encrypted at rest (SQL_SESSIONS_ENCRYPT): the data column and the
cached engine's entries hold AES-256-GCM ciphertext under keys derived from
SECRET_KEY and SECRET_KEY_FALLBACKS. docs/design.rst ("Encryption at rest")
says why; docs/usage.rst says how to turn it on, rotate and turn it off.

A sealed value is ``enc1$<key id>$<base64 of salt, nonce, ciphertext and tag>``.
Signed session data never contains "$", so plaintext rows written before the
setting was turned on are told apart and still load.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import logging
import os
from collections import OrderedDict
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.encoding import force_bytes

from django_sql_sessions import conf

logger = logging.getLogger("django_sql_sessions")

PREFIX = "enc1$"
_KEY_LABEL = b"django_sql_sessions.encryption.key"
_ID_LABEL = b"django_sql_sessions.encryption.key-id"
_SALT, _NONCE, _TAG = 16, 12, 16
# Failures already logged, by a digest of the stored value: a row that cannot
# be opened is logged once per process, not at every request that loads it.
_REPORTED_MAX = 10_000
_reported: OrderedDict[bytes, None] = OrderedDict()


def is_sealed(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


@conf.cached
def _keys() -> dict[str, bytes]:
    """Key id -> key: SECRET_KEY's first, then SECRET_KEY_FALLBACKS' in order."""
    secrets = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", ())]
    keys: dict[str, bytes] = {}
    for secret in secrets:
        secret_bytes = force_bytes(secret)
        # Hex, so a key id is no LIKE wildcard (reencryptsessions selects by prefix).
        key_id = hmac.digest(secret_bytes, _ID_LABEL, "sha256")[:4].hex()
        keys.setdefault(key_id, hmac.digest(secret_bytes, _KEY_LABEL, "sha256"))
    return keys


def current_prefix() -> str:
    """The start of every value sealed under the current key."""
    return f"{PREFIX}{next(iter(_keys()))}$"


_cipher: list[Any] = []  # cryptography's AESGCM class, once imported


def _aesgcm(key: bytes, salt: bytes) -> Any:
    """
    AES-256-GCM under a key of the value's own: keyed BLAKE2b of its random
    salt, so the 2**32 limit on random nonces under one GCM key is never near.
    """
    if not _cipher:
        try:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        except ImportError as exc:
            raise ImproperlyConfigured(
                "SQL_SESSIONS_ENCRYPT needs the cryptography package: "
                "pip install 'django-sql-sessions[encryption]'."
            ) from exc
        _cipher.append(AESGCM)
    return _cipher[0](hashlib.blake2b(salt, key=key, digest_size=32).digest())


def seal(data: str, context: bytes = b"") -> str:
    """
    data encrypted under the current key. `context` (authenticated, not
    stored) tells values apart that must not stand in for each other: the
    cache's entries are sealed with b"cache", the table's data with none.
    """
    key_id, key = next(iter(_keys().items()))
    salt, nonce = os.urandom(_SALT), os.urandom(_NONCE)
    aad = f"{PREFIX}{key_id}".encode() + context
    sealed = _aesgcm(key, salt).encrypt(nonce, data.encode(), aad)
    encoded = binascii.b2a_base64(salt + nonce + sealed, newline=False).decode()
    return f"{PREFIX}{key_id}${encoded}"


def stored(data: str) -> str:
    """data as the table and the cache store it: sealed if SQL_SESSIONS_ENCRYPT is on."""
    if not data or not conf.ENCRYPT.get() or data.startswith(PREFIX):
        return data
    return seal(data)


def readable(value: str, row: str = "") -> str:
    """
    A stored value as the engine reads it: the signed data, plaintext as it
    is, or "" if it cannot be opened (logged once; the session loads empty).
    `row` names it in the log (a key hash's start), never its contents.
    """
    if not value.startswith(PREFIX):
        return value
    opened, problem = _open(value)
    if problem is not None:
        _report(value, row, problem)
    return opened


def _open(value: str, context: bytes = b"") -> tuple[str, str | None]:
    key_id, _, encoded = value[len(PREFIX) :].partition("$")
    key = _keys().get(key_id)
    if key is None:
        return "", (
            f"it was encrypted under key {key_id}, which is neither SECRET_KEY's nor one of "
            "SECRET_KEY_FALLBACKS' (retired too early?)"
        )
    try:
        raw = binascii.a2b_base64(encoded)
    except ValueError:
        return "", "it is not valid base64 (corrupt or tampered with)"
    salt, nonce, sealed = raw[:_SALT], raw[_SALT : _SALT + _NONCE], raw[_SALT + _NONCE :]
    if len(sealed) < _TAG:
        return "", "it is too short (corrupt or tampered with)"
    try:
        aesgcm = _aesgcm(key, salt)
    except ImproperlyConfigured:
        return "", "the cryptography package is not installed"
    try:
        aad = f"{PREFIX}{key_id}".encode() + context
        return aesgcm.decrypt(nonce, sealed, aad).decode(), None
    except Exception:  # cryptography's InvalidTag, or bytes that are not UTF-8
        return "", "it failed authentication (corrupt or tampered with)"


def try_open(value: str, context: bytes = b"") -> str | None:
    """What a stored value holds, or None if it cannot be opened (not logged)."""
    if not value.startswith(PREFIX):
        return value
    opened, problem = _open(value, context)
    return None if problem is not None else opened


def _report(value: str, row: str, problem: str) -> None:
    digest = hashlib.sha256(value.encode()).digest()[:16]
    if digest in _reported:
        return
    _reported[digest] = None
    if len(_reported) > _REPORTED_MAX:
        _reported.popitem(last=False)
    logger.warning(
        "Session data%s could not be decrypted: %s. The session loads empty; "
        "its next save replaces the row.",
        f" of row {row[:12]}" if row else "",
        problem,
    )
