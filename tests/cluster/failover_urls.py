"""
The failover site's pages (tests/cluster/failover_site.py). A failed request
answers 500 with the exception's class and first line, so that the clients
can report what each failure was.
"""

import sys

from django.contrib.auth import get_user_model, login
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.urls import path


def log_in(request: HttpRequest, username: str) -> HttpResponse:
    login(request, get_user_model()._default_manager.get(username=username))
    return HttpResponse("ok")


@login_required
def count(request: HttpRequest) -> HttpResponse:
    # One more request of a logged-in client: the user's name and the new count.
    n = request.session.get("n", 0) + 1
    request.session["n"] = n
    return HttpResponse(f"{request.user.get_username()} {n}")


def start(request: HttpRequest) -> HttpResponse:
    # A new anonymous session, saved with the response.
    request.session["started"] = True
    return HttpResponse("ok")


def server_error(request: HttpRequest) -> HttpResponse:
    # Called by Django's handler while the exception is being handled.
    error = sys.exc_info()[1]
    first_line = (str(error).strip().splitlines() or [""])[0]
    return HttpResponse(f"{type(error).__name__}: {first_line}", status=500)


handler500 = server_error
urlpatterns = [
    path("login/<str:username>/", log_in),
    path("count/", count),
    path("start/", start),
]
