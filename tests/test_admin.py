from __future__ import annotations

import datetime
import html
import re
from typing import Any

import pytest
from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.auth import SESSION_KEY
from django.test import Client
from django.utils import timezone

from django_sql_sessions.devices import device_name
from django_sql_sessions.models import Session
from tests.helpers import key, logged_in_client, row_of, saved_session

# Each test runs on the db engine and on the cached engine (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("engine")

CHANGELIST = "/admin/django_sql_sessions/session/"


@pytest.fixture
def admin_client(alias: str, make_user: Any) -> Client:
    admin = make_user("admin", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(admin)
    return client


@pytest.fixture
def viewer_client(alias: str, make_user: Any) -> Client:
    """Staff with the view permission on sessions and nothing else."""
    from django.contrib.auth.models import Permission

    viewer = make_user("viewer", is_staff=True)
    viewer.user_permissions.add(
        Permission.objects.get(
            codename="view_session", content_type__app_label="django_sql_sessions"
        )
    )
    client = Client()
    client.force_login(viewer)
    return client


# Every kind of lookup a query string could try on a column: comparisons
# narrow a value down as well as a prefix does.
PROBES = (
    *("", "__exact", "__iexact", "__startswith", "__contains", "__regex"),
    *("__gte", "__lt", "__in", "__isnull", "__year"),
)


def test_no_lookup_on_a_column_is_allowed(
    alias: str, viewer_client: Client, make_user: Any, settings: Any
) -> None:
    settings.SQL_SESSIONS_DEVICE_DETAILS = True
    victim = logged_in_client(make_user("victim"))
    victim.get("/write/the-cart-token/", REMOTE_ADDR="203.0.113.7", HTTP_USER_AGENT="Lynx/2.9")
    row = row_of(victim)
    assert all(getattr(row, field.attname) is not None for field in Session._meta.concrete_fields)

    statuses, bodies = {}, []
    # Every column, so that a column added later is covered without a test
    # change; and the other names a filter takes for the key.
    terms = {field.name: field.value_to_string(row) for field in Session._meta.concrete_fields}
    terms |= {"pk": terms["key_hash"], "session_key": victim.cookies["sessionid"].value}
    for name, value in terms.items():
        for probe in PROBES:
            term = {"__isnull": "False", "__year": value[:4]}.get(probe, value)
            if probe in ("__startswith", "__contains", "__regex"):
                term = value[: len(value) // 2]  # grown a character at a time
            response = viewer_client.get(CHANGELIST, {name + probe: term})
            statuses[name + probe] = response.status_code
            bodies.append(response.content.decode())
    assert {lookup: status for lookup, status in statuses.items() if status != 400} == {}
    assert not [body for body in bodies if row.data in body or str(row) in body]
    # Not beside an allowed parameter either.
    query = {"state": "active", "data__startswith": row.data[:10]}
    assert viewer_client.get(CHANGELIST, query).status_code == 400


def test_the_lookups_the_admin_offers_still_work(
    alias: str, viewer_client: Client, make_user: Any
) -> None:
    victim = make_user("victim")
    row = row_of(logged_in_client(victim))
    for query in (
        "",
        "?state=active",
        f"?q={victim.pk}",
        "?o=1",
        "?o=-5.2",
        "?p=1",
        "?all=",
        "?_facets=1",
    ):
        response = viewer_client.get(CHANGELIST + query)
        assert response.status_code == 200, query
        assert str(row) in response.content.decode(), query
    response = viewer_client.get(CHANGELIST + "?state=expired")
    assert response.status_code == 200
    assert str(row) not in response.content.decode()


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
    assert cells(page, "network") == cells(page, "device") == []  # not recorded


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


FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:140.0) Gecko/20100101 Firefox/140.0"


def test_device_columns_when_tracked(
    alias: str, admin_client: Client, settings: Any, user_agent_parser: bool
) -> None:
    settings.SQL_SESSIONS_DEVICE_DETAILS = True
    Client(REMOTE_ADDR="203.0.113.7", HTTP_USER_AGENT=FIREFOX).get("/write/x/")
    page = admin_client.get(CHANGELIST).content.decode()
    # The admin's own browser has a row too, recorded without details.
    assert "203.0.113.0" in cells(page, "network")
    # Named with ua-parser, and guessed as well without it.
    named = "Firefox 140 on Windows"
    assert f'<span title="{FIREFOX}">{named}</span>' in cells(page, "device")
    assert "Unknown device" in cells(page, "device")  # the admin's own row
    # The detail page names it and has the user agent whole.
    row = Session.objects.get(user_agent=FIREFOX)
    detail = admin_client.get(f"{CHANGELIST}{row.pk}/change/").content.decode()
    assert named in detail
    assert f'<div class="readonly">{FIREFOX}</div>' in detail


def cells(page: str, column: str) -> list[str]:
    """The changelist's cells of one column, as HTML."""
    return re.findall(rf'<td class="field-{column}">(.*?)</td>', page, re.DOTALL)


def test_the_user_column_names_users(alias: str, admin_client: Client, make_user: Any) -> None:
    alice = make_user("alice")
    saved_session(**{SESSION_KEY: str(alice.pk)})
    carol = make_user("carol")
    carol_id = str(carol.pk)
    saved_session(**{SESSION_KEY: carol_id})
    carol.delete()
    saved_session(value="anonymous cart")
    # Ids no user of this model can have: not an integer, out of range.
    saved_session(**{SESSION_KEY: "abc"})
    saved_session(**{SESSION_KEY: "9" * 30})

    page = admin_client.get(CHANGELIST).content.decode()
    admin = type(alice)._default_manager.get(username="admin")
    # Users who exist link to their page, as Django links a foreign key.
    assert sorted(cells(page, "user")) == sorted(
        [
            user_link(admin),  # the admin's own session
            user_link(alice),
            f"{carol_id} (deleted)",
            "anonymous",
            "abc (deleted)",
            f"{'9' * 30} (deleted)",
        ]
    )
    # The exact user id search is unchanged, and names the user as well.
    assert cells(admin_client.get(CHANGELIST, {"q": alice.pk}).content.decode(), "user") == [
        user_link(alice)
    ]
    # The detail page: the link, in place of a bare "User id".
    row = Session.objects.get(user_id=str(alice.pk))
    detail = admin_client.get(f"{CHANGELIST}{row.pk}/change/").content.decode()
    assert readonly(detail, "user") == user_link(alice)
    assert "User id" not in detail
    assert admin_client.get(f"/admin/auth/user/{alice.pk}/change/").status_code == 200


def user_link(user: Any) -> str:
    return f'<a href="/admin/auth/user/{user.pk}/change/">{user.get_username()}</a>'


def readonly(page: str, field: str) -> str:
    """A detail page's read-only value of one field, as HTML."""
    found = re.search(
        rf'class="form-row field-{field}">.*?<div class="readonly">(.*?)</div>', page, re.DOTALL
    )
    assert found, field
    return found[1]


def test_the_detail_page_shows_each_date_as_the_admin_formats_dates(
    alias: str, admin_client: Client
) -> None:
    from django.utils import formats

    store = saved_session(**{SESSION_KEY: "4242"})
    row = Session.objects.for_key(key(store)).get()
    page = admin_client.get(f"{CHANGELIST}{row.pk}/change/").content.decode()
    for field, value in [
        ("created_at", row.created_at),
        ("last_activity", row.last_activity),
        ("expire_date", row.expire_date),
    ]:
        # "Dec. 4, 2026, 10:33 p.m.", each of them.
        shown = timezone.localtime(value) if timezone.is_aware(value) else value
        assert readonly(page, field) == formats.localize(shown)
    assert str(row.last_activity) not in page  # not "2026-12-04 22:33:46.760214+00:00"


def test_a_page_of_users_is_named_with_one_query(
    alias: str, admin_client: Client, make_user: Any, settings: Any, user_agent_parser: bool
) -> None:
    from django.contrib.auth import get_user_model
    from django.db import connections, router
    from django.test.utils import CaptureQueriesContext

    user_model = get_user_model()
    users_db = connections[router.db_for_read(user_model)]
    sessions_db = connections[alias]
    user_table = users_db.ops.quote_name(user_model._meta.db_table)
    session_table = sessions_db.ops.quote_name(Session._meta.db_table)

    def get_page() -> tuple[str, list[str], list[str]]:
        with (
            CaptureQueriesContext(users_db) as on_users,
            CaptureQueriesContext(sessions_db) as on_sessions,
        ):
            page = admin_client.get(CHANGELIST).content.decode()
        return (
            page,
            [q["sql"] for q in on_users.captured_queries if user_table in q["sql"]],
            [q["sql"] for q in on_sessions.captured_queries],
        )

    _page, alone, _sql = get_page()  # the admin's own session only
    settings.SQL_SESSIONS_DEVICE_DETAILS = True
    users = [make_user(f"user{n}") for n in range(30)]
    for user in users:
        for _device in range(2):
            saved_session(**{SESSION_KEY: str(user.pk)})
    # Devices named on the page cost no query either.
    Session.objects.filter(user_id__isnull=False).update(user_agent=FIREFOX)
    page, on_users, on_sessions = get_page()

    assert {user_link(user) for user in users} <= set(cells(page, "user"))
    named = [cell for cell in cells(page, "device") if device_name(FIREFOX) in cell]
    assert len(named) == 61  # and the admin's own
    # As many queries on users for 61 rows of 31 users as for one row.
    assert len(on_users) == len(alone)
    lookups = [sql for sql in on_users if " IN (" in sql]
    assert len(lookups) == 1
    # No join: the sessions' query never reads the users' table, which on
    # every server but SQLite's is in another database.
    assert not [
        sql for sql in on_users + on_sessions if user_table in sql and session_table in sql
    ]
    if sessions_db is not users_db:
        assert not [sql for sql in on_sessions if user_table in sql]
    # The page's rows are read once, though named before the template runs.
    reads = [sql for sql in on_sessions if "ORDER BY" in sql and "COUNT(" not in sql.upper()]
    assert len(reads) == 1


def test_the_user_column_converts_ids_to_the_user_models_keys(
    alias: str, settings: Any, make_user: Any
) -> None:
    from django.contrib import admin

    from django_sql_sessions.admin import USER_LABEL, label_users

    settings.AUTH_USER_MODEL = "accounts.UUIDUser"
    user = make_user("dora")
    rows = [
        Session(user_id=str(user.pk)),
        Session(user_id=user.pk.hex),  # the same user, written otherwise
        Session(user_id="not-a-uuid"),
        Session(user_id=None),
    ]
    # Named, not linked: this user model has no page in the admin.
    label_users(rows, admin.site)
    assert [getattr(row, USER_LABEL) for row in rows] == [
        "dora",
        "dora",
        "not-a-uuid (deleted)",
        "anonymous",
    ]


def test_the_device_column_is_short_and_escaped(
    alias: str, admin_client: Client, settings: Any, user_agent_parser: bool
) -> None:
    settings.SQL_SESSIONS_DEVICE_DETAILS = True
    agent = "<script>alert(1)</script> Mozilla/5.0 " + "(X11; Linux x86_64) " * 20
    Client(REMOTE_ADDR="203.0.113.7", HTTP_USER_AGENT=agent).get("/write/x/")
    stored = Session.objects.get(user_agent__isnull=False).user_agent
    assert stored is not None
    assert len(stored) == 255

    page = admin_client.get(CHANGELIST).content.decode()
    [cell] = [cell for cell in cells(page, "device") if "Mozilla" in cell]
    span = re.fullmatch(r'<span title="(.*)">(.*)</span>', cell)
    assert span is not None
    title, text = span.groups()
    assert html.unescape(title) == stored
    assert html.unescape(text.replace("<wbr>", "")) == device_name(stored)
    # ua-parser finds the system, and so does the guess without it.
    assert html.unescape(text.replace("<wbr>", "")) == "Unknown browser on Linux"
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in cell
    # Whole on the detail page.
    row = Session.objects.get(user_agent__isnull=False)
    assert (
        html.escape(stored) in admin_client.get(f"{CHANGELIST}{row.pk}/change/").content.decode()
    )


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


def test_revoking_needs_the_delete_permission(alias: str, viewer_client: Client) -> None:
    client = viewer_client
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
