"""
The "your sessions" pages: path("account/sessions/", include("django_sql_sessions.urls")).
async_urls.py has the same names for the async views.
"""

from django.urls import path

from django_sql_sessions import views

app_name = "sql_sessions"

urlpatterns = [
    path("", views.SessionListView.as_view(), name="list"),
    path("revoke/", views.RevokeSessionView.as_view(), name="revoke"),
    path("revoke-others/", views.RevokeOtherSessionsView.as_view(), name="revoke_others"),
]
