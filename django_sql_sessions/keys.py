"""Session keys: which cookie values are worth a query, and how new ones are drawn."""

from __future__ import annotations

import re
import secrets
from typing import TypeGuard

from django.contrib.sessions.backends.base import VALID_KEY_CHARS

# Django generates 32 characters of a-z0-9 and accepts 8 or more: anything
# else cannot be one of our keys, and loads as a new session without a query.
SESSION_KEY_RE = re.compile(r"[a-z0-9]{8,64}")

HASH_LENGTH = 64  # hex digits of a SHA-256 digest
KEY_HASH_RE = re.compile(rf"[0-9a-f]{{{HASH_LENGTH}}}")
KEY_LENGTH = 32
_KEY_SPACE = len(VALID_KEY_CHARS) ** KEY_LENGTH


def is_valid_key(key: object) -> TypeGuard[str]:
    return isinstance(key, str) and SESSION_KEY_RE.fullmatch(key) is not None


def is_key_hash(value: object) -> TypeGuard[str]:
    """Whether value could be a digest storage.hash_key() returned."""
    return isinstance(value, str) and KEY_HASH_RE.fullmatch(value) is not None


def new_key() -> str:
    """get_random_string(32, VALID_KEY_CHARS)'s distribution, in one CSPRNG call, not 32."""
    number = secrets.randbelow(_KEY_SPACE)
    characters = []
    for _ in range(KEY_LENGTH):
        number, index = divmod(number, len(VALID_KEY_CHARS))
        characters.append(VALID_KEY_CHARS[index])
    return "".join(characters)
