from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("django_sql_sessions", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="session",
            name="version",
            field=models.BigIntegerField(default=1, verbose_name="version"),
        ),
    ]
