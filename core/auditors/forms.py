"""Forms of the auditor pages. They only collect input; core.auditors.services decides and records."""

from django import forms
from django.contrib.auth import get_user_model
from django.utils import timezone

from core import roles
from core.auditors import services
from core.errors import ServiceErrorsMixin


class DateInput(forms.DateInput):
    input_type = "date"

    def __init__(self, attrs=None):
        super().__init__(attrs=attrs, format="%Y-%m-%d")


def auditor_accounts():
    return get_user_model().objects.filter(is_active=True, groups__name=roles.AUDITOR).order_by("username")


class AuditorChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj):
        full_name = obj.get_full_name()
        return f"{obj.get_username()} ({full_name})" if full_name else obj.get_username()


class GrantForm(ServiceErrorsMixin, forms.Form):
    auditor = AuditorChoiceField(
        queryset=auditor_accounts(), required=False, label="Existing auditor", empty_label="A new auditor (below)",
        help_text="An auditor who had access before. Leave it on \"a new auditor\" to create an account.",
        error_messages={"invalid_choice": "Choose an auditor from the list."},
    )
    username = forms.CharField(max_length=150, required=False, label="New auditor's username",
                               widget=forms.TextInput(attrs={"autocomplete": "off"}))
    name = forms.CharField(max_length=150, required=False, label="New auditor's name")
    email = forms.EmailField(max_length=254, required=False, label="New auditor's email",
                             help_text="The link to choose a password goes there: the account has none until then.",
                             error_messages={"invalid": "Enter a valid email address."})
    engagement = forms.CharField(max_length=200, help_text="The audit and its reference, as the access log will name it.",
                                 error_messages={"required": "Name the engagement the access is for."})
    starts_on = forms.DateField(required=False, widget=DateInput, label="First day",
                                help_text="Empty: from now.", error_messages={"invalid": "Enter a date."})
    ends_on = forms.DateField(widget=DateInput, label="Last day",
                              help_text="Access ends at midnight after this day.",
                              error_messages={"required": "Give the last day of access: auditor access always ends.",
                                              "invalid": "Enter a date."})

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["auditor"].queryset = auditor_accounts()
        self.fields["starts_on"].widget.attrs["min"] = timezone.localdate().isoformat()

    def clean(self):
        """Every problem at once: the service's rules for the fields that passed their own checks (a missing
        username is said beside a missing engagement, not after it is given)."""
        cleaned = super().clean()
        fields = ("auditor", "username", "name", "email", "engagement", "starts_on", "ends_on")
        problems = services.grant_problems(**{name: cleaned.get(name) for name in fields})
        for field, messages in problems.items():
            if field in self.fields and field not in self.errors:
                for message in messages:
                    self.add_error(field, message)
        return cleaned

    def service_kwargs(self) -> dict:
        data = self.cleaned_data
        return {name: data[name] for name in ("auditor", "username", "name", "email", "engagement", "starts_on",
                                              "ends_on")}


class EndGrantForm(ServiceErrorsMixin, forms.Form):
    reason = forms.CharField(max_length=200, required=False, label="Why (optional)")
