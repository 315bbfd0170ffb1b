"""
SessionMiddleware for projects that want device details or last activity.

Use it in place of django.contrib.sessions.middleware.SessionMiddleware. It
does everything Django's does, and also:

- hands the request's device details to the session store, which saves them
  with the session (sync and async views alike: the store keeps them);
- after the response, records the activity of a session the request read
  but did not write, at most once per SQL_SESSIONS_ACTIVITY_INTERVAL.
"""

from __future__ import annotations

from django.contrib.sessions.middleware import SessionMiddleware as DjangoSessionMiddleware
from django.http import HttpRequest, HttpResponse

from django_sql_sessions.backends.db import SessionStore
from django_sql_sessions.devices import device_from_request


class SessionMiddleware(DjangoSessionMiddleware):
    def process_request(self, request: HttpRequest) -> None:
        super().process_request(request)
        if isinstance(request.session, SessionStore):
            request.session.device = device_from_request(request)

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        response = super().process_response(request, response)
        session = getattr(request, "session", None)
        # Only a session this request looked at: recording activity must not
        # cost a SELECT on requests that never touched the session. Not after
        # a server error either, where Django skips the save too.
        if isinstance(session, SessionStore) and session.accessed and response.status_code < 500:
            session.record_activity()
        return response
