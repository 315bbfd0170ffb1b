from django.contrib import admin
from django.urls import path

from example import views

urlpatterns = [
    path("", views.counter, name="counter"),
    path("regenerate/", views.regenerate, name="regenerate"),
    path("remove/", views.remove, name="remove"),
    path("sessions/", views.your_sessions, name="sessions"),
    path("sessions/revoke/", views.revoke, name="revoke"),
    path("sessions/revoke-others/", views.revoke_others, name="revoke_others"),
    # The same pages from async views: serve with uvicorn example.asgi:application.
    path("async/", views.acounter, name="async_counter"),
    path("async/regenerate/", views.aregenerate, name="async_regenerate"),
    path("async/remove/", views.aremove, name="async_remove"),
    path("async/sessions/", views.ayour_sessions, name="async_sessions"),
    path("async/sessions/revoke/", views.arevoke, name="async_revoke"),
    path("async/sessions/revoke-others/", views.arevoke_others, name="async_revoke_others"),
    path("admin/", admin.site.urls),
]
