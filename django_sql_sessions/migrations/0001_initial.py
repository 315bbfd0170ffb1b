from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import migrations, models
from django.utils import timezone

import django_sql_sessions.fields
from django_sql_sessions import conf

# The same setting the model reads, so makemigrations sees no change whatever
# table name the project chose.
TABLE = conf.TABLE.raw()


def refuse_an_invalid_table_name(apps: Any, schema_editor: Any) -> None:
    # Check E002 says so first, but migrate --skip-checks skips it: no table
    # is created under a name the setting's rule refuses.
    if problem := conf.TABLE.rule(conf.TABLE.name, TABLE):
        raise ImproperlyConfigured(f"{problem} {conf.TABLE.fix()}")


class Migration(migrations.Migration):
    initial = True

    dependencies = []

    operations = [
        migrations.RunPython(refuse_an_invalid_table_name, migrations.RunPython.noop),
        migrations.CreateModel(
            name="Session",
            fields=[
                (
                    "key_hash",
                    django_sql_sessions.fields.KeyHashField(
                        editable=False,
                        primary_key=True,
                        serialize=False,
                        verbose_name="session key hash",
                    ),
                ),
                ("data", models.TextField(verbose_name="session data")),
                ("expire_date", models.DateTimeField(db_index=True, verbose_name="expire date")),
                (
                    "created_at",
                    models.DateTimeField(default=timezone.now, verbose_name="created at"),
                ),
                (
                    "updated_at",
                    models.DateTimeField(default=timezone.now, verbose_name="updated at"),
                ),
            ],
            options={
                "db_table": str(TABLE),
                "verbose_name": "session",
                "verbose_name_plural": "sessions",
            },
        ),
    ]
