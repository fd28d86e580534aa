"""Admin of what the identity provider brings in, read-only: SCIM tokens are created and revoked on the portal's
SCIM token page, groups and account changes written only by SCIM provisioning (identity.services)."""

from django.contrib import admin
from simple_history.admin import SimpleHistoryAdmin

from core.admin import NoRevertMixin, ReadOnlyAdminMixin
from identity.models import AccountChange, ScimGroup, ScimToken


@admin.register(ScimToken)
class ScimTokenAdmin(ReadOnlyAdminMixin, NoRevertMixin, SimpleHistoryAdmin):
    list_display = ("name", "token_prefix", "acts_as", "created_by", "created_at", "last_used_at", "revoked_at")
    search_fields = ("name", "token_prefix", "acts_as__username")
    list_select_related = ("acts_as", "created_by")
    readonly_fields = ("name", "token_prefix", "token_hash", "acts_as", "created_by", "created_at", "revoked_at",
                       "last_used_at", "last_used_from")


@admin.register(ScimGroup)
class ScimGroupAdmin(ReadOnlyAdminMixin, NoRevertMixin, SimpleHistoryAdmin):
    list_display = ("display_name", "external_id", "created_at")
    search_fields = ("display_name", "external_id", "members__username")
    readonly_fields = ("display_name", "external_id", "members", "created_at")


@admin.register(AccountChange)
class AccountChangeAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("at", "user", "kind", "fields", "actor", "reason")
    list_filter = ("kind",)
    search_fields = ("user__username", "actor__username", "reason")
    list_select_related = ("user", "actor")
    readonly_fields = ("at", "user", "kind", "fields", "values", "actor", "reason")
    exclude = ("personal_salt",)
