"""
A read-only admin for the session table, with a "revoke" action. It never
shows session data and refuses every lookup but its own filter: the data
holds other users' secrets (docs/design.rst, "The admin").
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from django.contrib import admin, messages
from django.contrib.admin.utils import display_for_value, quote
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth import get_user_model
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.timesince import timesince, timeuntil
from django.utils.timezone import localtime
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from django_sql_sessions import conf
from django_sql_sessions.base_session import AbstractSession, SessionQuerySet
from django_sql_sessions.devices import device_name
from django_sql_sessions.models import Session
from django_sql_sessions.signals import send_revoked
from django_sql_sessions.storage import in_lists
from django_sql_sessions.user_sessions import users_by_id

DEVICE_FIELDS = ("ip", "device", "user_agent")
# Named devices in the list (a whole user agent in a title): whole ones are too wide.
DEVICE_COLUMNS = ("network", "device")
# Where label_users() leaves each row's user label.
USER_LABEL = "_sql_sessions_user_label"
# Between a lower-case and an upper-case letter: "Headless|Chrome".
_WORD_JOINS = re.compile(r"(?<=[a-z])(?=[A-Z])")
# The changelist counts no further (plus one): not a whole index per page view.
COUNT_CAP = 10_000

_S = TypeVar("_S", bound=AbstractSession)
if TYPE_CHECKING:
    _Paginator = Paginator[AbstractSession]
    _ModelAdmin = admin.ModelAdmin[Any]
else:  # not subscriptable at run time
    _Paginator = Paginator
    _ModelAdmin = admin.ModelAdmin


class CappedPaginator(_Paginator):
    @cached_property
    def count(self) -> int:
        # A sliced queryset counts in a subquery that stops at the cap.
        sessions: QuerySet[AbstractSession] = self.object_list  # type: ignore[assignment]
        return sessions[: COUNT_CAP + 1].count()


def label_users(
    rows: Iterable[AbstractSession], admin_site: admin.AdminSite | None = None
) -> None:
    """Name each row's user on the row (linked in admin_site), with one query for all."""
    rows = list(rows)
    users = users_by_id({row.user_id for row in rows if row.user_id is not None})
    for row in rows:
        label: str
        if row.user_id is None:
            label = gettext("anonymous")
        elif row.user_id in users:
            label = _user_link(users[row.user_id], admin_site)
        else:
            label = gettext("%(user_id)s (deleted)") % {"user_id": row.user_id}
        setattr(row, USER_LABEL, label)


def _user_link(user: Any, admin_site: admin.AdminSite | None) -> str:
    """The username, linked to the user's change page as Django links a foreign key."""
    username = user.get_username()
    user_model = get_user_model()
    if admin_site is None or not admin_site.is_registered(user_model):
        return str(username)
    opts = user_model._meta
    try:
        url = reverse(
            f"admin:{opts.app_label}_{opts.model_name}_change",
            args=[quote(user.pk)],
            current_app=admin_site.name,
        )
    except NoReverseMatch:
        return str(username)
    return format_html('<a href="{}">{}</a>', url, username)


class SessionChangeList(ChangeList):
    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        # The page's rows, kept for the template: their users in one query.
        label_users(self.result_list, self.model_admin.admin_site)


def _relative(moment: datetime.datetime) -> str:
    """'5 minutes ago' or 'in 1 week, 6 days' (as Django's filters), the time in a title."""
    now = timezone.now()
    # Naive under USE_TZ = False, where localtime() would refuse it.
    shown = localtime(moment) if timezone.is_aware(moment) else moment
    if moment <= now:
        text = gettext("%(time)s ago") % {"time": timesince(moment, now)}
    else:
        text = gettext("in %(time)s") % {"time": timeuntil(moment, now)}
    return format_html('<span title="{}">{}</span>', date_format(shown, "DATETIME_FORMAT"), text)


class StateFilter(admin.SimpleListFilter):
    title = _("state")
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("active", str(_("Active"))), ("expired", str(_("Expired")))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[_S]) -> QuerySet[_S]:
        # The model manager's SessionQuerySet: active()/expired() are the engine's rule.
        sessions = cast(SessionQuerySet[_S], queryset)
        if self.value() == "active":
            return sessions.active()
        if self.value() == "expired":
            return sessions.expired()
        return queryset


