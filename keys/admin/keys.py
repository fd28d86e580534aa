"""Admin of API keys, their lifecycle events and object permissions: state changes are admin actions
that call the lifecycle service, and adding a key goes through ``register_key``."""

import datetime

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters
from guardian.admin import GuardedModelAdminMixin
from simple_history.admin import SimpleHistoryAdmin

from core.admin import NoRevertMixin, ReadOnlyAdminMixin, apply_to_selected
from core.history import attribute_change
from keys.admin.forms import ApiKeyChangeForm, ApiKeyRegistrationForm, LifecycleActionForm
from keys.choices import RevocationReason
from keys.models import (
    ApiKey,
    ApiKeyGroupObjectPermission,
    ApiKeyUserObjectPermission,
    LifecycleEvent,
    Workflow,
)
from keys.services import lifecycle

EXPIRY_WARNING_DAYS = 14
_KEY_FIELDS = {f.name for f in ApiKey._meta.get_fields()}
KEY_FLAGS = tuple(f for f in ("rotation_required", "orphaned", "stale", "unattested") if f in _KEY_FIELDS)



class KeyAttentionFilter(admin.SimpleListFilter):
    """The questions an administrator asks of the register: what expires, what is due, what is unused."""

    title = "needs attention"
    parameter_name = "attention"

    def lookups(self, request, model_admin):
        return (
            ("expiring", f"Expires within {EXPIRY_WARNING_DAYS} days"),
            ("review_due", "Due for review"),
            ("never_used", "Never used"),
        )

    def queryset(self, request, queryset):
        today = timezone.localdate()
        if self.value() == "expiring":
            return queryset.live().filter(expires_on__lte=today + datetime.timedelta(days=EXPIRY_WARNING_DAYS))
        if self.value() == "review_due":
            return queryset.live().filter(next_review_on__lte=today)
        if self.value() == "never_used":
            return queryset.filter(last_used_at__isnull=True)
        return queryset


class WorkflowListFilter(admin.RelatedOnlyFieldListFilter):
    """Workflows that have keys, named with their customer in one query."""

    def field_choices(self, field, request, model_admin):
        used = model_admin.get_queryset(request).order_by().values("workflow")
        return [(w.pk, str(w)) for w in Workflow.objects.filter(pk__in=used).select_related("customer")]


class LifecycleEventInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = LifecycleEvent
    fields = ("at", "action", "from_status", "to_status", "actor", "reason")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("actor")


