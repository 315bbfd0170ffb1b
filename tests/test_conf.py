from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured

from django_sql_sessions import conf


def test_defaults(settings: Any) -> None:
    del settings.SQL_SESSIONS_TABLE
    assert conf.DB_ALIAS.get() == "default"
    assert conf.TABLE.get() == "django_sql_sessions_session"
    assert conf.CLEANUP_BATCH_SIZE.get() == 1000
    assert conf.DEVICE_DETAILS.get() is False
    assert (conf.IPV4_PREFIX.get(), conf.IPV6_PREFIX.get()) == (24, 48)
    assert conf.ACTIVITY_INTERVAL.get() == 300


def test_override_settings_is_seen_at_once(settings: Any) -> None:
    assert conf.CLEANUP_BATCH_SIZE.get() == 1000  # cached now
    settings.SQL_SESSIONS_DB_ALIAS = "secondary"
    settings.SQL_SESSIONS_TABLE = "web_sessions"
    settings.SQL_SESSIONS_CLEANUP_BATCH_SIZE = 250
    assert conf.DB_ALIAS.get() == "secondary"
    assert conf.TABLE.get() == "web_sessions"
    assert conf.CLEANUP_BATCH_SIZE.get() == 250


def test_values_are_cached_until_a_setting_changes(settings: Any) -> None:
    # An override first, so that the direct write below lands in a layer
    # the fixture throws away, not in the project's settings.
    settings.SQL_SESSIONS_GC_FREQUENCY = 10
    assert conf.TOUCH_AFTER.get() == 0
    # Written behind Django's back (no setting_changed): still the cached value,
    # as with Django's own cached settings.
    django_settings.SQL_SESSIONS_TOUCH_AFTER = 60
    assert conf.TOUCH_AFTER.get() == 0
    settings.SQL_SESSIONS_GC_FREQUENCY = 5  # any of ours changing clears them all
    assert conf.TOUCH_AFTER.get() == 60


def test_the_cache_write_above_did_not_leak() -> None:
    # Runs after the test above (same module, file order).
    assert not hasattr(django_settings, "SQL_SESSIONS_TOUCH_AFTER")
    assert conf.TOUCH_AFTER.get() == 0


def test_other_settings_do_not_clear_the_cache(settings: Any) -> None:
    conf.TOUCH_AFTER.get()
    assert "SQL_SESSIONS_TOUCH_AFTER" in conf.kept
    settings.SESSION_COOKIE_AGE = 60
    assert "SQL_SESSIONS_TOUCH_AFTER" in conf.kept
    conf.clear_cache(setting="DATABASES")  # the alias check reads it
    assert conf.kept == {}


def test_an_invalid_value_is_never_cached(settings: Any) -> None:
    settings.SQL_SESSIONS_MAX_SIZE = 0
    for _ in range(2):
        with pytest.raises(ImproperlyConfigured, match="SQL_SESSIONS_MAX_SIZE is 0"):
            conf.MAX_SIZE.get()


def test_unknown_alias_names_the_setting(settings: Any) -> None:
    settings.SQL_SESSIONS_DB_ALIAS = "sesions"
    with pytest.raises(
        ImproperlyConfigured, match=r"SQL_SESSIONS_DB_ALIAS is 'sesions'.*'default'"
    ):
        conf.DB_ALIAS.get()


@pytest.mark.parametrize(
    "name",
    [
        "",
        "web sessions",
        'web"sessions',
        "sessions; DROP TABLE auth_user",
        "1sessions",
        "WebSessions",
        "public.sessions",
        "sessiöns",
        None,
        42,
    ],
)
def test_table_name_must_be_a_plain_identifier(settings: Any, name: object) -> None:
    settings.SQL_SESSIONS_TABLE = name
    with pytest.raises(
        ImproperlyConfigured, match=r"SQL_SESSIONS_TABLE is .*plain SQL identifier"
    ):
        conf.TABLE.get()


def test_table_name_length_limit(settings: Any) -> None:
    settings.SQL_SESSIONS_TABLE = "s" * 63
    assert conf.TABLE.get() == "s" * 63
    settings.SQL_SESSIONS_TABLE = "s" * 64
    with pytest.raises(ImproperlyConfigured, match=r"64 characters long.*63"):
        conf.TABLE.get()


