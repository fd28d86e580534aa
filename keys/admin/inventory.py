"""Admin of the inventory around keys: customers, workflows, issuing systems and owner profiles."""

from __future__ import annotations

from django.contrib import admin
from django.db import models
from django.db.models import Count
from simple_history.admin import SimpleHistoryAdmin

from keys.models import (
    Customer,
    IssuingSystem,
    OwnerProfile,
    Workflow,
)


@admin.register(Customer)
class CustomerAdmin(SimpleHistoryAdmin):
    list_display = ("name", "external_id", "contract_status", "contract_end", "account_manager", "workflow_count")
    list_filter = ("contract_status",)
    search_fields = ("name", "external_id")
    autocomplete_fields = ("account_manager",)
    list_select_related = ("account_manager",)
    date_hierarchy = "contract_end"

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(workflow_total=Count("workflows"))

    @admin.display(description="Workflows", ordering="workflow_total")
    def workflow_count(self, obj):
        return obj.workflow_total


@admin.register(Workflow)
class WorkflowAdmin(SimpleHistoryAdmin):
    list_display = ("name", "customer", "environment", "status", "business_owner", "technical_steward", "decommissioned_on")
    list_filter = ("environment", "status", ("customer", admin.RelatedOnlyFieldListFilter))
    search_fields = ("name", "purpose", "data_scope", "customer__name", "customer__external_id")
    autocomplete_fields = ("customer", "business_owner", "technical_steward")
    list_select_related = ("customer", "business_owner", "technical_steward")


@admin.register(IssuingSystem)
class IssuingSystemAdmin(SimpleHistoryAdmin):
    list_display = ("name", "kind", "revoke_url")
    list_filter = ("kind",)
    search_fields = ("name", "notes")
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}


@admin.register(OwnerProfile)
class OwnerProfileAdmin(SimpleHistoryAdmin):
    list_display = ("user", "department", "manager", "is_active", "departed_on")
    list_filter = ("is_active", "department")
    search_fields = ("user__username", "user__first_name", "user__last_name", "user__email", "department")
    autocomplete_fields = ("user", "manager")
    list_select_related = ("user", "manager")
