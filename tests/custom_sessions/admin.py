from django.contrib import admin

from django_sql_sessions.admin import SessionAdmin
from tests.custom_sessions.models import CustomSession

admin.site.register(CustomSession, SessionAdmin)
