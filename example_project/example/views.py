"""
The same pages twice: plain views, and async views that use Django's async
session API (aget, aset, acycle_key, aflush). The "your sessions" pages are
the package's (django_sql_sessions.urls and .async_urls, in urls.py).
Under WSGI both work; under ASGI (uvicorn example.asgi:application) the async
ones run on the event loop and only the database work goes to a thread.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST


@dataclasses.dataclass(frozen=True)
class Routes:
    """The URL names a page's links and forms use: the sync or the async views."""

    label: str
    counter: str
    regenerate: str
    remove: str
    sessions: str  # the package's list page, in its URL namespace
    other: str  # the counter of the other kind, for the nav's switch


SYNC = Routes(
    label="sync",
    counter="counter",
    regenerate="regenerate",
    remove="remove",
    sessions="sql_sessions:list",
    other="async_counter",
)
ASYNC = Routes(
    label="async",
    counter="async_counter",
    regenerate="async_regenerate",
    remove="async_remove",
    sessions="async_sql_sessions:list",
    other="counter",
)


def counter(request: HttpRequest) -> HttpResponse:
    """Count this browser's visits in its session."""
    visits = request.session.get("visits", 0) + 1
    request.session["visits"] = visits
    if request.session.session_key is None:
        # A new session has no key until it is saved, and the page shows
        # the end of the key the browser is about to receive.
        request.session.save()
    return render(request, "example/counter.html", _counter_context(request, visits, SYNC))


@require_POST
def regenerate(request: HttpRequest) -> HttpResponse:
    """Give the session a new key, keeping its data, as login() does."""
    request.session.cycle_key()
    return redirect(SYNC.counter)


@require_POST
def remove(request: HttpRequest) -> HttpResponse:
    """Delete the session and its row, as logout() does."""
    request.session.flush()
    return redirect(SYNC.counter)


async def acounter(request: HttpRequest) -> HttpResponse:
    """counter(), without blocking the event loop on the session's database."""
    visits = await request.session.aget("visits", 0) + 1
    await request.session.aset("visits", visits)
    if request.session.session_key is None:
        await request.session.asave()
    context = _counter_context(request, visits, ASYNC)
    # The template must not meet the lazy request.user: loading it there
    # would be a database query on the event loop, which Django refuses.
    context["user"] = await request.auser()
    return render(request, "example/counter.html", context)


@require_POST
async def aregenerate(request: HttpRequest) -> HttpResponse:
    """See regenerate()."""
    await request.session.acycle_key()
    return redirect(ASYNC.counter)


@require_POST
async def aremove(request: HttpRequest) -> HttpResponse:
    """See remove()."""
    await request.session.aflush()
    return redirect(ASYNC.counter)


def routes(request: HttpRequest) -> dict[str, Routes]:
    """
    Context processor: the nav's routes on every page, the package's too,
    which know nothing of them. The view's own "routes" wins where it has one.
    """
    match = request.resolver_match
    is_async = match is not None and match.namespace == "async_sql_sessions"
    return {"routes": ASYNC if is_async else SYNC}


def _counter_context(request: HttpRequest, visits: int, routes: Routes) -> dict[str, Any]:
    return {"visits": visits, "session_key": request.session.session_key, "routes": routes}
