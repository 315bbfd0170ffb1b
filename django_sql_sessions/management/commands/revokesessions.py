"""manage.py revokesessions: log a user out everywhere, for support staff."""

from __future__ import annotations

import argparse
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from django_sql_sessions import storage
from django_sql_sessions.management._common import command_errors, plural
from django_sql_sessions.user_sessions import revoke_users_sessions
from django_sql_sessions.user_sessions import user_id as stored_user_id


class Command(BaseCommand):
    help = "Delete all the sessions of one user, logging them out on every device."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        who = parser.add_mutually_exclusive_group(required=True)
        who.add_argument("--username", help="The user's username (USERNAME_FIELD).")
        who.add_argument("--user-id", help="The user's primary key.")

    def handle(
        self, *args: Any, username: str | None, user_id: str | None, **options: Any
    ) -> None:
        model = get_user_model()
        try:
            if username is not None:
                try:
                    user = model._default_manager.get_by_natural_key(username)
                except model.DoesNotExist:
                    raise CommandError(f"There is no user with username {username!r}.") from None
                owner, label = stored_user_id(user), f"user {username!r}"
            else:
                owner = stored_user_id(user_id)
                label = f"user id {owner}"
                if not model._default_manager.filter(pk=owner).exists():
                    label += " (no such user)"
        except (ValueError, ImproperlyConfigured) as exc:
            raise CommandError(str(exc)) from exc
        with command_errors(ValueError):
            missed_before = storage.table().undelivered
            count = revoke_users_sessions(owner, None, via="command", actor=None)
            missed = storage.table().undelivered - missed_before
        self.stdout.write(f"Revoked {plural(count, 'session')} of {label}.")
        if count and missed > 0:
            # The rows are gone, but other processes may serve their cached
            # copies: support staff must not be told the user is logged out.
            raise CommandError(
                f"The session cache did not answer, so {plural(missed, 'revoked session')} "
                "may still be served from it by other processes until it answers again "
                "(this process keeps trying) or the cache's TIMEOUT ends. Run the command "
                "again once the cache is back.",
                returncode=3,
            )
