from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST


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
