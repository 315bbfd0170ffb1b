"""
URLs of benchmarks/pages.py: the package's "your sessions" pages, as the
README includes them, and the floor page they are compared with.
"""

from django.contrib.auth import get_user_model, login
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import include, path

USERNAME = "benchmark"


def sign_in(request: HttpRequest) -> HttpResponse:
    """Django's login() of the benchmark's user: a session as a real login makes it."""
    login(request, get_user_model().objects.get(username=USERNAME))
    return HttpResponse()


@login_required
def floor(request: HttpRequest) -> HttpResponse:
    """A signed-in page on the same base template, listing nothing."""
    return render(request, "django_sql_sessions/base.html")


urlpatterns = [
    path("account/sessions/", include("django_sql_sessions.urls")),
    path("floor/", floor),
    path("sign-in/", sign_in),
]
