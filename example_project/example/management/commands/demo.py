from typing import Any

from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Migrate both databases, create the demo admin user and serve on 127.0.0.1:8000."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--no-serve", action="store_true", help="Set up the databases, then exit."
        )
        parser.add_argument(
            "--addrport",
            default="127.0.0.1:8000",
            help="Where to serve (default: 127.0.0.1:8000), e.g. 127.0.0.1:8001 if that is taken.",
        )

    def handle(self, *args: Any, no_serve: bool, addrport: str, **options: Any) -> None:
        # The sessions database first, without the checks: they would warn
        # (W006) that its table is missing, the table this creates. Then
        # `default` with them, as `manage.py migrate` runs them
        # (call_command skips them unless told), and the sessions
        # database's own checks now that its table is there.
        call_command("migrate", database="sessions", interactive=False, verbosity=0)
        call_command(
            "migrate", database="default", interactive=False, verbosity=0, skip_checks=False
        )
        self.check(databases=["sessions"])
        if not User.objects.filter(username="admin").exists():
            User.objects.create_superuser("admin", "admin@example.com", "admin")
            self.stdout.write("Created the demo superuser admin (password: admin).")
        if no_serve:
            return
        call_command("runserver", addrport, use_reloader=False)
