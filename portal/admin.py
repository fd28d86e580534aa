from django.contrib import admin

from .models import AccessRecord


@admin.register(AccessRecord)
class AccessRecordAdmin(admin.ModelAdmin):
    """The access audit, read-only: records are written by ``portal.audit.record_access`` and never edited."""

    list_display = ("at", "username", "action", "target", "ip_address", "user_agent")
    list_filter = ("action", "at")
    search_fields = ("username", "target", "ip_address")
    date_hierarchy = "at"
    list_select_related = ("user",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
