"""Forms of the contact pages. They only collect input; contacts.access decides and records."""

from django import forms
from django.contrib.auth.forms import AuthenticationForm

from core.errors import ServiceErrorsMixin
from keys.choices import ContractStatus
from keys.models import ApiKey, Customer


class PortalAuthenticationForm(AuthenticationForm):
    """The password sign-in, which customer contacts never use: they sign in with a link and a code."""

    def confirm_login_allowed(self, user):
        super().confirm_login_allowed(user)
        if hasattr(user, "customer_contact"):
            raise forms.ValidationError(
                "Customer contacts sign in with the link we email them, not with a password.", code="contact"
            )


class InviteForm(ServiceErrorsMixin, forms.Form):
    customer = forms.ModelChoiceField(
        queryset=Customer.objects.exclude(contract_status=ContractStatus.ENDED).order_by("name"),
        error_messages={"required": "Choose the customer.", "invalid_choice": "Choose a customer from the list."},
    )
    name = forms.CharField(max_length=200, error_messages={"required": "Give the contact's name."})
    email = forms.EmailField(
        max_length=254, help_text="The link and the one-time codes go to this address.",
        error_messages={"required": "Give the contact's email address.", "invalid": "Enter a valid email address."},
    )


class AssignKeyForm(ServiceErrorsMixin, forms.Form):
    key = forms.ModelChoiceField(queryset=ApiKey.objects.none(),
                                 error_messages={"required": "Choose a key.", "invalid_choice": "Choose a key from the list."})

    def __init__(self, *args, contact, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["key"].queryset = (
            ApiKey.objects.live().filter(workflow__customer=contact.customer_id).exclude(owner=contact.user_id)
            .select_related("workflow").order_by("label")
        )
        self.fields["key"].label_from_instance = lambda key: f"{key.label} ({key.prefix}…) · {key.workflow.name}"


class DeactivateForm(ServiceErrorsMixin, forms.Form):
    reason = forms.CharField(max_length=200, error_messages={"required": "Say why the contact no longer has access."})


class EraseForm(ServiceErrorsMixin, forms.Form):
    reason = forms.CharField(
        max_length=200, label="Erasure request",
        help_text="The request this answers (for example its reference). Name and email are erased for good.",
        error_messages={"required": "Say why the personal data is erased (the request it answers)."})


class CodeForm(ServiceErrorsMixin, forms.Form):
    code = forms.RegexField(
        label="One-time code from your email", regex=r"^\s*\d{6}\s*$", max_length=20,
        error_messages={"required": "Enter the 6-digit code.", "invalid": "Enter the 6-digit code."},
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}),
    )


class ContactItemFilterForm(forms.Form):
    status = forms.ChoiceField(choices=[("", "Waiting for you"), ("decided", "Decided")], required=False,
                               label="Show")
