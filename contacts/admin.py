"""Read-only views of contacts and their links: invitations, assignments and links go through the portal's
contact pages (contacts.access), so each change has its actor, reason and email."""

from django.contrib import admin
from simple_history.admin import SimpleHistoryAdmin

from contacts.models import AccessLink, CustomerContact
from core.admin import ReadOnlyAdminMixin


@admin.register(CustomerContact)
class CustomerContactAdmin(ReadOnlyAdminMixin, SimpleHistoryAdmin):
    list_display = ("name", "email", "customer", "is_active", "invited_by", "invited_at")
    list_filter = ("is_active", "customer")
    search_fields = ("name", "email", "customer__name")
    list_select_related = ("customer", "invited_by")


@admin.register(AccessLink)
class AccessLinkAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("contact", "purpose", "created_at", "expires_at", "used_at", "superseded_at", "failed_attempts")
    list_filter = ("purpose",)
    search_fields = ("contact__email",)
    list_select_related = ("contact__customer", "contact__user")
    exclude = ("token_hash", "code_hash")
