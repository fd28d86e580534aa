"""Forms of the owner's inbox and of the decisions on an item, wherever they are offered (the inbox, the item
page, a customer contact's page). They only collect input; attestations.services.decisions decides and records."""

from django import forms

from attestations.choices import Decision, ReasonCode
from attestations.models import Campaign
from attestations.services.decisions import may_delegate
from core.actions import Action, Panel, offered_panels
from core.errors import ServiceErrorsMixin
from core.numbers import IdsField
from keys.models import Customer


def justification_field(label: str = "Justification") -> forms.CharField:
    return forms.CharField(required=False, max_length=2000, strip=True, label=label,
                           widget=forms.Textarea(attrs={"rows": 2}))


def person_field(label: str) -> forms.CharField:
    return forms.CharField(required=False, max_length=150, label=label)


class DecisionForm(ServiceErrorsMixin, forms.Form):
    """One decision on one item: its fields and their labels, wherever the decision is offered (the inbox,
    the item page, a customer contact's page). The campaign service checks every rule and may refuse it."""

    decision: str = ""
    justification = justification_field()

    def service_kwargs(self) -> dict:
        return {"decision": self.decision, "justification": self.cleaned_data.get("justification", "")}

    def for_item(self, item) -> "DecisionForm":
        """Only the items of keys under an exception at launch ask to re-affirm it."""
        if item.exception_id is None:
            self.fields.pop("reaffirm_exception", None)
        return self


class ConfirmForm(DecisionForm):
    decision = Decision.CONFIRM
    affirm = forms.BooleanField(required=False, label="I affirm the purpose, scope and ownership are still right")
    reaffirm_exception = forms.BooleanField(
        required=False, label="I re-affirm the justification of the exception and its compensating controls"
    )
    field_order = ["affirm", "reaffirm_exception", "justification"]

    def service_kwargs(self) -> dict:
        return {
            **super().service_kwargs(),
            "affirm": self.cleaned_data.get("affirm", False),
            "reaffirm_exception": self.cleaned_data.get("reaffirm_exception", False),
        }


def reason_field() -> forms.ChoiceField:
    return forms.ChoiceField(required=False, label="Reason", choices=[("", "Choose a reason"), *ReasonCode.choices])


class ReleaseForm(DecisionForm):
    decision = Decision.RELEASE
    reason = reason_field()
    justification = justification_field("Why is the key no longer needed?")
    field_order = ["reason", "justification"]

    def service_kwargs(self) -> dict:
        return {**super().service_kwargs(), "reason": self.cleaned_data.get("reason", "")}


class NamedPersonForm(DecisionForm):
    to = person_field("Username")
    field_order = ["to", "justification"]

    def service_kwargs(self) -> dict:
        return {**super().service_kwargs(), "to": self.cleaned_data.get("to", "")}


class ReassignForm(NamedPersonForm):
    decision = Decision.REASSIGN
    to = person_field("New owner (username)")
    justification = justification_field("Why does it belong to them?")


class DelegateForm(NamedPersonForm):
    decision = Decision.DELEGATE
    to = person_field("Delegate to (username)")
    justification = None  # a delegation passes the decision on; it decides nothing to justify


def _first_stage(item, user) -> bool:
    """A key is reassigned at the first stage only (the service refuses it later)."""
    return item.stage == 1


# How each decision is offered (its button), asked with the item and the user; the forms say what it asks.
DECISION_ACTIONS: dict[str, Action] = {
    action.slug: action
    for action in (
        Action(Decision.CONFIRM, Decision.CONFIRM.label, ConfirmForm, button_class="button-primary",
               done="Confirmed {label}."),
        Action(Decision.RELEASE, Decision.RELEASE.label, ReleaseForm, button_class="button-danger",
               done="Released {label}: the key is being revoked."),
        Action(Decision.REASSIGN, Decision.REASSIGN.label, ReassignForm, offered=_first_stage,
               done="Reassigned {label}: {to} must accept the ownership."),
        Action(Decision.DELEGATE, Decision.DELEGATE.label, DelegateForm, button_class="button-ghost",
               offered=may_delegate, done="The decision on {label} is delegated to {to}."),
    )
}


def item_dom_id(item_id) -> str:
    """The id of an item's row in a page, which its decision panels' field ids start with."""
    return f"item-{item_id}"


def decision_form(data, *, item_id) -> DecisionForm:
    """The submitted decision's form, with the field ids of the item's panel (a refusal is shown in place)."""
    decision = data.get("decision", "")
    action = DECISION_ACTIONS.get(decision)
    if action is None:
        form = DecisionForm(data)
        form.decision = decision  # refused by the service, which names the decisions there are
        return form
    return action.form(data, id_prefix=item_dom_id(item_id))


def decision_panels(item, user, decisions=tuple(DECISION_ACTIONS), failed: DecisionForm | None = None, *,
                    blank_forms: dict | None = None) -> list[Panel]:
    """The panels of the ``decisions`` offered to ``user`` on ``item``; ``failed`` is a refused submission.

    ``blank_forms``, a dict kept for one page, lets its rows share the forms nobody has filled in (an inbox
    page shows two hundred panels): a panel's field ids come from the panel, not from its form.
    """
    blank_forms = {} if blank_forms is None else blank_forms

    def blank_form(action: Action) -> DecisionForm:
        variant = (action.slug, item.exception_id is None)
        if variant not in blank_forms:
            blank_forms[variant] = action.form(id_prefix=item_dom_id(item.pk)).for_item(item)
        return blank_forms[variant]

    return offered_panels(
        [DECISION_ACTIONS[decision] for decision in decisions], item, user, blank_form=blank_form,
        failed=(failed.decision, failed.for_item(item)) if failed is not None else None, id_prefix=item_dom_id(item.pk),
    )


class ItemIdsField(IdsField):
    """Item ids ticked in the inbox. Which of them the user may decide is the service's question."""

    default_error_messages = {"required": "Select the items to confirm.", "invalid": "Unknown item."}


# The decisions a bulk submission makes (delegation is one reviewer's, item by item).
BULK_DECISIONS = (Decision.CONFIRM, Decision.RELEASE, Decision.REASSIGN)
BULK_VERBS = {Decision.CONFIRM: "confirm", Decision.RELEASE: "release", Decision.REASSIGN: "reassign"}


class BulkDecisionForm(forms.Form):
    """One decision on the ticked items together; the inbox renders its fields as a decision panel's. Without a
    decision it confirms (the inbox's first bulk form)."""

    items = ItemIdsField()
    decision = forms.ChoiceField(
        required=False, label="Decision", choices=[(d.value, d.label) for d in BULK_DECISIONS],
    )
    affirm = forms.BooleanField(
        required=False, label="I affirm the purpose, scope and ownership are still right for every selected key"
    )
    reason = reason_field()
    to = person_field("New owner (username), to reassign")
    justification = justification_field()
    field_order = ["decision", "affirm", "reason", "to", "justification"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        decision = self.data.get("decision") if self.is_bound else ""
        verb = BULK_VERBS.get(decision or Decision.CONFIRM, "decide")
        self.fields["items"].error_messages["required"] = f"Select the items to {verb}."

    def clean_decision(self):
        return self.cleaned_data["decision"] or Decision.CONFIRM

    def service_kwargs(self) -> dict:
        data = self.cleaned_data
        return {"decision": data["decision"], "justification": data["justification"], "affirm": data["affirm"],
                "reason": data["reason"], "to": data["to"]}



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
