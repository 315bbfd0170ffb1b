from __future__ import annotations

from typing import TypeVar

from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.db import models
from django.utils.translation import gettext_lazy as _

from django_sql_sessions import conf
from django_sql_sessions.base_session import AbstractSession
from django_sql_sessions.fields import KeyHashField
from django_sql_sessions.storage import USER_ID_MAX_LENGTH

# The engine without the app: Django's own error names no fix, and no check runs.
if not apps.is_installed("django_sql_sessions"):
    raise ImproperlyConfigured(
        "django_sql_sessions is not in INSTALLED_APPS: add 'django_sql_sessions' to "
        "INSTALLED_APPS (its engine needs its models, migrations and checks)."
    )

_M = TypeVar("_M", bound=models.Model)

USER_INDEX_NAME = "sql_sessions_user_idx"


class Session(AbstractSession):
    class Meta(AbstractSession.Meta):
        # Read at import, as the migration does: makemigrations stays clean.
        db_table = str(conf.TABLE.raw())
        indexes = [models.Index(fields=["user_id"], name=USER_INDEX_NAME)]


class PinnedManager(models.Manager[_M]):
    """The package's other tables' manager: on the sessions alias, as SessionManager."""

    def get_queryset(self) -> models.QuerySet[_M]:
        return models.QuerySet(self.model, using=conf.DB_ALIAS.get())


class ImportedSession(models.Model):
    """
    A session importsessions copied, so a later run never copies it again
    after a logout here, and deletes the copy after a logout in Django's.
    """

    key_hash = KeyHashField(_("session key hash"), primary_key=True, editable=False)
    expire_date = models.DateTimeField(_("expire date"))
    # "alias.table" it was copied from, and when a run last found it there.
    source = models.CharField(_("source"), max_length=200)
    seen_at = models.DateTimeField(_("last seen at"))

    objects = PinnedManager["ImportedSession"]()

    class Meta:
        db_table = "django_sql_sessions_imported"
        verbose_name = _("imported session")
        verbose_name_plural = _("imported sessions")

    def __str__(self) -> str:
        return str(self.key_hash)[:12]


class CleanupLease(models.Model):
    """
    Who runs the cleanup where locks do not reach every node (Galera's
    GET_LOCK): a conditional write the cluster certifies. See cleanup.py.
    """

    name = models.CharField(_("name"), primary_key=True, max_length=64)
    # A random token of the runner that took it.
    holder = models.CharField(_("holder"), max_length=64)
    expires_at = models.DateTimeField(_("expires at"))

    class Meta:
        db_table = "django_sql_sessions_lease"
        verbose_name = _("cleanup lease")
        verbose_name_plural = _("cleanup leases")

    def __str__(self) -> str:
        return self.name


class FrontingCache(models.Model):
    """
    A cache fronting a session table, recorded by ``migrate``, so a process
    without it knows its deletes miss the cache (SessionTable.undelivered).
    """

    session_table = models.CharField(_("session table"), primary_key=True, max_length=63)
    # The cache alias and backend, for the message; never a password.
    cache = models.CharField(_("cache"), max_length=200)
    recorded_at = models.DateTimeField(_("recorded at"))

    objects = PinnedManager["FrontingCache"]()

    class Meta:
        db_table = "django_sql_sessions_cache"
        verbose_name = _("fronting cache")
        verbose_name_plural = _("fronting caches")

    def __str__(self) -> str:
        return f"{self.session_table}: {self.cache}"


class UserLock(models.Model):
    """
    One row per user who logged in under SQL_SESSIONS_MAX_PER_USER: a login
    writes it first, so logins of one user take turns, on a Galera cluster
    too (its certification sees two writes of one row). See limits.py.
    """

    user_id = models.CharField(_("user id"), primary_key=True, max_length=USER_ID_MAX_LENGTH)
    logins = models.PositiveBigIntegerField(_("logins"), default=0)

    objects = PinnedManager["UserLock"]()

    class Meta:
        db_table = "django_sql_sessions_user_lock"
        verbose_name = _("user lock")
        verbose_name_plural = _("user locks")

    def __str__(self) -> str:
        return str(self.user_id)
