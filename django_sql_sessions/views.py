"""
The "your sessions" pages: the list, "log out this device" and "log out
everywhere else" (README, "Your sessions pages"). Each view has an async twin
for async_urls.py; both go through user_sessions.py, the one door for users'
sessions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.contrib.auth.mixins import LoginRequiredMixin
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.urls import reverse
from django.views.decorators.csrf import csrf_protect
from django.views.generic import TemplateView, View

from django_sql_sessions.keys import is_valid_key
from django_sql_sessions.storage import hash_key
from django_sql_sessions.user_sessions import (
    alist_sessions,
    arevoke_all_sessions,
    arevoke_session,
    list_sessions,
    revoke_all_sessions,
    revoke_session,
)

REVOKED = "That session is logged out."


def logged_out(count: int) -> str:
    return f"Logged out {count} other session{'' if count == 1 else 's'}."


class CsrfProtectMixin:
    """
    csrf_protect as well as the middleware: the revoke views log people out,
    so they stay protected in a project that left CsrfViewMiddleware out, and
    the list page sets the CSRF cookie its forms need there. Around the view
    function, which says whether it is async.
    """

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Callable[..., Any]:
        view: Callable[..., Any] = super().as_view(**initkwargs)  # type: ignore[misc]
        return csrf_protect(view)


class AsyncLoginRequiredMixin(LoginRequiredMixin):
    """LoginRequiredMixin for async views: the user is loaded with request.auser()."""

    async def dispatch(  # type: ignore[override]
        self, request: HttpRequest, *args: Any, **kwargs: Any
    ) -> HttpResponseBase:
        # Set for the mixin, the templates and the auth context processor:
        # the lazy request.user would query the database on the event loop.
        request.user = await request.auser()
        response: Any = super().dispatch(request, *args, **kwargs)
        if isinstance(response, HttpResponseBase):  # the redirect to the login page
            return response
        handled: HttpResponseBase = await response  # the async handler's coroutine
        return handled


class SessionListView(CsrfProtectMixin, LoginRequiredMixin, TemplateView):
    """The signed-in user's sessions, most recently active first, this one marked."""

    template_name = "django_sql_sessions/session_list.html"

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        sessions = list_sessions(request.user, current=request.session)
        return self.render_to_response(self.get_context_data(sessions=sessions, **kwargs))


class AsyncSessionListView(AsyncLoginRequiredMixin, SessionListView):  # type: ignore[misc]
    """See SessionListView."""

    async def get(  # type: ignore[override]
        self, request: HttpRequest, *args: Any, **kwargs: Any
    ) -> HttpResponse:
        sessions = await alist_sessions(request.user, current=request.session)
        return self.render_to_response(self.get_context_data(sessions=sessions, **kwargs))


class RevokeView(CsrfProtectMixin, LoginRequiredMixin, View):
    """POST only: base of the two revoke views, which redirect to the list."""

    http_method_names = ["post"]

    def sessions_url(self) -> str:
        # The instance namespace this view was included under, so a project
        # may include the URLs twice (sync and async) and stay on its own.
        match = self.request.resolver_match
        namespace = match.namespace if match is not None else None
        return reverse("sql_sessions:list", current_app=namespace)


class RevokeSessionView(RevokeView):
    """
    Log out one other session, named by the list's id (its key hash). An id
    that is not one of the user's other sessions changes nothing and says so
    with no message: it is gone already, or never was theirs.
    """

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        session_id = self.other_session_id(request)
        if session_id and revoke_session(request.user, session_id, actor=request.user):
            messages.success(request, REVOKED, fail_silently=True)
        return HttpResponseRedirect(self.sessions_url())

    @staticmethod
    def other_session_id(request: HttpRequest) -> str:
        """The posted id, or "" for this very session: the log out link is for that."""
        session_id = request.POST.get("session", "")
        key = request.session.session_key
        return "" if is_valid_key(key) and session_id == hash_key(key) else session_id


class AsyncRevokeSessionView(AsyncLoginRequiredMixin, RevokeSessionView):  # type: ignore[misc]
    """See RevokeSessionView."""

    async def post(  # type: ignore[override]
        self, request: HttpRequest, *args: Any, **kwargs: Any
    ) -> HttpResponse:
        session_id = self.other_session_id(request)
        if session_id and await arevoke_session(request.user, session_id, actor=request.user):
            messages.success(request, REVOKED, fail_silently=True)
        return HttpResponseRedirect(self.sessions_url())


class RevokeOtherSessionsView(RevokeView):
    """Log out every other session of the user, keeping this one."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        count = revoke_all_sessions(request.user, keep=request.session, actor=request.user)
        messages.success(request, logged_out(count), fail_silently=True)
        return HttpResponseRedirect(self.sessions_url())


class AsyncRevokeOtherSessionsView(AsyncLoginRequiredMixin, RevokeOtherSessionsView):  # type: ignore[misc]
    """See RevokeOtherSessionsView."""

    async def post(  # type: ignore[override]
        self, request: HttpRequest, *args: Any, **kwargs: Any
    ) -> HttpResponse:
        count = await arevoke_all_sessions(request.user, keep=request.session, actor=request.user)
        messages.success(request, logged_out(count), fail_silently=True)
        return HttpResponseRedirect(self.sessions_url())
