from __future__ import annotations

from typing import TypeVar

from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.db import models
from django.utils.translation import gettext_lazy as _

from django_sql_sessions import conf
from django_sql_sessions.base_session import AbstractSession
from django_sql_sessions.fields import KeyHashField

# SESSION_ENGINE set to this package's engine, the app left out: Django's own
# error ("doesn't declare an explicit app_label") names no fix, and no check
# of ours runs without the app.
if not apps.is_installed("django_sql_sessions"):
    raise ImproperlyConfigured(
        "django_sql_sessions is not in INSTALLED_APPS: add 'django_sql_sessions' to "
        "INSTALLED_APPS (its engine needs its models, migrations and checks)."
    )

_M = TypeVar("_M", bound=models.Model)

USER_INDEX_NAME = "sql_sessions_user_idx"


class Session(AbstractSession):
    class Meta(AbstractSession.Meta):
        # Read when this module is imported, like the migration that creates
        # the table: both see the same name, so makemigrations stays clean
        # whatever the project chose. The system check validates it.
        db_table = str(conf.TABLE.raw())
        indexes = [models.Index(fields=["user_id"], name=USER_INDEX_NAME)]


class PinnedManager(models.Manager[_M]):
    """The package's other tables' manager: on the sessions alias, as SessionManager."""

    def get_queryset(self) -> models.QuerySet[_M]:
        return models.QuerySet(self.model, using=conf.DB_ALIAS.get())


class ImportedSession(models.Model):
    """
    A session key that importsessions copied from Django's table, so that a
    later run never copies it again after this engine deleted it (a logout,
    a revocation), and can tell when Django's engine deleted it (a logout
    before the switch) to delete the copy too. Kept until the session's
    expiry as it was when last seen.
    """

    key_hash = KeyHashField(_("session key hash"), primary_key=True, editable=False)
    expire_date = models.DateTimeField(_("expire date"))
    # Where it was copied from ("alias.table") and when a run last found it
    # there.
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
    Who runs the cleanup, where the database's own locks do not reach every
    node (a Galera cluster: GET_LOCK holds on one node only). A row per
    cleanup lock name, taken with a conditional write, which the cluster
    certifies: of two nodes taking it at once, one write fails. See locks.py.
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
    That the cached engine serves a session table from a cache, recorded by
    ``migrate`` under settings that use it (and removed by one that does
    not), so that a process running without the cache (a worker with
    minimal settings) knows its deletes cannot reach the cached copies,
    and says so (see storage.SessionTable.undelivered).
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
