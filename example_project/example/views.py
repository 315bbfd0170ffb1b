"""
The same pages twice: plain views, and async views that use Django's async
session API (aget, aset, acycle_key, aflush) and the package's async twins.
Under WSGI both work; under ASGI (uvicorn example.asgi:application) the async
ones run on the event loop and only the database work goes to a thread.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from django_sql_sessions.user_sessions import (
    alist_sessions,
    arevoke_all_sessions,
    arevoke_session,
    list_sessions,
    revoke_all_sessions,
    revoke_session,
)


@dataclasses.dataclass(frozen=True)
class Routes:
    """The URL names a page's links and forms use: the sync or the async views."""

    label: str
    counter: str
    regenerate: str
    remove: str
    sessions: str
    revoke: str
    revoke_others: str
    other: str  # the counter of the other kind, for the nav's switch


SYNC = Routes(
    label="sync",
    counter="counter",
    regenerate="regenerate",
    remove="remove",
    sessions="sessions",
    revoke="revoke",
    revoke_others="revoke_others",
    other="async_counter",
)
ASYNC = Routes(
    label="async",
    counter="async_counter",
    regenerate="async_regenerate",
    remove="async_remove",
    sessions="async_sessions",
    revoke="async_revoke",
    revoke_others="async_revoke_others",
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


@login_required
def your_sessions(request: HttpRequest) -> HttpResponse:
    """The signed-in user's sessions, with the device each was last used from."""
    sessions = list_sessions(request.user, current=request.session)
    return render(request, "example/sessions.html", {"sessions": sessions, "routes": SYNC})


@login_required
@require_POST
def revoke(request: HttpRequest) -> HttpResponse:
    """Log one of the user's sessions out; an id that is not theirs does nothing."""
    if revoke_session(request.user, request.POST.get("session", "")):
        messages.success(request, "That session is logged out.")
    return redirect(SYNC.sessions)


@login_required
@require_POST
def revoke_others(request: HttpRequest) -> HttpResponse:
    """Log out every other device, keeping this one."""
    count = revoke_all_sessions(request.user, keep=request.session)
    messages.success(request, logged_out(count))
    return redirect(SYNC.sessions)


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


@login_required
async def ayour_sessions(request: HttpRequest) -> HttpResponse:
    """See your_sessions()."""
    user = await request.auser()
    sessions = await alist_sessions(user, current=request.session)
    context = {"sessions": sessions, "routes": ASYNC, "user": user}
    return render(request, "example/sessions.html", context)


@login_required
@require_POST
async def arevoke(request: HttpRequest) -> HttpResponse:
    """See revoke()."""
    user = await request.auser()
    if await arevoke_session(user, request.POST.get("session", "")):
        messages.success(request, "That session is logged out.")
    return redirect(ASYNC.sessions)


@login_required
@require_POST
async def arevoke_others(request: HttpRequest) -> HttpResponse:
    """See revoke_others()."""
    user = await request.auser()
    count = await arevoke_all_sessions(user, keep=request.session)
    messages.success(request, logged_out(count))
    return redirect(ASYNC.sessions)


def logged_out(count: int) -> str:
    return f"Logged out {count} other session{'' if count == 1 else 's'}."


def _counter_context(request: HttpRequest, visits: int, routes: Routes) -> dict[str, Any]:
    return {"visits": visits, "session_key": request.session.session_key, "routes": routes}
