"""The Django admin for the key registry.

An API key's state is never changed by a plain admin save: lifecycle fields are read-only, adding
a key goes through ``keys.services.lifecycle.register_key`` and state changes are admin actions that call
the lifecycle service. The secret is never a field of any admin form except the write-only
registration field, which is fingerprinted and dropped.
"""

import datetime

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.widgets import AdminDateWidget, AutocompleteSelect
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import Count
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters
from guardian.admin import GuardedModelAdminMixin
from simple_history.admin import SimpleHistoryAdmin

from core.admin import NoRevertMixin, ReadOnlyAdminMixin, apply_to_selected
from core.errors import ServiceErrorsMixin
from core.history import attribute_change
from keys.choices import RevocationReason, RiskTier
from keys.fingerprints import MAX_PREFIX_LENGTH
from keys.models import (
    ApiKey,
    ApiKeyGroupObjectPermission,
    ApiKeyUserObjectPermission,
    Customer,
    Exposure,
    IntegrationToken,
    IssuingSystem,
    KeyException,
    LifecycleEvent,
    OwnerProfile,
    Workflow,
)
from keys.services import key_exceptions as exceptions
from keys.services import lifecycle

admin.site.site_header = "API key attestation portal — administration"
admin.site.site_title = "Key portal admin"
admin.site.index_title = "Customers, workflows, issuing systems and keys"
admin.site.site_url = "/"

EXPIRY_WARNING_DAYS = 14
_KEY_FIELDS = {f.name for f in ApiKey._meta.get_fields()}
KEY_FLAGS = tuple(f for f in ("rotation_required", "orphaned", "stale", "unattested") if f in _KEY_FIELDS)


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


class LifecycleActionForm(helpers.ActionForm):
    reason = forms.CharField(
        required=False,
        max_length=500,
        help_text="Recorded with each change (an approval also keeps it as its reference); needed to suspend, reinstate, revoke.",
    )


class ApiKeyChangeForm(ServiceErrorsMixin, forms.ModelForm):
    """Edits the descriptive fields of a key; the lifecycle fields are read-only in the admin."""

    class Meta:
        model = ApiKey
        fields = ("label", "scopes", "steward", "risk_tier", "expires_on", "next_review_on")

    def clean_scopes(self):
        scopes = self.cleaned_data.get("scopes")
        if scopes in (None, ""):
            return []
        if not isinstance(scopes, list) or not all(isinstance(s, str) and s.strip() for s in scopes):
            raise forms.ValidationError('Scopes are a JSON list of strings, e.g. ["read:cases"].')
        return sorted({s.strip() for s in scopes})

    def clean(self):
        cleaned = super().clean()
        instance = self.instance

        def value(name):
            return cleaned[name] if name in self.fields and name in cleaned else getattr(instance, name)

        refusal = lifecycle.scope_change_refusal(instance) if instance.pk else ""
        if refusal and "scopes" in cleaned and sorted(cleaned["scopes"] or []) != sorted(instance.scopes or []):
            self.add_error("scopes", refusal)
        errors = lifecycle.validate_dates(value("issued_on"), value("expires_on"), value("next_review_on"))
        if errors:
            self.add_service_errors(lifecycle.LifecycleError(errors))
        return cleaned


def _user_widget(field_name):
    return AutocompleteSelect(ApiKey._meta.get_field(field_name), admin.site)


class ApiKeyRegistrationForm(ServiceErrorsMixin, forms.Form):
    """Registers a key through the lifecycle: the secret is fingerprinted and dropped."""

    workflow = forms.ModelChoiceField(Workflow.objects.select_related("customer"), widget=_user_widget("workflow"))
    issuing_system = forms.ModelChoiceField(IssuingSystem.objects.all())
    label = forms.CharField(max_length=200)
    owner = forms.ModelChoiceField(get_user_model().objects.filter(is_active=True), widget=_user_widget("owner"))
    steward = forms.ModelChoiceField(
        get_user_model().objects.filter(is_active=True), required=False, widget=_user_widget("steward")
    )
    risk_tier = forms.ChoiceField(choices=RiskTier.choices, initial=RiskTier.MEDIUM)
    scopes = forms.CharField(required=False, help_text="Separated by commas or spaces, e.g. read:cases write:alerts.")
    secret = forms.CharField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Fingerprinted with HMAC-SHA256 and dropped: it is never stored or shown again.",
    )
    fingerprint = forms.CharField(
        required=False, max_length=64, help_text="Or the 64-character HMAC-SHA256 fingerprint, with a prefix."
    )
    prefix = forms.CharField(
        required=False,
        max_length=MAX_PREFIX_LENGTH,
        help_text="The visible start of the key, e.g. sk_live_4f2a. Derived from the secret when left empty.",
    )
    issued_on = forms.DateField(required=False, widget=AdminDateWidget)
    expires_on = forms.DateField(required=False, widget=AdminDateWidget)
    next_review_on = forms.DateField(required=False, widget=AdminDateWidget)
    reason = forms.CharField(required=False, max_length=500, help_text="Why the key exists (recorded in its history).")

    def register(self, actor) -> ApiKey | None:
        """Call the lifecycle; on refusal put its messages on the form and return None."""
        data = dict(self.cleaned_data)
        scopes = [s for s in data.pop("scopes", "").replace(",", " ").split() if s]
        try:
            return lifecycle.register_key(actor=actor, scopes=scopes, **data)
        except lifecycle.LifecycleError as exc:
            self.add_service_errors(exc)
            return None


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


class ExceptionActionForm(helpers.ActionForm):
    reason = forms.CharField(required=False, max_length=2000,
                             help_text="Recorded with the decision; needed to reject or withdraw.")


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
    """Read-only: exposures are reported in the portal or the API, through keys.services.exposures."""

    list_display = ("pk", "reported_at", "key", "location", "source", "reported_by")
    list_filter = ("source",)
    search_fields = ("location", "key__label", "key__prefix")
    list_select_related = ("key", "reported_by")
    readonly_fields = ("key", "fingerprint", "location", "notes", "source", "reported_by", "reported_at")
