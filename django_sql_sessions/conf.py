"""
The package's settings: one declaration each, from which its accessor, its
runtime error and its system check all come. Values are kept until Django's
setting_changed signal says one changed, so the request path reads none.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable
from typing import Any, Generic, TypeVar, cast

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

_T = TypeVar("_T")

# Lower case only: MySQL and MariaDB on case-insensitive file systems fold table
# names, and unquoted references in hand-written SQL fold on PostgreSQL.
TABLE_NAME_RE = re.compile(r"[a-z_][a-z0-9_]*")
# PostgreSQL truncates identifiers longer than 63 bytes; MySQL allows 64 and SQL
# Server 128, so 63 is the longest name that means the same table everywhere.
MAX_TABLE_NAME_LENGTH = 63
# Larger batches hold row locks longer, and SQL Server escalates to a table lock
# at about 5,000 row locks, which would block live sessions.
MAX_CLEANUP_BATCH_SIZE = 4000

# Validated values by setting name, and cached() functions' results, for a
# look-up on the request path that costs no call: kept.get(key) or
# remember(key, compute). The generation moves on with every clear_cache(),
# so that a value read before a clear is not stored after it.
kept: dict[object, Any] = {}
_generation = [0]

# (setting or option name, value) -> what is wrong with the value, or None.
Rule = Callable[[str, object], "str | None"]


@dataclasses.dataclass(frozen=True)
class Setting(Generic[_T]):
    name: str
    default: _T
    rule: Rule
    check_id: str  # the system check that reports an invalid value
    hint: str  # how to fix an invalid value; {default} is replaced

    def raw(self) -> object:
        """What the project configured, unchecked."""
        return getattr(settings, self.name, self.default)

    def problem(self) -> str | None:
        """What is wrong with the configured value, naming the setting, or None."""
        return self.rule(self.name, self.raw())

    def get(self) -> _T:
        """The configured value; ImproperlyConfigured if it is invalid."""
        try:
            return kept[self.name]  # type: ignore[no-any-return]
        except KeyError:
            return remember(self.name, self._validated)

    def _validated(self) -> _T:
        value = self.raw()
        if problem := self.rule(self.name, value):
            raise ImproperlyConfigured(problem)
        return cast(_T, value)

    def fix(self) -> str:
        return self.hint.format(default=self.default)


def cached(function: Callable[[], _T]) -> Callable[[], _T]:
    """function(), depending only on settings clear_cache() watches, kept as they are."""

    @functools.wraps(function)
    def get() -> _T:
        try:
            return kept[function]  # type: ignore[no-any-return]
        except KeyError:
            return remember(function, function)

    return get


def remember(key: object, compute: Callable[[], _T]) -> _T:
    """compute(), kept under `key` until the settings change; an exception is not kept."""
    generation = _generation[0]
    value = compute()
    if generation == _generation[0]:
        kept[key] = value
    return value


def clear_cache(*, setting: str = "", **kwargs: Any) -> None:
    """setting_changed receiver: forget kept values that depend on the setting."""
    # SESSION_ENGINE and the rest: caching.in_use() and the cached table.
    if setting.startswith("SQL_SESSIONS_") or setting in (
        "DATABASES",
        "SESSION_ENGINE",
        "SESSION_CACHE_ALIAS",
        "CACHES",
        "SECRET_KEY",
        "SECRET_KEY_FALLBACKS",  # the encryption keys (encryption.py)
        "SESSION_SERIALIZER",  # the tables' and the cache's decoding
    ):
        _generation[0] += 1
        kept.clear()


def whole_number(
    minimum: int, maximum: int | None = None, *, unit: str = "", low: str = "", high: str = ""
) -> Rule:
    """A rule for a whole number (not a bool) from minimum up to maximum, if any."""
    span = (
        f"from {minimum}{low} to {maximum}{high}"
        if maximum is not None
        else f"{minimum}{low} or more"
    )
    of_unit = f" of {unit}" if unit else ""

    def rule(name: str, value: object) -> str | None:
        # True as a number is a typo, not a 1.
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or value < minimum
            or (maximum is not None and value > maximum)
        ):
            return f"{name} is {value!r}; it must be a whole number{of_unit}, {span}."
        return None

    return rule


def _boolean(name: str, value: object) -> str | None:
    if not isinstance(value, bool):
        return f"{name} is {value!r}; it must be True or False."
    return None


def _alias(name: str, value: object) -> str | None:
    if isinstance(value, str) and value in settings.DATABASES:
        return None
    return (
        f"{name} is {value!r}, which is not an alias in DATABASES "
        f"(the aliases are {', '.join(map(repr, settings.DATABASES))})."
    )


def table_name_rule(name: str, value: object) -> str | None:
    if not isinstance(value, str) or not TABLE_NAME_RE.fullmatch(value):
        return (
            f"{name} is {value!r}; it must be a plain SQL identifier: "
            "lower-case letters, digits and underscores, not starting with a digit."
        )
    if len(value) > MAX_TABLE_NAME_LENGTH:
        return (
            f"{name} is {len(value)} characters long; the longest name that "
            f"every supported database keeps intact is {MAX_TABLE_NAME_LENGTH}."
        )
    return None


cleanup_batch_size_rule = whole_number(1, MAX_CLEANUP_BATCH_SIZE)

DB_ALIAS = Setting[str](
    "SQL_SESSIONS_DB_ALIAS",
    "default",
    _alias,
    "E001",
    "Set SQL_SESSIONS_DB_ALIAS to the DATABASES alias that holds the sessions.",
)
TABLE = Setting[str](
    "SQL_SESSIONS_TABLE",
    "django_sql_sessions_session",
    table_name_rule,
    "E002",
    "Choose a name such as 'web_sessions'. No SQL is built from this name until it is valid.",
)
CLEANUP_BATCH_SIZE = Setting[int](
    "SQL_SESSIONS_CLEANUP_BATCH_SIZE",
    1000,
    cleanup_batch_size_rule,
    "E003",
    "Remove the setting to use the default of {default}.",
)
TOUCH_AFTER = Setting[int](
    "SQL_SESSIONS_TOUCH_AFTER",
    0,
    whole_number(0, unit="seconds"),
    "E007",
    "Use {default} (the default) to write every save, as Django does.",
)
MAX_SIZE = Setting[int](
    "SQL_SESSIONS_MAX_SIZE",
    # Far more than a session should hold, and within every supported column
    # and MySQL's default max_allowed_packet.
    1024 * 1024,
    whole_number(1, unit="bytes"),
    "E008",
    "Remove the setting to use the default of {default} bytes (1 MiB).",
)
GC_FREQUENCY = Setting[int](
    "SQL_SESSIONS_GC_FREQUENCY",
    10_000,  # the ancestor's default: clean without cron, at a cost no request notices
    whole_number(0, low=" (off)"),
    "E009",
    "Use 0 to rely on a scheduled purgesessions alone.",
)
DEVICE_DETAILS = Setting[bool](
    "SQL_SESSIONS_DEVICE_DETAILS",
    False,  # personal data, recorded only when the project decides to
    _boolean,
    "E010",
    "Use True to record IP networks and user agents, {default} (the default) not to.",
)
# A /24 (IPv4) or /48 (IPv6) network tells a user "a different place" without
# identifying a household; the defaults analytics tools use for the same reason.
IPV4_PREFIX = Setting[int](
    "SQL_SESSIONS_IPV4_PREFIX",
    24,
    whole_number(0, 32, low=" (record no IPv4 address)", high=" (the whole address)"),
    "E011",
    "Remove the setting to keep /{default} networks (the default).",
)
IPV6_PREFIX = Setting[int](
    "SQL_SESSIONS_IPV6_PREFIX",
    48,
    whole_number(0, 128, low=" (record no IPv6 address)", high=" (the whole address)"),
    "E012",
    "Remove the setting to keep /{default} networks (the default).",
)
ACTIVITY_INTERVAL = Setting[int](
    "SQL_SESSIONS_ACTIVITY_INTERVAL",
    300,  # a "last active" column needs no finer grain
    whole_number(0, unit="seconds", low=" (only saves record activity)"),
    "E013",
    "Remove the setting to use the default of {default} seconds.",
)
ABSOLUTE_LIFETIME = Setting[int](
    "SQL_SESSIONS_ABSOLUTE_LIFETIME",
    0,  # off, as in Django: a session lives while it is used
    whole_number(0, unit="seconds", low=" (off)"),
    "E016",
    "Use a number of seconds such as 43200 (12 hours), or {default} (the default) for none.",
)

PREPARE = Setting[bool](
    "SQL_SESSIONS_PREPARE",
    # On: PostgreSQL (psycopg 3) parses and plans each of the engine's few
    # statements once per connection instead of once per request; a pooler
    # that loses them (PgBouncer in transaction mode) turns it off by itself
    # (cursors.py).
    True,
    _boolean,
    "E019",
    "Use False to send every statement unprepared, True (the default) to prepare them.",
)


def _limit(name: str, value: object) -> str | None:
    # None and 0 are both "off": 0 reads as "no limit" in a settings file.
    if value is None or (type(value) is int and value >= 0):
        return None
    return f"{name} is {value!r}; it must be a whole number of sessions, or None or 0 (no limit)."


MAX_PER_USER = Setting[int | None](
    "SQL_SESSIONS_MAX_PER_USER",
    None,  # as Django: a user may log in from any number of devices
    _limit,
    "E020",
    "Use a number such as 3, or None (the default) for no limit.",
)
MAX_PER_USER_REFUSE = Setting[bool](
    "SQL_SESSIONS_MAX_PER_USER_REFUSE",
    False,  # Spring's default too: the newest login wins
    _boolean,
    "E021",
    "Use True to refuse a login over SQL_SESSIONS_MAX_PER_USER, {default} (the default) "
    "to log out the least recently active sessions instead.",
)

ENCRYPT = Setting[bool](
    "SQL_SESSIONS_ENCRYPT",
    False,  # opt-in: it needs the cryptography package (encryption.py)
    _boolean,
    "E022",
    "Use True to encrypt session data at rest, {default} (the default) to store it signed only.",
)

SETTINGS: tuple[Setting[Any], ...] = (
    DB_ALIAS,
    TABLE,
    CLEANUP_BATCH_SIZE,
    TOUCH_AFTER,
    MAX_SIZE,
    GC_FREQUENCY,
    DEVICE_DETAILS,
    IPV4_PREFIX,
    IPV6_PREFIX,
    ACTIVITY_INTERVAL,
    ABSOLUTE_LIFETIME,
    PREPARE,
    MAX_PER_USER,
    MAX_PER_USER_REFUSE,
    ENCRYPT,
)