# Each whole-number setting: values just outside its bounds and of the wrong
# type, and the values at its bounds.
WHOLE_NUMBERS = [
    (conf.CLEANUP_BATCH_SIZE, [0, 4001], [1, 4000]),
    (conf.TOUCH_AFTER, [-1], [0, 86400]),
    (conf.MAX_SIZE, [0], [1, 10**9]),
    (conf.GC_FREQUENCY, [-1], [0, 1]),
    (conf.IPV4_PREFIX, [-1, 33], [0, 32]),
    (conf.IPV6_PREFIX, [-1, 129], [0, 128]),
    (conf.ACTIVITY_INTERVAL, [-1], [0, 3600]),
]


@pytest.mark.parametrize(
    ("setting", "bad", "good"),
    WHOLE_NUMBERS,
    # By name: the default ids hold addresses, which differ between xdist workers.
    ids=[setting.name for setting, _bad, _good in WHOLE_NUMBERS],
)
def test_whole_number_settings(
    settings: Any, setting: conf.Setting[int], bad: list[int], good: list[int]
) -> None:
    for value in [*bad, "100", 1.5, True, None]:
        setattr(settings, setting.name, value)
        with pytest.raises(ImproperlyConfigured) as raised:
            setting.get()
        message = str(raised.value)
        assert message.startswith(f"{setting.name} is {value!r}; it must be a whole number")
        assert message == setting.problem()
    for value in good:
        setattr(settings, setting.name, value)
        assert setting.get() == value
        assert setting.problem() is None


def test_messages_say_the_bounds_and_their_meaning() -> None:
    assert conf.IPV4_PREFIX.rule("SQL_SESSIONS_IPV4_PREFIX", 40) == (
        "SQL_SESSIONS_IPV4_PREFIX is 40; it must be a whole number, from 0 (record no IPv4 "
        "address) to 32 (the whole address)."
    )
    assert conf.TOUCH_AFTER.rule("SQL_SESSIONS_TOUCH_AFTER", -5) == (
        "SQL_SESSIONS_TOUCH_AFTER is -5; it must be a whole number of seconds, 0 or more."
    )
    assert conf.cleanup_batch_size_rule("--batch-size", 0) == (
        "--batch-size is 0; it must be a whole number, from 1 to 4000."
    )


def test_device_details_must_be_a_bool(settings: Any) -> None:
    settings.SQL_SESSIONS_DEVICE_DETAILS = "False"
    with pytest.raises(ImproperlyConfigured, match="SQL_SESSIONS_DEVICE_DETAILS is 'False'"):
        conf.DEVICE_DETAILS.get()


def test_hints_show_the_defaults() -> None:
    assert conf.CLEANUP_BATCH_SIZE.fix() == "Remove the setting to use the default of 1000."
    assert conf.IPV6_PREFIX.fix() == "Remove the setting to keep /48 networks (the default)."
    assert all(setting.fix() and "{" not in setting.fix() for setting in conf.SETTINGS)


def test_one_declaration_per_setting() -> None:
    names = [setting.name for setting in conf.SETTINGS]
    ids = [setting.check_id for setting in conf.SETTINGS]
    assert len(set(names)) == len(names) == 15
    assert len(set(ids)) == len(ids)
    assert all(name.startswith("SQL_SESSIONS_") for name in names)


def test_cached_results_are_kept_until_a_setting_changes(settings: Any) -> None:
    calls: list[int] = []

    @conf.cached
    def derived() -> int:
        calls.append(1)
        value = conf.TOUCH_AFTER.get()
        if value == 7:
            raise ImproperlyConfigured("seven")
        return value * 2

    settings.SQL_SESSIONS_TOUCH_AFTER = 10
    assert (derived(), derived(), len(calls)) == (20, 20, 1)
    settings.SQL_SESSIONS_TOUCH_AFTER = 7
    for _ in range(2):  # raised again each time, never kept
        with pytest.raises(ImproperlyConfigured, match="seven"):
            derived()
    assert len(calls) == 3
    settings.SQL_SESSIONS_TOUCH_AFTER = 11
    assert (derived(), derived(), len(calls)) == (22, 22, 4)
