from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("django_sql_sessions", "0005_cleanuplease")]

    operations = [
        migrations.CreateModel(
            name="FrontingCache",
            fields=[
                (
                    "session_table",
                    models.CharField(
                        max_length=63,
                        primary_key=True,
                        serialize=False,
                        verbose_name="session table",
                    ),
                ),
                ("cache", models.CharField(max_length=200, verbose_name="cache")),
                ("recorded_at", models.DateTimeField(verbose_name="recorded at")),
            ],
            options={
                "verbose_name": "fronting cache",
                "verbose_name_plural": "fronting caches",
                "db_table": "django_sql_sessions_cache",
            },
        ),
    ]
