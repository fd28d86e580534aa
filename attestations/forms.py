"""Forms of the owner's inbox. They only collect input; attestations.campaigns decides and records."""

from django import forms

from keys.models import Customer
from portal.errors import ServiceError

from .choices import Decision
from .models import Campaign


class DecisionForm(forms.Form):
    """One decision on one item; the campaign service checks every rule and may refuse it."""

    decision: str = ""
    justification = forms.CharField(required=False, max_length=2000, strip=True)

    def service_kwargs(self) -> dict:
        return {"decision": self.decision, "justification": self.cleaned_data.get("justification", "")}

    def add_campaign_errors(self, error: ServiceError) -> None:
        for field, messages in error.errors.items():
            target = field if field in self.fields else None
            for message in messages:
                self.add_error(target, message)


class ConfirmForm(DecisionForm):
    decision = Decision.CONFIRM
    affirm = forms.BooleanField(required=False, label="I affirm the purpose, scope and ownership are still right")
    reaffirm_exception = forms.BooleanField(
        required=False, label="I re-affirm the justification of the exception and its compensating controls"
    )

    def service_kwargs(self) -> dict:
        return {
            **super().service_kwargs(),
            "affirm": self.cleaned_data.get("affirm", False),
            "reaffirm_exception": self.cleaned_data.get("reaffirm_exception", False),
        }


class ReleaseForm(DecisionForm):
    decision = Decision.RELEASE


class NamedPersonForm(DecisionForm):
    to = forms.CharField(required=False, max_length=150, label="Username")

    def service_kwargs(self) -> dict:
        return {**super().service_kwargs(), "to": self.cleaned_data.get("to", "")}


class ReassignForm(NamedPersonForm):
    decision = Decision.REASSIGN


class DelegateForm(NamedPersonForm):
    decision = Decision.DELEGATE


DECISION_FORMS: dict[str, type[DecisionForm]] = {
    form.decision: form for form in (ConfirmForm, ReleaseForm, ReassignForm, DelegateForm)
}


class ItemIdsField(forms.Field):
    """Item ids ticked in the inbox. Which of them the user may decide is the service's question."""

    widget = forms.MultipleHiddenInput
    default_error_messages = {"required": "Select the items to confirm.", "invalid": "Unknown item."}

    def to_python(self, value):
        if not value:
            return []
        try:
            return sorted({int(v) for v in value})
        except (TypeError, ValueError):
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid") from None


class BulkConfirmForm(forms.Form):
    items = ItemIdsField()
    justification = forms.CharField(required=False, max_length=2000, strip=True)
    affirm = forms.BooleanField(required=False)


class InboxFilterForm(forms.Form):
    PENDING = "pending"
    DECIDED = "decided"
    STATUS_CHOICES = [("", "Pending and recently decided"), (PENDING, "Pending"), (DECIDED, "Decided")]

    status = forms.ChoiceField(choices=STATUS_CHOICES, required=False)
    campaign = forms.ModelChoiceField(queryset=Campaign.objects.none(), required=False, empty_label="Any campaign")
    customer = forms.ModelChoiceField(queryset=Customer.objects.none(), required=False, empty_label="Any customer")

    def __init__(self, *args, items, **kwargs):
        """``items`` is the user's inbox queryset: the choices are the campaigns and customers it reaches."""
        super().__init__(*args, **kwargs)
        self.fields["campaign"].queryset = Campaign.objects.filter(
            pk__in=items.values("campaign_id")
        ).order_by("-launched_at", "name")
        self.fields["customer"].queryset = Customer.objects.filter(
            pk__in=items.values("key__workflow__customer_id")
        ).order_by("name")
