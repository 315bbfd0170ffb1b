from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("django_sql_sessions", "0002_session_version")]

    operations = [
        migrations.AddField(
            model_name="session",
            name="user_id",
            field=models.CharField(max_length=255, null=True, verbose_name="user id"),
        ),
        migrations.AddField(
            model_name="session",
            name="ip",
            field=models.CharField(max_length=45, null=True, verbose_name="IP address"),
        ),
        migrations.AddField(
            model_name="session",
            name="user_agent",
            field=models.CharField(max_length=255, null=True, verbose_name="user agent"),
        ),
        migrations.AddIndex(
            model_name="session",
            index=models.Index(fields=["user_id"], name="sql_sessions_user_idx"),
        ),
    ]
