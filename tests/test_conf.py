from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from django_sql_sessions import conf


def test_defaults(settings: Any) -> None:
    del settings.SQL_SESSIONS_TABLE
    assert conf.db_alias() == "default"
    assert conf.table_name() == "django_sql_sessions_session"
    assert conf.cleanup_batch_size() == 1000


def test_settings_are_read_when_used(settings: Any) -> None:
    settings.SQL_SESSIONS_DB_ALIAS = "secondary"
    settings.SQL_SESSIONS_TABLE = "web_sessions"
    settings.SQL_SESSIONS_CLEANUP_BATCH_SIZE = 250
    assert conf.db_alias() == "secondary"
    assert conf.table_name() == "web_sessions"
    assert conf.cleanup_batch_size() == 250


def test_unknown_alias_names_the_setting(settings: Any) -> None:
    settings.SQL_SESSIONS_DB_ALIAS = "sesions"
    with pytest.raises(
        ImproperlyConfigured, match=r"SQL_SESSIONS_DB_ALIAS is 'sesions'.*'default'"
    ):
        conf.db_alias()


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
        conf.table_name()


def test_table_name_length_limit(settings: Any) -> None:
    settings.SQL_SESSIONS_TABLE = "s" * 63
    assert conf.table_name() == "s" * 63
    settings.SQL_SESSIONS_TABLE = "s" * 64
    with pytest.raises(ImproperlyConfigured, match=r"64 characters long.*63"):
        conf.table_name()


@pytest.mark.parametrize("value", [0, -1, 4001, "100", 1.5, True, None])
def test_batch_size_must_be_a_whole_number_in_range(settings: Any, value: object) -> None:
    settings.SQL_SESSIONS_CLEANUP_BATCH_SIZE = value
    with pytest.raises(ImproperlyConfigured, match="SQL_SESSIONS_CLEANUP_BATCH_SIZE is"):
        conf.cleanup_batch_size()


@pytest.mark.parametrize("value", [1, 4000])
def test_batch_size_bounds(settings: Any, value: int) -> None:
    settings.SQL_SESSIONS_CLEANUP_BATCH_SIZE = value
    assert conf.cleanup_batch_size() == value


def test_device_and_activity_defaults(settings: Any) -> None:
    assert conf.device_details() is False
    assert conf.ip_prefixes() == (24, 48)
    assert conf.activity_interval() == 300
    settings.SQL_SESSIONS_IPV4_PREFIX = 32
    settings.SQL_SESSIONS_IPV6_PREFIX = 0
    settings.SQL_SESSIONS_ACTIVITY_INTERVAL = 0
    assert conf.ip_prefixes() == (32, 0)
    assert conf.activity_interval() == 0


@pytest.mark.parametrize(
    ("setting", "value", "accessor"),
    [
        ("SQL_SESSIONS_DEVICE_DETAILS", "False", conf.device_details),
        ("SQL_SESSIONS_IPV4_PREFIX", 40, conf.ip_prefixes),
        ("SQL_SESSIONS_IPV6_PREFIX", None, conf.ip_prefixes),
        ("SQL_SESSIONS_ACTIVITY_INTERVAL", "300", conf.activity_interval),
    ],
)
def test_invalid_device_settings_raise_naming_the_setting(
    settings: Any, setting: str, value: object, accessor: Any
) -> None:
    setattr(settings, setting, value)
    with pytest.raises(ImproperlyConfigured, match=setting):
        accessor()
