from django.contrib import admin
from django.urls import path

from . import views

urlpatterns = [
    path("", views.counter, name="counter"),
    path("regenerate/", views.regenerate, name="regenerate"),
    path("remove/", views.remove, name="remove"),
    path("admin/", admin.site.urls),
]
