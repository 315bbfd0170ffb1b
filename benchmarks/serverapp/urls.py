"""
One session each way a page uses it, as a sync view (gunicorn) and as an
async view on the async session API (uvicorn):

- read: reads a value;
- write: increments a counter (load, then a save after the view);
- create: the client sends no cookie, so every request makes a new session.
"""

from django.http import HttpRequest, HttpResponse
from django.urls import path


def read(request: HttpRequest) -> HttpResponse:
    return HttpResponse(str(request.session.get("n", 0)))


def write(request: HttpRequest) -> HttpResponse:
    request.session["n"] = request.session.get("n", 0) + 1
    return HttpResponse(str(request.session["n"]))


async def aread(request: HttpRequest) -> HttpResponse:
    return HttpResponse(str(await request.session.aget("n", 0)))


async def awrite(request: HttpRequest) -> HttpResponse:
    n = await request.session.aget("n", 0) + 1
    await request.session.aset("n", n)
    return HttpResponse(str(n))


urlpatterns = [
    path("sync/read", read),
    path("sync/write", write),
    path("sync/create", write),
    path("async/read", aread),
    path("async/write", awrite),
    path("async/create", awrite),
]
