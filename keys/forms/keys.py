"""Forms of the key pages. They only collect input; keys.services.lifecycle decides and records."""

import re

from django import forms
from django.contrib.auth import get_user_model

from core.errors import ServiceErrorsMixin
from keys.choices import RevocationReason, RiskTier
from keys.models import IssuingSystem, Workflow

SCOPE_SEPARATOR = re.compile(r"[\s,]+")


class DateInput(forms.DateInput):
    input_type = "date"

    def __init__(self, attrs=None):
        super().__init__(attrs=attrs, format="%Y-%m-%d")


def active_users():
    return get_user_model().objects.filter(is_active=True).order_by("username")


class UsernameChoiceField(forms.ModelChoiceField):
    """A user picked by username, the way the API and the import name people."""

    def __init__(self, **kwargs):
        super().__init__(queryset=active_users(), to_field_name="username", **kwargs)

    def label_from_instance(self, obj):
        full_name = obj.get_full_name()
        return f"{obj.get_username()} ({full_name})" if full_name else obj.get_username()


class SecretField(forms.CharField):
    """A submitted secret: never rendered back, never stripped (a stray space is an error, not a fix)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("strip", False)
        kwargs.setdefault("widget", forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}))
        super().__init__(**kwargs)


class LifecycleForm(ServiceErrorsMixin, forms.Form):
    """A form whose submission goes through a lifecycle function that may refuse it."""


class RegisterKeyForm(LifecycleForm):
    workflow = forms.ModelChoiceField(queryset=Workflow.objects.select_related("customer"))
    issuing_system = forms.ModelChoiceField(queryset=IssuingSystem.objects.all())
    label = forms.CharField(max_length=200)
    owner = UsernameChoiceField()
    steward = UsernameChoiceField(required=False)
    secret = SecretField(help_text="Fingerprinted on arrival and dropped; never stored or shown.")
    fingerprint = forms.CharField(
        required=False, max_length=64, help_text="Instead of the secret: its HMAC-SHA256 fingerprint (64 hex characters)."
    )
    prefix = forms.CharField(
        required=False, max_length=32, help_text="The visible start of the key. Derived from the secret when left empty."
    )
    scopes = forms.CharField(required=False, help_text="Separated by commas or spaces, e.g. read:cases write:reports.")
    risk_tier = forms.ChoiceField(choices=RiskTier.choices, initial=RiskTier.MEDIUM)
    issued_on = forms.DateField(required=False, widget=DateInput, help_text="Today when left empty.")
    expires_on = forms.DateField(required=False, widget=DateInput)
    next_review_on = forms.DateField(required=False, widget=DateInput)
    reason = forms.CharField(required=False, max_length=500, label="Change reference or note")

    def clean_scopes(self):
        return [scope for scope in SCOPE_SEPARATOR.split(self.cleaned_data["scopes"]) if scope]

    def lifecycle_kwargs(self) -> dict:
        return dict(self.cleaned_data)


class ReasonForm(LifecycleForm):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), max_length=2000)


class OptionalReasonForm(LifecycleForm):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), max_length=2000, required=False)


class ApproveForm(OptionalReasonForm):
    reference = forms.CharField(required=False, max_length=200, help_text="Change ticket or approval reference.")
    field_order = ["reference", "reason"]


class RevokeForm(OptionalReasonForm):
    reason_code = forms.ChoiceField(choices=RevocationReason.choices, initial=RevocationReason.MANUAL, label="Reason")
    field_order = ["reason_code", "reason"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["reason"].label = "Details"


class RotateForm(OptionalReasonForm):
    secret = SecretField(label="New secret", help_text="Fingerprinted and dropped; never stored or shown.")
    fingerprint = forms.CharField(required=False, max_length=64, help_text="Or the new secret's fingerprint.")
    prefix = forms.CharField(required=False, max_length=32, help_text="The new visible prefix.")
    field_order = ["secret", "fingerprint", "prefix", "reason"]


class ChangeOwnerForm(ReasonForm):
    new_owner = UsernameChoiceField(label="New owner")
    field_order = ["new_owner", "reason"]
