from django.db import migrations, models

import django_sql_sessions.fields


class Migration(migrations.Migration):
    dependencies = [("django_sql_sessions", "0003_user_and_device")]

    operations = [
        migrations.CreateModel(
            name="ImportedSession",
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
                ("expire_date", models.DateTimeField(verbose_name="expire date")),
                ("source", models.CharField(max_length=200, verbose_name="source")),
                ("seen_at", models.DateTimeField(verbose_name="last seen at")),
            ],
            options={
                "verbose_name": "imported session",
                "verbose_name_plural": "imported sessions",
                "db_table": "django_sql_sessions_imported",
            },
        ),
    ]
