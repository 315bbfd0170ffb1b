from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.auth import SESSION_KEY
from django.test import Client
from django.utils import timezone

from django_sql_sessions.models import Session
from tests.helpers import key, saved_session

CHANGELIST = "/admin/django_sql_sessions/session/"


@pytest.fixture
def admin_client(alias: str, make_user: Any) -> Client:
    admin = make_user("admin", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(admin)
    return client


def test_lists_who_is_logged_in_without_keys_or_data(alias: str, admin_client: Client) -> None:
    store = saved_session(**{SESSION_KEY: "4242", "secret": "the-cart-token"})
    page = admin_client.get(CHANGELIST).content.decode()
    row = Session.objects.for_key(key(store)).get()
    assert "4242" in page
    assert str(row) in page  # a prefix of the key hash names the row
    assert key(store) not in page
    assert admin_client.cookies["sessionid"].value not in page
    assert row.data not in page
    assert "the-cart-token" not in page
    assert "IP address" not in page  # device details are off


def test_detail_view_is_read_only_and_shows_no_data(alias: str, admin_client: Client) -> None:
    store = saved_session(**{SESSION_KEY: "4242", "secret": "the-cart-token"})
    row = Session.objects.for_key(key(store)).get()
    response = admin_client.get(f"{CHANGELIST}{row.pk}/change/")
    page = response.content.decode()
    assert response.status_code == 200
    assert "4242" in page
    assert "the-cart-token" not in page
    assert row.data not in page
    assert key(store) not in page
    assert 'type="submit" value="Save"' not in page
    assert admin_client.post(f"{CHANGELIST}{row.pk}/change/", {"user_id": "1"}).status_code == 403
    assert Session.objects.for_key(key(store)).get().user_id == "4242"


def test_no_add_form(alias: str, admin_client: Client) -> None:
    assert admin_client.get(f"{CHANGELIST}add/").status_code == 403


def test_state_filter_and_user_search(alias: str, admin_client: Client) -> None:
    live = saved_session(**{SESSION_KEY: "1001"})
    gone = saved_session(**{SESSION_KEY: "1002"})
    Session.objects.for_key(key(gone)).update(
        expire_date=timezone.now() - datetime.timedelta(minutes=1)
    )
    live_row = str(Session.objects.for_key(key(live)).get())
    gone_row = str(Session.objects.for_key(key(gone)).get())

    def shown(query: str) -> set[str]:
        page = admin_client.get(CHANGELIST + query).content.decode()
        return {name for name in (live_row, gone_row) if name in page}

    assert shown("?state=active") == {live_row}
    assert shown("?state=expired") == {gone_row}
    assert shown("?q=1002") == {gone_row}
    assert shown("?q=100") == set()  # exact user ids only
    assert shown(f"?q={live.session_key}") == set()  # keys are not searchable


def test_device_columns_when_tracked(alias: str, admin_client: Client, settings: Any) -> None:
    settings.SQL_SESSIONS_DEVICE_DETAILS = True
    Client(REMOTE_ADDR="203.0.113.7", HTTP_USER_AGENT="Lynx/2.9").get("/write/x/")
    page = admin_client.get(CHANGELIST).content.decode()
    assert "IP address" in page
    assert "203.0.113.0" in page
    assert "Lynx/2.9" in page


def test_revoke_action(alias: str, admin_client: Client) -> None:
    victims = [saved_session(**{SESSION_KEY: "77"}) for _ in range(2)]
    bystander = saved_session(**{SESSION_KEY: "78"})
    rows = [Session.objects.for_key(key(v)).get() for v in victims]
    actions = admin_client.get(CHANGELIST).context["action_form"].fields["action"].choices
    assert [name for name, _label in actions if name] == ["revoke"]
    response = admin_client.post(
        CHANGELIST, {"action": "revoke", "_selected_action": [row.pk for row in rows]}
    )
    assert response.status_code == 302
    assert not Session.objects.filter(user_id="77").exists()
    assert Session.objects.for_key(key(bystander)).exists()
    logged = LogEntry.objects.filter(action_flag=DELETION)
    assert sorted(entry.object_repr for entry in logged) == sorted(str(row) for row in rows)
    assert all(key(v) not in str(entry.__dict__) for v in victims for entry in logged)
    # The admin's own session survived its revoke.
    assert admin_client.get(CHANGELIST).status_code == 200


def test_revoking_needs_the_delete_permission(alias: str, make_user: Any) -> None:
    from django.contrib.auth.models import Permission

    viewer = make_user("viewer", is_staff=True)
    viewer.user_permissions.add(
        Permission.objects.get(
            codename="view_session", content_type__app_label="django_sql_sessions"
        )
    )
    client = Client()
    client.force_login(viewer)
    victim = saved_session(**{SESSION_KEY: "77"})
    response = client.get(CHANGELIST)
    assert response.status_code == 200
    assert response.context["action_form"] is None
    client.post(
        CHANGELIST,
        {
            "action": "revoke",
            "_selected_action": [Session.objects.for_key(key(victim)).get().pk],
        },
    )
    assert Session.objects.for_key(key(victim)).exists()


def test_the_search_is_an_exact_indexed_lookup(alias: str, admin_client: Client) -> None:
    from django.db import connections
    from django.test.utils import CaptureQueriesContext

    saved_session(**{SESSION_KEY: "1001"})
    with CaptureQueriesContext(connections[alias]) as queries:
        admin_client.get(CHANGELIST + "?q=+1001+")
    searches = [q["sql"] for q in queries.captured_queries if "user_id" in q["sql"]]
    assert searches
    assert all("LIKE" not in sql and "UPPER" not in sql for sql in searches)


def test_the_changelist_counts_no_further_than_the_cap(
    alias: str, admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.db import connections
    from django.test.utils import CaptureQueriesContext

    from django_sql_sessions import admin

    monkeypatch.setattr(admin, "COUNT_CAP", 3)
    for user in range(5):
        saved_session(**{SESSION_KEY: str(user)})
    with CaptureQueriesContext(connections[alias]) as queries:
        response = admin_client.get(CHANGELIST)
    # The admin's own session makes six rows; the count stops at four.
    assert response.context["cl"].result_count == 4
    counts = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]
    assert counts
    assert all("LIMIT 4" in sql or "FETCH" in sql or "TOP" in sql for sql in counts)
    assert admin_client.get(CHANGELIST + "?q=4").context["cl"].result_count == 1
