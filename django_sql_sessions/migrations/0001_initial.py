from django.db import migrations, models
from django.utils import timezone

import django_sql_sessions.fields
from django_sql_sessions import conf


class Migration(migrations.Migration):
    initial = True

    dependencies = []

    operations = [
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
                # The same setting the model reads, so makemigrations sees no
                # change whatever table name the project chose.
                "db_table": str(conf.TABLE.raw()),
                "verbose_name": "session",
                "verbose_name_plural": "sessions",
            },
        ),
    ]
