"""Admin of key exceptions: every step goes through keys.services.key_exceptions."""

from __future__ import annotations

from django.contrib import admin
from simple_history.admin import SimpleHistoryAdmin

from core.admin import NoRevertMixin, apply_to_selected
from keys.admin.forms import ExceptionActionForm
from keys.models import (
    KeyException,
)
from keys.services import key_exceptions as exceptions


class LapsedFilter(admin.SimpleListFilter):
    title = "lapsed"
    parameter_name = "lapsed"

    def lookups(self, request, model_admin):
        return (("yes", "Lapsed"), ("no", "Not lapsed"))

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(lapsed_on__isnull=False)
        if self.value() == "no":
            return queryset.filter(lapsed_on__isnull=True)
        return queryset


@admin.register(KeyException)
class KeyExceptionAdmin(NoRevertMixin, SimpleHistoryAdmin):
    """Read-only records: requests come from the portal, and every decision is an action through
    keys.services.key_exceptions, which enforces that only compliance decides and never on their own keys or requests."""

    action_form = ExceptionActionForm
    list_display = ("__str__", "customer", "kind", "status", "due_on", "lapsed_on", "requested_by", "decided_by")
    list_filter = ("status", "kind", LapsedFilter, ("key__workflow__customer", admin.RelatedOnlyFieldListFilter),
                   "blast_radius", "replaceability")
    search_fields = ("key__label", "key__prefix", "business_justification", "requested_by__username")
    list_select_related = ("key__workflow__customer", "requested_by", "decided_by")
    date_hierarchy = "requested_at"
    history_list_display = ("status", "lapsed_on", "decided_by")
    actions = ("approve_selected", "reject_selected", "withdraw_selected")
    fieldsets = (
        ("Exception", {"fields": ("key", "kind", "status", "business_justification", "blast_radius", "replaceability")}),
        ("Controls", {"fields": ("compensating_controls", "other_controls")}),
        ("Transitional", {"fields": ("migration_target", "migration_plan", "end_date")}),
        ("Permanent", {"fields": ("risk_acceptance", "review_date")}),
        ("Decision", {"fields": ("requested_by", "requested_at", "decided_by", "decided_at", "decision_reason",
                                 "lapsed_on")}),
    )

    @admin.display(description="Customer", ordering="key__workflow__customer__name")
    def customer(self, obj):
        return obj.key.workflow.customer

    @admin.display(description="Due")
    def due_on(self, obj):
        return obj.due_on

    def get_readonly_fields(self, request, obj=None):
        return tuple(f for fieldset in self.fieldsets for f in fieldset[1]["fields"])

    def has_add_permission(self, request):
        # Requests go through keys.services.key_exceptions.request_exception: the portal's "Request exception".
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def _apply(self, request, queryset, verb, step):
        reason = (request.POST.get("reason") or "").strip()
        apply_to_selected(self, request, queryset.select_related("key"),
                          lambda exception, actor: step(exception, actor, reason), verb=verb, noun="exception")

    @admin.action(description="Approve selected requested exceptions (compliance)", permissions=["view"])
    def approve_selected(self, request, queryset):
        self._apply(request, queryset, "approved", lambda exc, actor, reason: exceptions.approve_exception(
            exc, actor=actor, reason=reason))

    @admin.action(description="Reject selected requested exceptions (compliance)", permissions=["view"])
    def reject_selected(self, request, queryset):
        self._apply(request, queryset, "rejected", lambda exc, actor, reason: exceptions.reject_exception(
            exc, actor=actor, reason=reason))

    @admin.action(description="Withdraw selected open exceptions", permissions=["view"])
    def withdraw_selected(self, request, queryset):
        self._apply(request, queryset, "withdrawn", lambda exc, actor, reason: exceptions.withdraw_exception(
            exc, actor=actor, reason=reason))
