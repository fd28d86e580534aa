from django.contrib import admin, messages
from django.http import HttpResponseNotAllowed

from core import roles
from core.errors import ServiceError
from core.models import AccessRecord, ChainCheckpoint, ChainErasure, ChainPurge

admin.site.site_header = "API key attestation portal — administration"
admin.site.site_title = "Key portal admin"
admin.site.index_title = "Customers, workflows, issuing systems and keys"
admin.site.site_url = "/"


class ReadOnlyAdminMixin:
    """Records written only by their service (events, audit, tokens, decisions): the admin shows them and
    changes nothing. Before a ModelAdmin (or an inline) in the bases."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class NoRevertMixin:
    """For a SimpleHistoryAdmin of a governed model: its past versions are shown, never restored, since a
    revert would bring back an old state (a status, an owner, a decision) without the service's rules."""

    def revert_disabled(self, request, obj=None):
        return True

    def history_form_view(self, request, object_id, version_id, extra_context=None):
        if request.method != "GET":
            return HttpResponseNotAllowed(["GET"])
        return super().history_form_view(request, object_id, version_id, extra_context)


def apply_to_selected(model_admin, request, queryset, step, *, verb: str, noun: str) -> int:
    """An admin action through a service: ``step(obj, actor)`` on each selected object, each applied or refused
    on its own; every refusal is listed by object and the applied ones are counted."""
    done = 0
    for obj in queryset:
        try:
            step(obj, request.user)
        except ServiceError as refused:
            model_admin.message_user(request, f"{obj}: {refused}", messages.ERROR)
        else:
            done += 1
    if done:
        model_admin.message_user(request, f"{verb.capitalize()}: {done} {noun}{'s' if done != 1 else ''}.",
                                 messages.SUCCESS)
    return done


@admin.register(AccessRecord)
class AccessRecordAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The access audit, read-only: records are written by ``core.audit.record_access`` and never edited."""

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


class ChainRecordAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """What the chain records about itself (erasures, purges, checkpoints), read-only, for admins."""

    def has_module_permission(self, request):
        return roles.is_admin(request.user)

    def has_view_permission(self, request, obj=None):
        return roles.is_admin(request.user)


@admin.register(ChainErasure)
class ChainErasureAdmin(ChainRecordAdmin):
    list_display = ("at", "subject", "actor", "reason")
    list_select_related = ("actor",)
    exclude = ("digests",)


@admin.register(ChainPurge)
class ChainPurgeAdmin(ChainRecordAdmin):
    list_display = ("at", "model_label", "up_to_id", "count", "older_than", "reason")
    exclude = ("record_ids",)


@admin.register(ChainCheckpoint)
class ChainCheckpointAdmin(ChainRecordAdmin):
    list_display = ("pk", "made_at", "scope", "checked")
    list_filter = ("scope",)
