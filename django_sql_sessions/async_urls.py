"""urls.py with the async views, for a project served under ASGI."""

from django.urls import path

from django_sql_sessions import views

app_name = "sql_sessions"

urlpatterns = [
    path("", views.AsyncSessionListView.as_view(), name="list"),
    path("revoke/", views.AsyncRevokeSessionView.as_view(), name="revoke"),
    path("revoke-others/", views.AsyncRevokeOtherSessionsView.as_view(), name="revoke_others"),
]
