"""
Views for tests that go through the middleware, each in a sync and an async
version, so both paths are proved to record the same thing.
"""

from __future__ import annotations

import datetime

from django.contrib import admin
from django.contrib.auth import (
    alogin,
    alogout,
    aupdate_session_auth_hash,
    get_user_model,
    login,
    logout,
    update_session_auth_hash,
)
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseServerError
from django.urls import include, path

from django_sql_sessions.user_sessions import arevoke_all_sessions, revoke_all_sessions


def whoami(request: HttpRequest) -> HttpResponse:
    user = request.user
    return HttpResponse(str(user.pk) if user.is_authenticated else "anonymous")


async def awhoami(request: HttpRequest) -> HttpResponse:
    user = await request.auser()
    return HttpResponse(str(user.pk) if user.is_authenticated else "anonymous")


def log_in(request: HttpRequest, pk: str) -> HttpResponse:
    login(request, get_user_model()._default_manager.get(pk=pk))
    return HttpResponse("ok")


async def alog_in(request: HttpRequest, pk: str) -> HttpResponse:
    await alogin(request, await get_user_model()._default_manager.aget(pk=pk))
    return HttpResponse("ok")


def log_out(request: HttpRequest) -> HttpResponse:
    logout(request)
    return HttpResponse("ok")


async def alog_out(request: HttpRequest) -> HttpResponse:
    await alogout(request)
    return HttpResponse("ok")


def read(request: HttpRequest) -> HttpResponse:
    return HttpResponse(str(request.session.get("value")))


async def aread(request: HttpRequest) -> HttpResponse:
    return HttpResponse(str(await request.session.aget("value")))


def write(request: HttpRequest, value: str) -> HttpResponse:
    request.session["value"] = value
    return HttpResponse("ok")


async def awrite(request: HttpRequest, value: str) -> HttpResponse:
    await request.session.aset("value", value)
    return HttpResponse("ok")


def plain(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


def expire_in(request: HttpRequest, seconds: int) -> HttpResponse:
    request.session["value"] = "short"
    request.session.set_expiry(seconds)
    return HttpResponse("ok")


def expire_at_naive(request: HttpRequest, iso: str) -> HttpResponse:
    # A datetime without a time zone, which set_expiry() accepts.
    request.session["value"] = "naive"
    request.session.set_expiry(datetime.datetime.fromisoformat(iso))
    return HttpResponse("ok")


def revoked_then_password_changed(request: HttpRequest) -> HttpResponse:
    # Another device revokes every session of the user (as after a password
    # reset there) while this request is under way; this request then changes
    # the password, which cycles the key of a session that no longer exists.
    user = request.user
    assert user.is_authenticated
    revoke_all_sessions(user)
    update_session_auth_hash(request, user)
    return HttpResponse("ok")


async def arevoked_then_password_changed(request: HttpRequest) -> HttpResponse:
    user = await request.auser()
    assert user.is_authenticated
    await arevoke_all_sessions(user)
    await aupdate_session_auth_hash(request, user)
    return HttpResponse("ok")


@login_required
def count(request: HttpRequest) -> HttpResponse:
    # One more request of a logged-in client: the user's id and the new count.
    n = request.session.get("n", 0) + 1
    request.session["n"] = n
    return HttpResponse(f"{request.user.pk} {n}")


def read_then_fail(request: HttpRequest) -> HttpResponse:
    request.session.get("value")
    return HttpResponseServerError("failed")


urlpatterns = [
    # The package's "your sessions" pages, sync and async (tests/test_views.py).
    path("account/sessions/", include("django_sql_sessions.urls")),
    path(
        "async/account/sessions/",
        include("django_sql_sessions.async_urls", namespace="async_sql_sessions"),
    ),
    path("plain/", plain),
    path("expire-in/<int:seconds>/", expire_in),
    path("expire-at-naive/<str:iso>/", expire_at_naive),
    path("revoked-then-password-changed/", revoked_then_password_changed),
    path("async/revoked-then-password-changed/", arevoked_then_password_changed),
    path("read-then-fail/", read_then_fail),
    path("count/", count),
    path("admin/", admin.site.urls),
    path("whoami/", whoami),
    path("async/whoami/", awhoami),
    path("login/<str:pk>/", log_in),
    path("async/login/<str:pk>/", alog_in),
    path("logout/", log_out),
    path("async/logout/", alog_out),
    path("read/", read),
    path("async/read/", aread),
    path("write/<str:value>/", write),
    path("async/write/<str:value>/", awrite),
]
