"""
The package's settings, read from django.conf.settings each time they are used.

Nothing is cached, so override_settings() and per-test changes just work. The
raw properties return what the project configured; the validated accessors
raise ImproperlyConfigured with a message that names the setting, and the
system checks report the same messages.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

DEFAULT_DB_ALIAS = "default"
DEFAULT_TABLE = "django_sql_sessions_session"
DEFAULT_CLEANUP_BATCH_SIZE = 1000
DEFAULT_TOUCH_AFTER = 0
# About one request in 10,000 deletes one batch: the ancestor's default, a
# table that stays clean without cron at a cost no request notices.
DEFAULT_GC_FREQUENCY = 10_000
# 1 MiB of encoded data: far more than a session should hold, and within
# every supported column and MySQL's default max_allowed_packet (16 MiB on
# MariaDB, 64 MiB on MySQL 8).
DEFAULT_MAX_SIZE = 1024 * 1024
# Off: an IP address and a user agent are personal data, recorded only when
# the project decides to.
DEFAULT_DEVICE_DETAILS = False
# A /24 (IPv4) or /48 (IPv6) network tells a user "a different place" without
# identifying a household; the defaults analytics tools use for the same reason.
DEFAULT_IPV4_PREFIX = 24
DEFAULT_IPV6_PREFIX = 48
# Last activity is refreshed by at most one extra UPDATE per session every
# five minutes: a "last active" column needs no finer grain.
DEFAULT_ACTIVITY_INTERVAL = 300

# Lower case only: MySQL and MariaDB on case-insensitive file systems fold table
# names, and unquoted references in hand-written SQL fold on PostgreSQL.
TABLE_NAME_RE = re.compile(r"[a-z_][a-z0-9_]*")
# PostgreSQL truncates identifiers longer than 63 bytes; MySQL allows 64 and SQL
# Server 128, so 63 is the longest name that means the same table everywhere.
MAX_TABLE_NAME_LENGTH = 63
# Larger batches hold row locks longer, and SQL Server escalates to a table lock
# at about 5,000 row locks, which would block live sessions.
MAX_CLEANUP_BATCH_SIZE = 4000


class Settings:
    @property
    def DB_ALIAS(self) -> object:
        return getattr(settings, "SQL_SESSIONS_DB_ALIAS", DEFAULT_DB_ALIAS)

    @property
    def TABLE(self) -> object:
        return getattr(settings, "SQL_SESSIONS_TABLE", DEFAULT_TABLE)

    @property
    def TOUCH_AFTER(self) -> object:
        return getattr(settings, "SQL_SESSIONS_TOUCH_AFTER", DEFAULT_TOUCH_AFTER)

    @property
    def GC_FREQUENCY(self) -> object:
        return getattr(settings, "SQL_SESSIONS_GC_FREQUENCY", DEFAULT_GC_FREQUENCY)

    @property
    def MAX_SIZE(self) -> object:
        return getattr(settings, "SQL_SESSIONS_MAX_SIZE", DEFAULT_MAX_SIZE)

    @property
    def CLEANUP_BATCH_SIZE(self) -> object:
        return getattr(settings, "SQL_SESSIONS_CLEANUP_BATCH_SIZE", DEFAULT_CLEANUP_BATCH_SIZE)

    @property
    def DEVICE_DETAILS(self) -> object:
        return getattr(settings, "SQL_SESSIONS_DEVICE_DETAILS", DEFAULT_DEVICE_DETAILS)

    @property
    def IPV4_PREFIX(self) -> object:
        return getattr(settings, "SQL_SESSIONS_IPV4_PREFIX", DEFAULT_IPV4_PREFIX)

    @property
    def IPV6_PREFIX(self) -> object:
        return getattr(settings, "SQL_SESSIONS_IPV6_PREFIX", DEFAULT_IPV6_PREFIX)

    @property
    def ACTIVITY_INTERVAL(self) -> object:
        return getattr(settings, "SQL_SESSIONS_ACTIVITY_INTERVAL", DEFAULT_ACTIVITY_INTERVAL)


conf = Settings()


def db_alias() -> str:
    """Return SQL_SESSIONS_DB_ALIAS, or raise if DATABASES has no such alias."""
    return str(_valid(conf.DB_ALIAS, db_alias_problem))


def table_name() -> str:
    """Return SQL_SESSIONS_TABLE, or raise if it is not a safe SQL identifier."""
    return str(_valid(conf.TABLE, table_name_problem))


def cleanup_batch_size() -> int:
    """Return SQL_SESSIONS_CLEANUP_BATCH_SIZE, or raise if it is out of range."""
    return int(
        _valid(
            conf.CLEANUP_BATCH_SIZE,
            lambda size: batch_size_problem(size, "SQL_SESSIONS_CLEANUP_BATCH_SIZE"),
        )
    )


def touch_after() -> int:
    """Return SQL_SESSIONS_TOUCH_AFTER, or raise if it is not a whole number of seconds."""
    return int(_valid(conf.TOUCH_AFTER, touch_after_problem))


def gc_frequency() -> int:
    """Return SQL_SESSIONS_GC_FREQUENCY, or raise if it is not a whole number >= 0."""
    return int(_valid(conf.GC_FREQUENCY, gc_frequency_problem))


def max_size() -> int:
    """Return SQL_SESSIONS_MAX_SIZE, or raise if it is not a positive whole number."""
    return int(_valid(conf.MAX_SIZE, max_size_problem))


def device_details() -> bool:
    """Return SQL_SESSIONS_DEVICE_DETAILS, or raise if it is not True or False."""
    return bool(_valid(conf.DEVICE_DETAILS, device_details_problem))


def ip_prefixes() -> tuple[int, int]:
    """Return SQL_SESSIONS_IPV4_PREFIX and SQL_SESSIONS_IPV6_PREFIX, or raise."""
    return (
        int(_valid(conf.IPV4_PREFIX, lambda bits: prefix_problem(bits, 4))),
        int(_valid(conf.IPV6_PREFIX, lambda bits: prefix_problem(bits, 6))),
    )


def activity_interval() -> int:
    """Return SQL_SESSIONS_ACTIVITY_INTERVAL, or raise if it is not a whole number >= 0."""
    return int(_valid(conf.ACTIVITY_INTERVAL, activity_interval_problem))


def _valid(value: Any, problem: Callable[[Any], str | None]) -> Any:
    if message := problem(value):
        raise ImproperlyConfigured(message)
    return value


# Each *_problem() function returns what is wrong with a value, naming the
# setting or option, or None. The accessors above, the system checks and the
# command all report these same sentences.


def db_alias_problem(alias: object) -> str | None:
    if isinstance(alias, str) and alias in settings.DATABASES:
        return None
    return (
        f"SQL_SESSIONS_DB_ALIAS is {alias!r}, which is not an alias in DATABASES "
        f"(the aliases are {', '.join(map(repr, settings.DATABASES))})."
    )


def table_name_problem(name: object) -> str | None:
    if not isinstance(name, str) or not TABLE_NAME_RE.fullmatch(name):
        return (
            f"SQL_SESSIONS_TABLE is {name!r}; it must be a plain SQL identifier: "
            "lower-case letters, digits and underscores, not starting with a digit."
        )
    if len(name) > MAX_TABLE_NAME_LENGTH:
        return (
            f"SQL_SESSIONS_TABLE is {len(name)} characters long; the longest name that "
            f"every supported database keeps intact is {MAX_TABLE_NAME_LENGTH}."
        )
    return None


def batch_size_problem(value: object, name: str) -> str | None:
    # bool is an int subclass; True as a batch size is a typo, not a 1.
    if isinstance(value, bool) or not isinstance(value, int):
        return f"{name} is {value!r}; it must be a whole number."
    if not 1 <= value <= MAX_CLEANUP_BATCH_SIZE:
        return f"{name} is {value}; it must be between 1 and {MAX_CLEANUP_BATCH_SIZE}."
    return None


def touch_after_problem(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return (
            f"SQL_SESSIONS_TOUCH_AFTER is {value!r}; it must be a whole number of seconds, "
            "0 or more."
        )
    return None


def max_size_problem(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return (
            f"SQL_SESSIONS_MAX_SIZE is {value!r}; it must be a whole number of bytes, 1 or more."
        )
    return None


def gc_frequency_problem(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return (
            f"SQL_SESSIONS_GC_FREQUENCY is {value!r}; it must be a whole number, 0 (off) or more."
        )
    return None


def device_details_problem(value: object) -> str | None:
    if not isinstance(value, bool):
        return f"SQL_SESSIONS_DEVICE_DETAILS is {value!r}; it must be True or False."
    return None


def prefix_problem(value: object, version: int) -> str | None:
    bits = 32 if version == 4 else 128
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= bits:
        return (
            f"SQL_SESSIONS_IPV{version}_PREFIX is {value!r}; it must be a prefix length "
            f"from 0 (record no IPv{version} address) to {bits} (the whole address)."
        )
    return None


def activity_interval_problem(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return (
            f"SQL_SESSIONS_ACTIVITY_INTERVAL is {value!r}; it must be a whole number of "
            "seconds, 0 (only saves record activity) or more."
        )
    return None
