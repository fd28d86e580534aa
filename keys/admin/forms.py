"""Forms of the key registry's admin: the lifecycle and exception actions, a key's change form and the
registration of a key through the lifecycle service."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.contrib.admin import helpers
from django.contrib.admin.widgets import AdminDateWidget, AutocompleteSelect
from django.contrib.auth import get_user_model

from core.errors import ServiceErrorsMixin
from keys.choices import RiskTier
from keys.fingerprints import MAX_PREFIX_LENGTH
from keys.models import (
    ApiKey,
    IssuingSystem,
    Workflow,
)
from keys.services import lifecycle


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
        if instance.pk and "steward" in cleaned and cleaned["steward"] is not None:
            errors.update(lifecycle.custody_errors(instance.workflow.customer_id, steward=cleaned["steward"]))
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


class ExceptionActionForm(helpers.ActionForm):
    reason = forms.CharField(required=False, max_length=2000,
                             help_text="Recorded with the decision; needed to reject or withdraw.")
