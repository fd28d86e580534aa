"""Admin of what integrations bring in: integration tokens and exposure reports, read-only."""

from __future__ import annotations

from django.contrib import admin
from simple_history.admin import SimpleHistoryAdmin

from core.admin import ReadOnlyAdminMixin
from keys.models import (
    Exposure,
    IntegrationToken,
)


@admin.register(IntegrationToken)
class IntegrationTokenAdmin(ReadOnlyAdminMixin, SimpleHistoryAdmin):
    """Read-only: tokens are created (and shown once) and revoked on the portal's token page, through keys.services.tokens.
    Only the token's SHA-256 is stored; its plaintext exists nowhere to show."""

    list_display = ("name", "token_prefix", "issuing_system", "customer", "acts_as", "created_at", "last_used_at",
                    "revoked_at")
    list_filter = ("issuing_system", "customer")
    search_fields = ("name", "token_prefix", "acts_as__username")
    list_select_related = ("issuing_system", "customer", "acts_as")
    readonly_fields = ("name", "token_prefix", "token_hash", "issuing_system", "customer", "acts_as", "created_by",
                       "created_at", "revoked_at", "last_used_at", "last_used_from")


@admin.register(Exposure)
class ExposureAdmin(ReadOnlyAdminMixin, SimpleHistoryAdmin):
    """Read-only: exposures are reported in the portal or the API, and triaged on the portal's exposure list,
    through keys.services.exposures."""

    list_display = ("pk", "reported_at", "key", "location", "source", "reported_by", "triage_status")
    list_filter = ("source", "triage__status")
    search_fields = ("location", "key__label", "key__prefix")
    list_select_related = ("key", "reported_by", "triage")
    readonly_fields = ("key", "fingerprint", "location", "notes", "source", "reported_by", "reported_at",
                       "triage_status")

    @admin.display(description="Triage")
    def triage_status(self, obj):
        triage = getattr(obj, "triage", None)
        return triage.get_status_display() if triage else "—"
