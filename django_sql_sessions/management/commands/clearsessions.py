"""
manage.py clearsessions, for projects that remove django.contrib.sessions
from INSTALLED_APPS: the command the docs and cron jobs everywhere name keeps
working. Where django.contrib.sessions is installed before this app, Django's
own clearsessions runs instead, and it calls this engine's clear_expired(),
which is the same cleanup. Both are purgesessions with its defaults.
"""

from __future__ import annotations

from .purgesessions import Command as PurgeCommand


class Command(PurgeCommand):
    help = "Delete expired sessions (the same as purgesessions, whose options it takes)."
