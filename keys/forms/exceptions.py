"""Forms of the exception pages. They only collect input; keys.services.key_exceptions decides and records."""

from django import forms

from keys.choices import BlastRadius, CompensatingControl, ExceptionKind, MigrationTarget, Replaceability
from keys.forms.keys import DateInput, LifecycleForm


class ExceptionRequestForm(LifecycleForm):
    kind = forms.ChoiceField(choices=ExceptionKind.choices, widget=forms.RadioSelect)
    business_justification = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}), max_length=4000, required=False,
        help_text="Why the key must stay an API key for now.",
    )
    blast_radius = forms.ChoiceField(choices=[("", "—")] + BlastRadius.choices, required=False)
    replaceability = forms.ChoiceField(choices=[("", "—")] + Replaceability.choices, required=False)
    compensating_controls = forms.MultipleChoiceField(
        choices=CompensatingControl.choices, widget=forms.CheckboxSelectMultiple, required=False,
    )
    other_controls = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}), max_length=2000, required=False, label="Other controls",
    )
    migration_target = forms.ChoiceField(
        choices=[("", "—")] + MigrationTarget.choices, required=False, label="Migration target",
        help_text="Transitional: what the key is replaced by.",
    )
    migration_plan = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), max_length=4000, required=False)
    end_date = forms.DateField(required=False, widget=DateInput, help_text="Transitional: when the migration is done.")
    risk_acceptance = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}), max_length=4000, required=False,
        help_text="Permanent: the formal acceptance of the residual risk, and who accepts it.",
    )
    review_date = forms.DateField(required=False, widget=DateInput, help_text="Permanent: when the acceptance is reviewed.")

    def service_kwargs(self) -> dict:
        return dict(self.cleaned_data)


class ApproveExceptionForm(LifecycleForm):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), max_length=2000, required=False,
                             label="Note (optional)")


class ReasonForm(LifecycleForm):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), max_length=2000, required=False)


class RenewExceptionForm(ReasonForm):
    review_date = forms.DateField(required=False, widget=DateInput, label="New review date")
    field_order = ["review_date", "reason"]
