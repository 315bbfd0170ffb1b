from __future__ import annotations

import hashlib

import pytest
from django.contrib.sessions.backends.base import VALID_KEY_CHARS
from django.utils.crypto import get_random_string

from django_sql_sessions.keys import is_key_hash, is_valid_key, new_key
from django_sql_sessions.storage import hash_key


def test_keys_django_generates_are_valid() -> None:
    assert all(is_valid_key(get_random_string(32, VALID_KEY_CHARS)) for _ in range(100))


@pytest.mark.parametrize("key", ["12345678", "a" * 64])
def test_lengths_django_accepts_are_valid(key: str) -> None:
    assert is_valid_key(key)


@pytest.mark.parametrize(
    "key",
    [None, 12345678, "", "1234567", "a" * 65, "ABCDEFGH", "abcdefg ", "abcdéfgh", "a'--b;cd"],
)
def test_anything_else_is_invalid(key: object) -> None:
    assert not is_valid_key(key)


def test_hash_is_the_hex_sha256_of_the_key() -> None:
    key = "abcdefgh12345678abcdefgh12345678"
    assert hash_key(key) == hashlib.sha256(key.encode()).hexdigest()
    assert len(hash_key(key)) == 64
    assert hash_key(key) != hash_key(key[:-1] + "9")


def test_new_keys_are_valid_unique_and_use_the_whole_alphabet() -> None:
    keys = [new_key() for _ in range(2000)]
    assert all(is_valid_key(k) and len(k) == 32 for k in keys)
    assert len(set(keys)) == len(keys)
    seen = "".join(keys)
    assert set(seen) == set(VALID_KEY_CHARS)
    # Uniform: each of the 36 characters near 1/36 of 64,000 (±25%).
    expected = len(seen) / len(VALID_KEY_CHARS)
    assert all(0.75 * expected < seen.count(c) < 1.25 * expected for c in VALID_KEY_CHARS)


def test_is_key_hash_accepts_what_hash_key_returns_and_nothing_else() -> None:
    assert is_key_hash(hash_key("abcdefgh12345678"))
    for value in ["", "0" * 63, "0" * 65, "A" * 64, "g" * 64, None, 64, b"0" * 64]:
        assert not is_key_hash(value), value
