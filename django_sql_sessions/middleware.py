"""
Django's SessionMiddleware, plus device details for the store and, after the
response, the activity of a session the request read but did not write.
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
        # Not on requests that never touched the session, nor after a server
        # error, where Django skips the save too.
        if isinstance(session, SessionStore) and session.accessed and response.status_code < 500:
            session.record_activity()
        return response
