from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("django_sql_sessions", "0004_importedsession")]

    operations = [
        migrations.CreateModel(
            name="CleanupLease",
            fields=[
                (
                    "name",
                    models.CharField(
                        max_length=64, primary_key=True, serialize=False, verbose_name="name"
                    ),
                ),
                ("holder", models.CharField(max_length=64, verbose_name="holder")),
                ("expires_at", models.DateTimeField(verbose_name="expires at")),
            ],
            options={
                "verbose_name": "cleanup lease",
                "verbose_name_plural": "cleanup leases",
                "db_table": "django_sql_sessions_lease",
            },
        ),
    ]