@admin.register(ApiKey)
class ApiKeyAdmin(NoRevertMixin, GuardedModelAdminMixin, SimpleHistoryAdmin):
    form = ApiKeyChangeForm
    action_form = LifecycleActionForm
    inlines = (LifecycleEventInline,)
    list_display = (
        "label",
        "prefix",
        "customer",
        "workflow_name",
        "environment",
        "owner",
        "status",
        "risk_tier",
        "expires_on",
        "next_review_on",
        "last_used_at",
        *KEY_FLAGS,
    )
    list_filter = (
        "status",
        KeyAttentionFilter,
        ("workflow__customer", admin.RelatedOnlyFieldListFilter),
        ("workflow", WorkflowListFilter),
        "workflow__environment",
        "risk_tier",
        "issuing_system",
        *KEY_FLAGS,
    )
    search_fields = (
        "label",
        "prefix",
        "=fingerprint",
        "owner__username",
        "owner__email",
        "steward__username",
        "workflow__name",
        "workflow__customer__name",
        "workflow__customer__external_id",
        "approval_reference",
    )
    list_select_related = ("workflow__customer", "owner", "issuing_system")
    autocomplete_fields = ("workflow", "owner", "steward")
    date_hierarchy = "expires_on"
    history_list_display = ("status", "owner", "rotation_required")
    actions = ("approve_selected", "suspend_selected", "reinstate_selected", "revoke_selected", "expire_selected")
    fieldsets = (
        ("Key", {"fields": ("label", "workflow", "issuing_system", "prefix", "fingerprint", "pepper_version", "scopes")}),
        ("Ownership", {"fields": ("owner", "steward")}),
        ("Status", {"fields": ("status", "status_changed_at", "revocation_reason", *KEY_FLAGS)}),
        ("Approval", {"fields": ("approved_by", "approved_at", "approval_reference")}),
        ("Risk and dates", {"fields": (
            "risk_tier", "issued_on", "expires_on", "next_review_on",
            "last_used_at", "last_rotated_at", "last_attested_at", "created_at", "updated_at",
        )}),
    )
    registration_fieldsets = (
        (None, {"fields": ("workflow", "issuing_system", "label", "owner", "steward", "risk_tier", "scopes")}),
        ("Identity", {
            "fields": ("secret", "fingerprint", "prefix"),
            "description": "Give the secret or its fingerprint. Only the prefix and the fingerprint are kept.",
        }),
        ("Dates", {"fields": ("issued_on", "expires_on", "next_review_on")}),
        (None, {"fields": ("reason",)}),
    )
    # Set by keys.services.lifecycle (or by sweeps); editing them here would bypass the lifecycle's rules.
    lifecycle_fields = (
        "workflow", "issuing_system", "prefix", "fingerprint", "pepper_version", "owner",
        "status", "status_changed_at", "revocation_reason", *KEY_FLAGS,
        "approved_by", "approved_at", "approval_reference",
        "issued_on", "last_used_at", "last_rotated_at", "last_attested_at", "created_at", "updated_at",
    )

    @admin.display(description="Customer", ordering="workflow__customer__name")
    def customer(self, obj):
        return obj.workflow.customer

    @admin.display(description="Workflow", ordering="workflow__name")
    def workflow_name(self, obj):
        return obj.workflow.name

    @admin.display(description="Environment", ordering="workflow__environment")
    def environment(self, obj):
        return obj.workflow.get_environment_display()

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and obj.is_final:
            return tuple(f for fields in (fs[1]["fields"] for fs in self.fieldsets) for f in fields)
        return self.lifecycle_fields

    def has_delete_permission(self, request, obj=None):
        # A key's record and its events are evidence: keys are revoked, never deleted.
        return False

    def save_model(self, request, obj, form, change):
        if not change:
            raise PermissionDenied("Keys are added through register_key.")
        attribute_change(obj, request.user, "Edited in the Django admin")
        super().save_model(request, obj, form, change)

    @method_decorator(sensitive_post_parameters("secret"))
    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = ApiKeyRegistrationForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            key = form.register(request.user)
            if key is not None:
                self.log_addition(request, key, "Registered through the key lifecycle.")
                self.message_user(request, f"Registered {key}; it is pending approval.", messages.SUCCESS)
                if "_addanother" in request.POST:
                    return HttpResponseRedirect(request.path)
                return HttpResponseRedirect(reverse("admin:keys_apikey_change", args=[key.pk]))
        adminform = helpers.AdminForm(form, list(self.registration_fieldsets), {}, model_admin=self)
        context = {
            **self.admin_site.each_context(request),
            "title": "Register API key",
            "subtitle": None,
            "adminform": adminform,
            "object_id": None,
            "original": None,
            "is_popup": False,
            "to_field": None,
            "media": self.media + adminform.media,
            "inline_admin_formsets": [],
            "errors": helpers.AdminErrorList(form, []),
            "preserved_filters": self.get_preserved_filters(request),
            **(extra_context or {}),
        }
        return self.render_change_form(request, context, add=True, form_url=form_url)

    def _apply(self, request, queryset, verb, step, *, reason_required=False):
        reason = (request.POST.get("reason") or "").strip()
        if reason_required and not reason:
            self.message_user(request, f"Give a reason to {verb} keys.", messages.ERROR)
            return
        apply_to_selected(self, request, queryset.select_related("owner"),
                          lambda key, actor: step(key, actor, reason), verb=verb, noun="key")

    @admin.action(description="Approve selected pending keys", permissions=["change"])
    def approve_selected(self, request, queryset):
        self._apply(request, queryset, "approve", lambda key, actor, reason: lifecycle.approve_key(
            key, actor=actor, reference=reason, reason=reason or "Approved in the Django admin"))

    @admin.action(description="Suspend selected keys", permissions=["change"])
    def suspend_selected(self, request, queryset):
        self._apply(request, queryset, "suspend", lambda key, actor, reason: lifecycle.suspend_key(
            key, actor=actor, reason=reason), reason_required=True)

    @admin.action(description="Reinstate selected suspended keys", permissions=["change"])
    def reinstate_selected(self, request, queryset):
        self._apply(request, queryset, "reinstate", lambda key, actor, reason: lifecycle.reinstate_key(
            key, actor=actor, reason=reason), reason_required=True)

    @admin.action(description="Revoke selected keys (manual, final)", permissions=["change"])
    def revoke_selected(self, request, queryset):
        self._apply(request, queryset, "revoke", lambda key, actor, reason: lifecycle.revoke_key(
            key, actor=actor, reason_code=RevocationReason.MANUAL, reason=reason), reason_required=True)

    @admin.action(description="Expire selected keys past their expiry date", permissions=["change"])
    def expire_selected(self, request, queryset):
        self._apply(request, queryset, "expire", lambda key, actor, reason: lifecycle.expire_key(
            key, actor=actor, reason=reason))


@admin.register(LifecycleEvent)
class LifecycleEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Append-only: events are written by keys.services.lifecycle and only read here."""

    list_display = ("at", "key", "action", "from_status", "to_status", "actor", "short_reason")
    list_filter = ("action", "to_status", "key__workflow__customer")
    search_fields = ("key__label", "key__prefix", "actor__username", "reason")
    list_select_related = ("key", "actor")
    date_hierarchy = "at"

    @admin.display(description="Reason")
    def short_reason(self, obj):
        return obj.reason if len(obj.reason) <= 80 else f"{obj.reason[:79]}…"


class ObjectPermissionAdmin(admin.ModelAdmin):
    """Grants are made on a key's "Object permissions" page; listed here to audit and withdraw them."""

    list_select_related = ("content_object", "permission")
    list_filter = ("permission",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(ApiKeyUserObjectPermission)
class ApiKeyUserObjectPermissionAdmin(ObjectPermissionAdmin):
    list_display = ("content_object", "user", "permission")
    list_select_related = ("content_object", "permission", "user")
    search_fields = ("user__username", "content_object__label", "content_object__prefix")


@admin.register(ApiKeyGroupObjectPermission)
class ApiKeyGroupObjectPermissionAdmin(ObjectPermissionAdmin):
    list_display = ("content_object", "group", "permission")
    list_select_related = ("content_object", "permission", "group")
    search_fields = ("group__name", "content_object__label", "content_object__prefix")


