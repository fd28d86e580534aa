"""Forms of the compliance campaign pages. They only collect input; attestations.services.campaigns decides."""

import re

from django import forms

from attestations.choices import DefaultAction
from attestations.models import CampaignSchedule
from core.errors import ServiceErrorsMixin
from core.numbers import ModelMultipleChoiceField
from keys.choices import Environment, RiskTier
from keys.models import Customer, Workflow

DAY_SEPARATOR = re.compile(r"[\s,;]+")
MAX_DAYS = 365


class WorkflowChoiceField(ModelMultipleChoiceField):
    def label_from_instance(self, obj):
        return f"{obj.customer.name} · {obj.name} ({obj.get_environment_display()})"


class CampaignForm(ServiceErrorsMixin, forms.Form):
    name = forms.CharField(max_length=200, help_text="e.g. 2026-Q4 production keys.")
    customers = ModelMultipleChoiceField(
        queryset=Customer.objects.order_by("name"), required=False,
        widget=forms.SelectMultiple(attrs={"size": 6}), help_text="None selected: every customer.",
    )
    workflows = WorkflowChoiceField(
        queryset=Workflow.objects.select_related("customer").order_by("customer__name", "name"), required=False,
        widget=forms.SelectMultiple(attrs={"size": 6}), help_text="None selected: every workflow.",
    )
    environments = forms.MultipleChoiceField(
        choices=Environment.choices, required=False, widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every environment.",
    )
    risk_tiers = forms.MultipleChoiceField(
        choices=RiskTier.choices, required=False, widget=forms.CheckboxSelectMultiple, label="Risk tiers",
        help_text="None ticked: every risk tier.",
    )
    due_for_review_only = forms.BooleanField(
        required=False, label="Only keys due for review",
        help_text="Keys whose next review date has come, or that were never reviewed.",
    )
    duration_days = forms.IntegerField(
        min_value=1, max_value=MAX_DAYS, initial=14, label="Duration (days)", help_text="Days owners have to decide."
    )
    reminder_days = forms.CharField(
        required=False, initial="3, 7, 12", label="Reminder days",
        help_text="Days after launch on which owners with pending items are reminded, separated by commas.",
    )
    escalation_days = forms.IntegerField(
        required=False, min_value=1, max_value=MAX_DAYS, label="Escalation day",
        help_text="Day after launch when pending items go to the owner's manager. Empty: no escalation.",
    )
    default_action = forms.ChoiceField(
        choices=DefaultAction.choices, initial=DefaultAction.SUSPEND, label="On no response",
        help_text="Applied to every undecided item when the campaign closes.",
    )
    require_justification = forms.BooleanField(
        required=False, initial=True, label="Require a justification to confirm"
    )
    review_cadence_days = forms.IntegerField(
        min_value=1, max_value=MAX_DAYS * 3, initial=90, label="Review cadence (days)",
        help_text="A confirmed key is next reviewed this many days later.",
    )
    schedule = forms.ModelChoiceField(
        queryset=CampaignSchedule.objects.all(), required=False, empty_label="No schedule (one-off campaign)",
        help_text="Records the campaign as a run of this schedule; the scope and rules above apply as entered.",
    )

    def clean_name(self):
        return self.cleaned_data["name"].strip()

    def clean_reminder_days(self):
        raw = self.cleaned_data["reminder_days"]
        days = []
        for part in DAY_SEPARATOR.split(raw.strip()):
            if not part:
                continue
            if not part.isdigit() or int(part) < 1:
                raise forms.ValidationError(f"{part!r} is not a whole number of days (1 or more).")
            days.append(int(part))
        return sorted(set(days))

    def clean(self):
        cleaned = super().clean()
        duration = cleaned.get("duration_days")
        if duration:
            late = [d for d in cleaned.get("reminder_days") or [] if d >= duration]
            if late:
                self.add_error("reminder_days", f"Reminders must come before the campaign ends (day {duration}).")
            escalation = cleaned.get("escalation_days")
            if escalation is not None and escalation >= duration:
                self.add_error("escalation_days", f"Escalation must come before the campaign ends (day {duration}).")
        return cleaned

    def service_kwargs(self) -> dict:
        """The keyword arguments of attestations.services.campaigns.create_campaign."""
        data = self.cleaned_data
        return {
            "name": data["name"],
            "schedule": data["schedule"],
            "customers": list(data["customers"]),
            "workflows": list(data["workflows"]),
            "environments": list(data["environments"]),
            "risk_tiers": list(data["risk_tiers"]),
            "due_for_review_only": data["due_for_review_only"],
            "duration_days": data["duration_days"],
            "reminder_days": data["reminder_days"],
            "escalation_days": data["escalation_days"],
            "default_action": data["default_action"],
            "require_justification": data["require_justification"],
            "review_cadence_days": data["review_cadence_days"],
        }


class CancelCampaignForm(ServiceErrorsMixin, forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}), max_length=500, label="Why is it cancelled?"
    )


class NoInputForm(ServiceErrorsMixin, forms.Form):
    """Launch and close take no input beyond the button."""