@admin.register(Session)
class SessionAdmin(_ModelAdmin):
    # Few, short columns, to fit beside the sidebars on a 1280-pixel screen.
    list_display = ("short_id", "user", "last_active", "expires", *DEVICE_COLUMNS)
    list_filter = (StateFilter,)
    # Exact user ids only (see get_search_results()): no keys are stored.
    search_fields = ("user_id",)
    search_help_text = _("An exact user id (primary key).")
    # The expire_date index serves this order.
    ordering = ("-expire_date",)
    fields = ("short_id", "user", "created_at", "last_activity", "expire_date", "active")
    readonly_fields = fields
    actions = ["revoke"]
    paginator = CappedPaginator
    show_full_result_count = False

    def get_list_display(self, request: HttpRequest) -> tuple[str, ...]:
        return self._with_device(tuple(self.list_display), DEVICE_COLUMNS)

    def get_fields(self, request: HttpRequest, obj: _S | None = None) -> tuple[str, ...]:
        return self._with_device(self.fields, DEVICE_FIELDS)

    def get_readonly_fields(self, request: HttpRequest, obj: _S | None = None) -> tuple[str, ...]:
        return self.get_fields(request, obj)

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return SessionChangeList

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest) -> bool:
        # Only the list's own filters: which rows match ?data__startswith=...
        # would tell the data one character at a time. Django answers 400.
        return lookup in {
            list_filter.parameter_name
            for list_filter in self.get_list_filter(request)
            if isinstance(list_filter, type) and issubclass(list_filter, admin.SimpleListFilter)
        }

    def _with_device(self, columns: tuple[str, ...], device: tuple[str, ...]) -> tuple[str, ...]:
        # Only when recorded: empty columns would suggest the data exists.
        columns = tuple(column for column in columns if column not in device)
        return columns + device if conf.DEVICE_DETAILS.get() else columns

    @admin.display(description=_("session"))
    def short_id(self, obj: _S) -> str:
        return str(obj)

    @admin.display(description=_("user"))
    def user(self, obj: _S) -> str:
        if not hasattr(obj, USER_LABEL):  # not from the changelist: the detail page
            label_users([obj], self.admin_site)
        label: str = getattr(obj, USER_LABEL)
        return label

    @admin.display(description=_("network"), ordering="ip")
    def network(self, obj: _S) -> str | None:
        # Only ever a network (SQL_SESSIONS_IPV4_PREFIX, ..._IPV6_PREFIX).
        return obj.ip

    @admin.display(description=_("device"))
    def device(self, obj: _S) -> str:
        # Not ordered: sorting by the raw string would not sort the names.
        name = device_name(obj.user_agent)
        if obj.user_agent is None:
            return name
        # Breaks inside "HeadlessChrome", which would set the column's width.
        parts = ((part,) for part in _WORD_JOINS.split(name))
        return format_html(
            '<span title="{}">{}</span>',
            obj.user_agent,
            format_html_join(mark_safe("<wbr>"), "{}", parts),
        )

    @admin.display(description=_("last activity"), ordering="updated_at")
    def last_activity(self, obj: _S) -> str:
        # As Django formats the date fields beside it, not as str() would.
        return str(display_for_value(obj.last_activity, self.get_empty_value_display()))

    @admin.display(description=_("last active"), ordering="updated_at")
    def last_active(self, obj: _S) -> str:
        return _relative(obj.last_activity)

    @admin.display(description=_("expires"), ordering="expire_date")
    def expires(self, obj: _S) -> str:
        # "expired 2 hours ago" or "in 1 week, 6 days".
        if obj.is_expired():
            return format_html("{} {}", gettext("expired"), _relative(obj.expire_date))
        return _relative(obj.expire_date)

    @admin.display(description=_("active"), boolean=True)
    def active(self, obj: _S) -> bool:
        return not obj.is_expired()

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[_S], search_term: str
    ) -> tuple[QuerySet[_S], bool]:
        # An equality uses the user index; Django's LIKE or UPPER() no index serves.
        term = search_term.strip()
        return (queryset.filter(user_id=term) if term else queryset), False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: _S | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: _S | None = None) -> bool:
        # Revoked with the action: Django's confirmation page lists every row.
        return False

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return super().has_delete_permission(request)

    @admin.action(description=_("Revoke selected sessions"), permissions=["revoke"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[_S]) -> None:
        # In chunks: "select all" must not lock every row at once.
        key_hashes = list(queryset.values_list("key_hash", flat=True))
        count = 0
        revoked: list[str] = []
        try:
            for key_hash_list in in_lists(key_hashes):
                chunk = self.model.objects.filter(key_hash__in=key_hash_list)
                self.log_deletions(request, chunk)
                deleted, _per_model = chunk.delete()
                count += deleted
                if deleted:
                    revoked += key_hash_list
        finally:
            # Also when a later chunk failed: the earlier ones are revoked.
            send_revoked(
                self.model,
                revoked,
                user_id=None,
                via="admin",
                actor=request.user,
                using=conf.DB_ALIAS.get(),
            )
        self.message_user(
            request,
            ngettext("Revoked %d session.", "Revoked %d sessions.", count) % count,
            messages.SUCCESS,
        )
