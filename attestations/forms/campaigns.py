"""Forms of the compliance campaign pages. They only collect input; attestations.services.campaigns decides."""

import re

from django import forms

from attestations.choices import MAX_STAGES, MOVABLE_DECISIONS, DefaultAction, MissingSignoff, StageReviewer
from attestations.models import CampaignSchedule
from core.errors import ServiceErrorsMixin
from core.numbers import ModelMultipleChoiceField
from keys.choices import Environment, RiskTier
from keys.models import Customer, Workflow

DAY_SEPARATOR = re.compile(r"[\s,;]+")
MAX_DAYS = 365
MAX_UNUSED_DAYS = 3650
NAMED_USER = "user"
STAGE_NUMBERS = range(1, MAX_STAGES + 1)


def stage_fields(number: int) -> dict[str, forms.Field]:
    """The fields of stage ``number`` of the campaign form. Stage 1's duration is the form's ``duration_days``;
    stages 2 and 3 may be left out ("No stage N") and choose the risk tiers and decisions that move on to them."""
    reviewers = [*StageReviewer.choices, (NAMED_USER, "A named user")]
    if number > 1:
        reviewers = [("", f"No stage {number}"), *reviewers]
    fields = {
        f"stage{number}_reviewer": forms.ChoiceField(
            choices=reviewers, required=False, initial="" if number > 1 else StageReviewer.OWNER,
            label="Reviewer",
        ),
        f"stage{number}_reviewer_user": forms.CharField(
            required=False, max_length=150, label="Named reviewer (username)",
            help_text="Only with \u201cA named user\u201d above.",
        ),
        f"stage{number}_fallback_user": forms.CharField(
            required=False, max_length=150, label="Fallback reviewer (username)",
            help_text="Reviews when the reviewer has departed or has no active manager. Empty: compliance.",
        ),
    }
    if number > 1:
        fields |= {
            f"stage{number}_duration_days": forms.IntegerField(
                required=False, min_value=1, max_value=MAX_DAYS, initial=7, label="Duration (days)",
            ),
            f"stage{number}_risk_tiers": forms.MultipleChoiceField(
                choices=RiskTier.choices, required=False, widget=forms.CheckboxSelectMultiple,
                label="Risk tiers that enter this stage", help_text="Leave all unticked for every item.",
            ),
            f"stage{number}_moves_on": forms.MultipleChoiceField(
                choices=[(d.value, d.label) for d in MOVABLE_DECISIONS], required=False,
                widget=forms.CheckboxSelectMultiple, label=f"Decisions of stage {number - 1} that move on",
                help_text="Leave all unticked for every decision.",
            ),
        }
    return fields


class WorkflowChoiceField(ModelMultipleChoiceField):
    def label_from_instance(self, obj):
        return f"{obj.customer.name} · {obj.name} ({obj.get_environment_display()})"


