from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from django_sql_sessions.user_sessions import (
    list_sessions,
    revoke_all_sessions,
    revoke_session,
)


def counter(request: HttpRequest) -> HttpResponse:
    """Count this browser's visits in its session."""
    request.session["visits"] = request.session.get("visits", 0) + 1
    return render(
        request,
        "example/counter.html",
        {"visits": request.session["visits"], "session_key": request.session.session_key},
    )


@require_POST
def regenerate(request: HttpRequest) -> HttpResponse:
    """Give the session a new key, keeping its data, as login() does."""
    request.session.cycle_key()
    return redirect("counter")


@require_POST
def remove(request: HttpRequest) -> HttpResponse:
    """Delete the session and its row, as logout() does."""
    request.session.flush()
    return redirect("counter")


@login_required
def your_sessions(request: HttpRequest) -> HttpResponse:
    """The signed-in user's sessions, with the device each was last used from."""
    return render(
        request,
        "example/sessions.html",
        {"sessions": list_sessions(request.user, current=request.session)},
    )


@login_required
@require_POST
def revoke(request: HttpRequest) -> HttpResponse:
    """Log one of the user's sessions out; an id that is not theirs does nothing."""
    if revoke_session(request.user, request.POST.get("session", "")):
        messages.success(request, "That session is logged out.")
    return redirect("sessions")


@login_required
@require_POST
def revoke_others(request: HttpRequest) -> HttpResponse:
    """Log out every other device, keeping this one."""
    count = revoke_all_sessions(request.user, keep=request.session)
    messages.success(request, f"Logged out {count} other session(s).")
    return redirect("sessions")
