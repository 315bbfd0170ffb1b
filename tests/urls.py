"""
Views for tests that go through the middleware, each in a sync and an async
version, so both paths are proved to record the same thing.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import alogin, alogout, get_user_model, login, logout
from django.http import HttpRequest, HttpResponse
from django.urls import path


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


urlpatterns = [
    path("plain/", plain),
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
