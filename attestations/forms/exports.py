"""The form behind "Request an export". It only collects input; attestations.services.evidence decides."""

from django import forms

from attestations.models import Campaign, EvidenceExport
from attestations.services import evidence
from attestations.services.exports import SAMPLE_SIZE_MESSAGE
from core import roles
from core.errors import ServiceErrorsMixin
from keys.models import ApiKey, Customer


class ExportRequestForm(ServiceErrorsMixin, forms.Form):
    kind = forms.ChoiceField(choices=EvidenceExport.Kind.choices)
    campaign = forms.ModelChoiceField(queryset=Campaign.objects.none(), required=False)
    key = forms.ModelChoiceField(queryset=ApiKey.objects.none(), required=False)
    customer = forms.ModelChoiceField(queryset=Customer.objects.none(), required=False)
    period_start = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}),
                                   help_text="Customer report only; empty: from the beginning.")
    period_end = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}),
                                 help_text="Customer report only; empty: until now.")
    sample_size = forms.IntegerField(
        required=False, min_value=evidence.SAMPLE_SIZE_MIN, max_value=evidence.SAMPLE_SIZE_MAX,
        error_messages={"invalid": SAMPLE_SIZE_MESSAGE, "min_value": SAMPLE_SIZE_MESSAGE,
                        "max_value": SAMPLE_SIZE_MESSAGE},
        help_text="Campaign report only: how many confirmed decisions to print, drawn at random with a seed the "
                  "report prints. Empty: 25, 40 or 60 by the number of confirmed decisions (all of them when fewer).")
    print_all_items = forms.BooleanField(
        required=False, label="Print every item",
        help_text="Campaign report only. Off: the report prints every exception, release, reassignment, revocation, "
                  "late and default decision, and the sample. Every item is attached as CSV and JSON either way.")

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        if roles.sees_everything(user):
            self.fields["campaign"].queryset = Campaign.objects.order_by("-created_at")
            self.fields["key"].queryset = ApiKey.objects.select_related("workflow__customer")
            self.fields["customer"].queryset = Customer.objects.order_by("name")
        else:
            self.fields["kind"].choices = [(EvidenceExport.Kind.KEY, EvidenceExport.Kind.KEY.label)]
            self.fields["key"].queryset = ApiKey.objects.visible_to(user).filter(owner=user).select_related("workflow__customer")
            for name in ("campaign", "customer", "period_start", "period_end", "sample_size", "print_all_items"):
                del self.fields[name]

    def service_kwargs(self) -> dict:
        data = self.cleaned_data
        kind = data["kind"]
        kwargs = {"kind": kind, kind: data.get(kind)}
        if kind == EvidenceExport.Kind.CUSTOMER:
            kwargs.update(period_start=data.get("period_start"), period_end=data.get("period_end"))
        # Given for any kind, so that a sample size on a dossier is refused rather than dropped.
        kwargs.update(sample_size=data.get("sample_size"), print_all_items=bool(data.get("print_all_items")))
        return kwargs