class CampaignForm(ServiceErrorsMixin, forms.Form):
    name = forms.CharField(max_length=200, help_text="e.g. 2026-Q4 production keys.")
    customers = ModelMultipleChoiceField(
        queryset=Customer.objects.order_by("name"), required=False,
        widget=forms.SelectMultiple(attrs={"size": 6}), help_text="Leave empty for every customer.",
    )
    workflows = WorkflowChoiceField(
        queryset=Workflow.objects.select_related("customer").order_by("customer__name", "name"), required=False,
        widget=forms.SelectMultiple(attrs={"size": 6}), help_text="Leave empty for every workflow.",
    )
    environments = forms.MultipleChoiceField(
        choices=Environment.choices, required=False, widget=forms.CheckboxSelectMultiple,
        help_text="Leave all unticked for every environment.",
    )
    risk_tiers = forms.MultipleChoiceField(
        choices=RiskTier.choices, required=False, widget=forms.CheckboxSelectMultiple, label="Risk tiers",
        help_text="Leave all unticked for every risk tier.",
    )
    due_for_review_only = forms.BooleanField(
        required=False, label="Only keys due for review",
        help_text="Keys whose next review date has come, or that were never reviewed.",
    )
    unused_days = forms.IntegerField(
        required=False, min_value=1, max_value=MAX_UNUSED_DAYS, label="Only keys unused for (days)",
        help_text="Keys not used for at least this many days (never used: issued that long ago). Empty: any.",
    )
    stale_only = forms.BooleanField(required=False, label="Only keys flagged stale")
    rotation_due_only = forms.BooleanField(
        required=False, label="Only keys due for rotation", help_text="Their owner changed since they were last rotated.",
    )
    under_exception_only = forms.BooleanField(required=False, label="Only keys under an approved exception")
    key_filter = forms.CharField(
        required=False, max_length=2000, label="Key-list filter",
        help_text="The keys must also match this filter of the key list (its query string, e.g. "
                  "risk_tier=high&owner=owner1). Empty: no further filter.",
    )
    duration_days = forms.IntegerField(
        min_value=1, max_value=MAX_DAYS, initial=14, label="Duration (days)",
        help_text="Days the stage 1 reviewer has to decide. With later stages, the campaign lasts their sum.",
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
    reminder_every_days = forms.IntegerField(
        required=False, min_value=1, max_value=MAX_DAYS, label="Also remind every (days)",
        help_text="Remind reviewers with pending items every this many days after launch. Empty: only the days above.",
    )
    review_cadence_days = forms.IntegerField(
        min_value=1, max_value=MAX_DAYS * 3, initial=90, label="Review cadence (days)",
        help_text="A confirmed key is next reviewed this many days later.",
    )
    exception_review_cadence_days = forms.IntegerField(
        required=False, min_value=1, max_value=MAX_DAYS * 3, initial=30, label="Review cadence under an exception (days)",
        help_text="A confirmed key under an approved exception is next reviewed this many days later.",
    )
    release_grace_days = forms.IntegerField(
        required=False, min_value=0, max_value=MAX_DAYS, label="Release grace (days)",
        help_text="A released key is suspended this long while its usage is watched, then revoked. 0: revoke at "
                  "once. Empty: the portal's default.",
    )
    missing_signoff = forms.ChoiceField(
        choices=MissingSignoff.choices, required=False, initial=MissingSignoff.KEEP,
        label="When a later stage ends without a sign-off",
        help_text="What an item waiting for a later stage's sign-off gets when that stage ends.",
    )
    separation_of_duties = forms.BooleanField(
        required=False, initial=True, label="Separation of duties from stage 2 on",
        help_text="A reviewer may not decide an item they decided at an earlier stage, nor a key they own, "
                  "steward, registered or approved.",
    )
    # Where the service's refusals of the stages go (shown at the stages' fieldset); never rendered as an input.
    stages = forms.CharField(required=False, widget=forms.HiddenInput)
    schedule = forms.ModelChoiceField(
        queryset=CampaignSchedule.objects.all(), required=False, empty_label="No schedule (one-off campaign)",
        help_text="Records the campaign as a run of this schedule; the scope and rules above apply as entered.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for number in STAGE_NUMBERS:
            self.fields.update(stage_fields(number))

    def stage_rows(self) -> list[dict]:
        """Each stage's bound fields, in the order the page shows them."""
        rows = []
        for number in STAGE_NUMBERS:
            names = [name for name in self.fields if name.startswith(f"stage{number}_")]
            fields = [self[name] for name in names]
            if number == 1:
                fields.insert(3, self["duration_days"])
            rows.append({
                "number": number,
                "fields": [f for f in fields if f.widget_type != "checkboxselectmultiple"],
                "choices": [f for f in fields if f.widget_type == "checkboxselectmultiple"],
            })
        return rows

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

    def clean_key_filter(self):
        return self.cleaned_data["key_filter"].strip().lstrip("?")

    def _stage(self, number: int) -> dict | None:
        """Stage ``number`` in the stored JSON shape, None when left out; a missing username is a field error
        (the service checks that the people named exist)."""
        data = self.cleaned_data
        reviewer = data.get(f"stage{number}_reviewer") or (StageReviewer.OWNER.value if number == 1 else "")
        named = (data.get(f"stage{number}_reviewer_user") or "").strip()
        if not reviewer:
            return None
        if reviewer == NAMED_USER:
            if not named:
                self.add_error(f"stage{number}_reviewer_user", "Name the user who reviews this stage.")
            reviewer = named
        elif named:
            self.add_error(f"stage{number}_reviewer_user", "Choose \u201cA named user\u201d as reviewer, or leave this empty.")
        duration = data.get("duration_days") if number == 1 else data.get(f"stage{number}_duration_days")
        if duration is None:
            if number > 1 and f"stage{number}_duration_days" not in self.errors:
                self.add_error(f"stage{number}_duration_days", "Give the stage's duration in days.")
            duration = 1
        return {
            "reviewer": reviewer,
            "fallback": (data.get(f"stage{number}_fallback_user") or "").strip() or StageReviewer.COMPLIANCE.value,
            "duration_days": duration,
            "risk_tiers": list(data.get(f"stage{number}_risk_tiers") or []),
            "moves_on": list(data.get(f"stage{number}_moves_on") or []),
        }

    def _stages(self) -> list[dict]:
        """The stages as create_campaign takes them: none written down for a single stage reviewed by the owner
        with compliance as fallback (the campaign's duration is then stage 1's)."""
        stages = []
        for number in STAGE_NUMBERS:
            stage = self._stage(number)
            if stage is None:
                continue
            if len(stages) < number - 1:
                self.add_error(f"stage{number}_reviewer", f"Add stage {number - 1} before stage {number}.")
            stages.append(stage)
        if len(stages) == 1 and stages[0]["reviewer"] == StageReviewer.OWNER and (
                stages[0]["fallback"] == StageReviewer.COMPLIANCE):
            return []
        return stages

    def clean(self):
        cleaned = super().clean()
        cleaned["stages"] = self._stages()
        duration = sum(s["duration_days"] for s in cleaned["stages"]) or cleaned.get("duration_days")
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
            "unused_days": data["unused_days"],
            "stale_only": data["stale_only"],
            "rotation_due_only": data["rotation_due_only"],
            "under_exception_only": data["under_exception_only"],
            "key_filter": data["key_filter"],
            "duration_days": data["duration_days"],
            "stages": data["stages"],
            "reminder_days": data["reminder_days"],
            "reminder_every_days": data["reminder_every_days"],
            "escalation_days": data["escalation_days"],
            "default_action": data["default_action"],
            "require_justification": data["require_justification"],
            "review_cadence_days": data["review_cadence_days"],
            "exception_review_cadence_days": (data["exception_review_cadence_days"]
                                              or CampaignSchedule._meta.get_field("exception_review_cadence_days").default),
            "release_grace_days": data["release_grace_days"],
            "missing_signoff": data["missing_signoff"] or MissingSignoff.KEEP,
            "separation_of_duties": data["separation_of_duties"],
        }


class CancelCampaignForm(ServiceErrorsMixin, forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}), max_length=500, label="Why is it cancelled?"
    )


class NoInputForm(ServiceErrorsMixin, forms.Form):
    """Launch and close take no input beyond the button."""
