from django.contrib import admin

from . import roles
from .models import AccessRecord


@admin.register(AccessRecord)
class AccessRecordAdmin(admin.ModelAdmin):
    """The access audit, read-only: records are written by ``portal.audit.record_access`` and never edited."""

    list_display = ("at", "username", "action", "target", "ip_address", "user_agent")
    list_filter = ("action", "at")
    search_fields = ("username", "target", "ip_address")
    date_hierarchy = "at"
    list_select_related = ("user",)

    # The admin role reads the audit (it holds no model permission on the portal app's tables).
    def has_module_permission(self, request):
        return roles.is_admin(request.user)

    def has_view_permission(self, request, obj=None):
        return roles.is_admin(request.user)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
