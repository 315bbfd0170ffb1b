from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("django_sql_sessions", "0006_frontingcache")]

    operations = [
        migrations.CreateModel(
            name="UserLock",
            fields=[
                (
                    "user_id",
                    models.CharField(
                        max_length=255,
                        primary_key=True,
                        serialize=False,
                        verbose_name="user id",
                    ),
                ),
                ("logins", models.PositiveBigIntegerField(default=0, verbose_name="logins")),
            ],
            options={
                "verbose_name": "user lock",
                "verbose_name_plural": "user locks",
                "db_table": "django_sql_sessions_user_lock",
            },
        ),
    ]
