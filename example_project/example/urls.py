from django.contrib import admin
from django.urls import path

from . import views

urlpatterns = [
    path("", views.counter, name="counter"),
    path("regenerate/", views.regenerate, name="regenerate"),
    path("remove/", views.remove, name="remove"),
    path("sessions/", views.your_sessions, name="sessions"),
    path("sessions/revoke/", views.revoke, name="revoke"),
    path("sessions/revoke-others/", views.revoke_others, name="revoke_others"),
    path("admin/", admin.site.urls),
]
