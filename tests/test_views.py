"""
The "your sessions" pages (django_sql_sessions.views), sync through the test
Client and async through AsyncClient, on each database and engine. The test
settings have no CsrfViewMiddleware: the revoke views protect themselves.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings as django_settings
from django.test import AsyncClient, Client

from django_sql_sessions.devices import device_name
from django_sql_sessions.models import Session
from django_sql_sessions.storage import hash_key
from tests.helpers import logged_in_client

pytestmark = pytest.mark.usefixtures("engine")

SYNC, ASYNC = "/account/sessions/", "/async/account/sessions/"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


class Browser:
    """A Client for the sync pages, an AsyncClient for the async ones, both called alike."""

    def __init__(self, prefix: str, client: Client | None = None, **defaults: Any) -> None:
        self.prefix = prefix
        self.client = client or Client(**defaults)
        self.asynchronous = AsyncClient(**defaults) if prefix == ASYNC else None
        if self.asynchronous is not None:
            self.asynchronous.cookies = self.client.cookies

    def request(self, method: str, path: str, data: Any = None) -> Any:
        if self.asynchronous is None:
            return getattr(self.client, method)(self.prefix + path, data)
        response = async_to_sync(getattr(self.asynchronous, method))(self.prefix + path, data)
        self.client.cookies = self.asynchronous.cookies
        return response

    def get(self, path: str = "") -> Any:
        return self.request("get", path)

    def post(self, path: str, data: Any = None) -> Any:
        return self.request("post", path, data or {})

    @property
    def session_id(self) -> str:
        return hash_key(self.client.cookies["sessionid"].value)


def listed(page: Any) -> list[str]:
    return re.findall(r'name="session" value="([0-9a-f]{64})"', page.content.decode())


def messages(page: Any) -> list[str]:
    return re.findall(r'class="message">([^<]*)<', page.content.decode())


def browsers(user: Any, prefix: str, count: int = 2) -> list[Browser]:
    """`count` browsers logged in as `user` through the middleware."""
    return [Browser(prefix, logged_in_client(user)) for _ in range(count)]


prefixes = pytest.mark.parametrize("prefix", [SYNC, ASYNC], ids=["sync", "async"])


@prefixes
def test_login_required(alias: str, prefix: str) -> None:
    page = Browser(prefix).get()
    assert page.status_code == 302
    assert page["Location"] == f"{django_settings.LOGIN_URL}?next={prefix}"
    for action in ("revoke/", "revoke-others/"):
        page = Browser(prefix).post(action, {"session": "0" * 64})
        assert page.status_code == 302
        assert page["Location"].startswith(f"{django_settings.LOGIN_URL}?next=")


@prefixes
def test_the_list_marks_this_session_and_names_devices(
    alias: str, make_user: Any, prefix: str, settings: Any
) -> None:
    settings.SQL_SESSIONS_DEVICE_DETAILS = True
    user = make_user()
    laptop = Browser(prefix, logged_in_client(user))
    phone = Client(HTTP_USER_AGENT=FIREFOX)
    assert phone.get(f"/login/{user.pk}/").status_code == 200
    page = laptop.get()
    assert page.status_code == 200
    html = page.content.decode()
    # The other session by its public id (the key hash), never a key.
    assert listed(page) == [hash_key(phone.cookies["sessionid"].value)]
    assert laptop.client.cookies["sessionid"].value not in html
    assert phone.cookies["sessionid"].value not in html
    [current] = re.findall(r'<tr class="session current"[^>]*>(.*?)</tr>', html, re.S)
    assert "this browser" in current
    assert 'name="session"' not in current  # no button to log itself out
    # The device as the API names it (ua-parser or not).
    assert f'title="{FIREFOX}">{device_name(FIREFOX)}<' in html
    # The forms post to the views of the same kind (the URL namespace's instance).
    assert f'action="{prefix}revoke/"' in html
    assert f'action="{prefix}revoke-others/"' in html
    assert page.templates[0].name == "django_sql_sessions/session_list.html"
    assert "django_sql_sessions/base.html" in [t.name for t in page.templates]


@prefixes
def test_revoke_another_session_by_post(alias: str, make_user: Any, prefix: str) -> None:
    user = make_user()
    laptop, phone = browsers(user, prefix)
    page = laptop.post("revoke/", {"session": phone.session_id})
    assert page.status_code == 302
    assert page["Location"] == prefix
    assert list(Session.objects.values_list("key_hash", flat=True)) == [laptop.session_id]
    page = laptop.get()
    assert messages(page) == ["That session is logged out."]
    assert listed(page) == []
    assert phone.get().status_code == 302  # logged out at its next request
    assert laptop.get().status_code == 200


@prefixes
def test_get_revokes_nothing(alias: str, make_user: Any, prefix: str) -> None:
    user = make_user()
    laptop, phone = browsers(user, prefix)
    for action in ("revoke/", "revoke-others/"):
        page = laptop.request("get", action, {"session": phone.session_id})
        assert page.status_code == 405
    assert Session.objects.filter(user_id=str(user.pk)).count() == 2


@prefixes
def test_csrf_is_enforced(alias: str, make_user: Any, prefix: str) -> None:
    user = make_user()
    laptop, phone = browsers(user, prefix)
    strict = Browser(prefix, Client(enforce_csrf_checks=True), enforce_csrf_checks=True)
    strict.client.cookies = laptop.client.cookies
    if strict.asynchronous is not None:
        strict.asynchronous.cookies = laptop.client.cookies
    for action in ("revoke/", "revoke-others/"):
        assert strict.post(action, {"session": phone.session_id}).status_code == 403
    assert Session.objects.filter(user_id=str(user.pk)).count() == 2
    # With the token from the page's form, as a browser sends it.
    page = strict.get()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode())
    assert token is not None
    data = {"session": phone.session_id, "csrfmiddlewaretoken": token[1]}
    assert strict.post("revoke/", data).status_code == 302
    assert Session.objects.filter(user_id=str(user.pk)).count() == 1


@prefixes
def test_another_users_session_is_not_revoked(alias: str, make_user: Any, prefix: str) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    [mallory] = browsers(alice, prefix, count=1)
    [victim] = browsers(bob, prefix, count=1)
    anonymous = Client()
    anonymous.get("/write/x/")
    for session_id in (
        victim.session_id,
        hash_key(anonymous.cookies["sessionid"].value),
        victim.client.cookies["sessionid"].value,  # a key, not an id: never accepted
        "not-an-id",
    ):
        page = mallory.post("revoke/", {"session": session_id})
        assert page.status_code == 302
        assert messages(mallory.get()) == []
    assert Session.objects.count() == 3
    assert victim.get().status_code == 200


@prefixes
def test_this_session_is_not_revoked_by_its_id(alias: str, make_user: Any, prefix: str) -> None:
    [laptop] = browsers(make_user(), prefix, count=1)
    laptop.post("revoke/", {"session": laptop.session_id})
    assert laptop.get().status_code == 200


@prefixes
def test_log_out_everywhere_else_keeps_this_session(
    alias: str, make_user: Any, prefix: str
) -> None:
    user, other = make_user("alice"), make_user("bob")
    laptop, phone, tablet = browsers(user, prefix, count=3)
    [bobs] = browsers(other, prefix, count=1)
    page = laptop.post("revoke-others/")
    assert page.status_code == 302
    assert page["Location"] == prefix
    assert messages(laptop.get()) == ["Logged out 2 other sessions."]
    assert set(Session.objects.values_list("key_hash", flat=True)) == {
        laptop.session_id,
        bobs.session_id,
    }
    assert phone.get().status_code == 302
    assert tablet.get().status_code == 302
    assert laptop.get().status_code == 200
    assert bobs.get().status_code == 200


@prefixes
def test_revoking_works_without_the_messages_framework(
    alias: str, make_user: Any, prefix: str, settings: Any
) -> None:
    # A project without django.contrib.messages' middleware: the pages say
    # nothing, and still log the other session out.
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if "messages" not in m]
    user = make_user()
    laptop, phone = browsers(user, prefix)
    assert laptop.post("revoke/", {"session": phone.session_id}).status_code == 302
    assert laptop.post("revoke-others/").status_code == 302
    assert list(Session.objects.values_list("key_hash", flat=True)) == [laptop.session_id]
