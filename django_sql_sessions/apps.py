from __future__ import annotations

from django.apps import AppConfig
from django.core import checks
from django.utils.translation import gettext_lazy as _


class SqlSessionsConfig(AppConfig):
    name = "django_sql_sessions"
    verbose_name = _("SQL sessions")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in
        from django.core.signals import request_finished, request_started, setting_changed
        from django.db.models.signals import post_migrate

        from django_sql_sessions import caching, conf, deployment
        from django_sql_sessions import checks as sql_sessions_checks
        from django_sql_sessions.backends.db import restart_lifetime_at_login
        from django_sql_sessions.cleanup import collector
        from django_sql_sessions.limits import limit_at_login

        checks.register(sql_sessions_checks.check_settings)
        checks.register(sql_sessions_checks.check_routers)
        checks.register(sql_sessions_checks.check_cache)
        checks.register(sql_sessions_checks.check_table_exists_at_start)
        checks.register(sql_sessions_checks.check_table_exists, checks.Tags.database)
        checks.register(sql_sessions_checks.check_server, checks.Tags.database)
        request_finished.connect(collector, dispatch_uid="django_sql_sessions.gc")
        request_started.connect(
            deployment.check_asgi_connections, dispatch_uid="django_sql_sessions.deployment"
        )
        post_migrate.connect(
            caching.record_in_database, sender=self, dispatch_uid="django_sql_sessions.cache"
        )
        user_logged_in.connect(restart_lifetime_at_login, dispatch_uid="django_sql_sessions.login")
        # After restart_lifetime_at_login: its restart is written by this save.
        user_logged_in.connect(limit_at_login, dispatch_uid="django_sql_sessions.limit")
        setting_changed.connect(conf.clear_cache, dispatch_uid="django_sql_sessions.conf")
        setting_changed.connect(caching.forget_clients, dispatch_uid="django_sql_sessions.caching")
