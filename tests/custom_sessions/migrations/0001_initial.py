import django.utils.timezone
from django.db import migrations, models

import django_sql_sessions.fields


class Migration(migrations.Migration):
    initial = True

    dependencies = []

    operations = [
        migrations.CreateModel(
            name="CustomSession",
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
                    models.DateTimeField(
                        default=django.utils.timezone.now, verbose_name="created at"
                    ),
                ),
                (
                    "updated_at",
                    models.DateTimeField(
                        default=django.utils.timezone.now, verbose_name="updated at"
                    ),
                ),
                ("version", models.BigIntegerField(default=1, verbose_name="version")),
                (
                    "user_id",
                    models.CharField(max_length=255, null=True, verbose_name="user id"),
                ),
                (
                    "ip",
                    models.CharField(max_length=45, null=True, verbose_name="IP address"),
                ),
                (
                    "user_agent",
                    models.CharField(max_length=255, null=True, verbose_name="user agent"),
                ),
                ("account_id", models.IntegerField(db_index=True, null=True)),
            ],
            options={
                "verbose_name": "session",
                "verbose_name_plural": "sessions",
                "abstract": False,
                "indexes": [
                    models.Index(fields=["user_id"], name="custom_sess_user_id_834b22_idx")
                ],
            },
        ),
    ]
