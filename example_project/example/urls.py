from django.contrib import admin
from django.urls import include, path

from example import views

urlpatterns = [
    path("", views.counter, name="counter"),
    path("regenerate/", views.regenerate, name="regenerate"),
    path("remove/", views.remove, name="remove"),
    # The package's "your sessions" pages, sync and async (two instances of
    # its "sql_sessions" URL namespace).
    path("sessions/", include("django_sql_sessions.urls")),
    # The same pages from async views: serve with uvicorn example.asgi:application.
    path("async/", views.acounter, name="async_counter"),
    path("async/regenerate/", views.aregenerate, name="async_regenerate"),
    path("async/remove/", views.aremove, name="async_remove"),
    path(
        "async/sessions/",
        include("django_sql_sessions.async_urls", namespace="async_sql_sessions"),
    ),
    path("admin/", admin.site.urls),
]
