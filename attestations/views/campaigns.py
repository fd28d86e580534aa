"""Compliance pages for campaigns: list, create, detail with progress, and launch/close/cancel.

Every state change goes through attestations.services.campaigns; these views only translate its refusals.
"""

from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Sum
from django.http import QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from attestations.choices import CAMPAIGN_TRANSITIONS, DefaultAction
from attestations.filters import AttestationItemFilterSet, CampaignFilterSet
from attestations.forms.campaigns import CampaignForm, CancelCampaignForm, NoInputForm
from attestations.models import AttestationItem, Campaign, Notification
from attestations.services import campaigns, progress, reminders, review_quality
from attestations.stages import stage_window, stages_of
from attestations.tables import AttestationItemTable, CampaignTable, with_progress
from core import roles
from core.actions import Action, action_or_404, offered_panels, refusal
from core.lists import READERS, ObjectListView
from keys.choices import Environment, RiskTier
from keys.models import Customer, Workflow

ITEMS_PER_PAGE = 25  # the portal's page size; ?per_page= asks for more
NOTIFICATIONS_SHOWN = 50
REVIEWERS_SHOWN = 50


def compliance_required(view):
    """Campaign pages are for compliance and admins; anyone else logged in gets 403."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not roles.sees_everything(request.user):
            raise PermissionDenied("Only compliance and admins manage campaigns.")
        return view(request, *args, **kwargs)

    return login_required(wrapper)


class CampaignListView(ObjectListView):
    queryset = Campaign.objects.select_related("schedule")
    table_class = CampaignTable
    filterset_class = CampaignFilterSet
    template_name = "attestations/campaign_list.html"
    ordering = ("-created_at", "-pk")
    table_id = "campaign-table"
    refresh_in_place = True
    allowed_roles = READERS
    permission_denied_message = "Only compliance and admins manage campaigns (auditors read them)."

    def visible_to(self, user):
        # Per request: which campaigns are large enough for their stored counts follows the setting.
        return with_progress(self.queryset.all())

    def get_table(self, **kwargs):
        table = super().get_table(**kwargs)
        progress.attach_item_counts(row.record for row in table.page.object_list)
        return table


class UnsavedScope:
    """A form's scope in the shape campaigns.scope_queryset reads, so the preview counts by the service's rule."""

    pk = "unsaved"

    def __init__(self, data: dict):
        self.customers = Customer.objects.filter(pk__in=[c.pk for c in data.get("customers") or ()])
        self.workflows = Workflow.objects.filter(pk__in=[w.pk for w in data.get("workflows") or ()])
        self.environments = list(data.get("environments") or [])
        self.risk_tiers = list(data.get("risk_tiers") or [])
        self.due_for_review_only = bool(data.get("due_for_review_only"))
        self.unused_days = data.get("unused_days")
        self.stale_only = bool(data.get("stale_only"))
        self.rotation_due_only = bool(data.get("rotation_due_only"))
        self.under_exception_only = bool(data.get("under_exception_only"))
        self.key_filter = data.get("key_filter") or ""


def _scope_preview(request):
    form = CampaignForm(request.GET)
    form.is_valid()  # the scope fields clean on their own; a missing name does not matter here
    count = campaigns.scope_queryset(UnsavedScope(form.cleaned_data)).count()
    return render(request, "attestations/campaign_scope_preview.html", {"scope_count": count})


@compliance_required
def campaign_create(request):
    if request.method == "GET" and request.htmx and "preview" in request.GET:
        return _scope_preview(request)
    # The key list's "Review these keys in a campaign" link names its filter in ``key_filter``.
    form = CampaignForm(request.POST or None, initial={"key_filter": request.GET.get("key_filter", "")})
    if request.method == "POST":
        campaign = form.call_service(lambda data: campaigns.create_campaign(actor=request.user, **form.service_kwargs()))
        if form.is_valid():
            messages.success(request, f"Created the draft campaign {campaign.name}. Launch it when ready.")
            return redirect(campaign)
        return render(request, "attestations/campaign_form.html", _form_context(form), status=400)
    return render(request, "attestations/campaign_form.html", _form_context(form))


def _form_context(form: CampaignForm) -> dict:
    key_filter = (form["key_filter"].value() or "").strip().lstrip("?")
    return {
        "form": form,
        "stage_rows": form.stage_rows(),
        "key_filter": key_filter,
        "key_filter_terms": [(name, value) for name, values in QueryDict(key_filter).lists() for value in values
                             if value],
    }


def _offered_from(step: str) -> Callable[[Campaign], bool]:
    """Offered while the campaign's status allows the step (CAMPAIGN_TRANSITIONS)."""
    allowed_from, _ = CAMPAIGN_TRANSITIONS[step]
    return lambda campaign: campaign.status in allowed_from


def _launch(campaign, actor, data) -> str:
    count = campaigns.launch_campaign(campaign, actor=actor)
    return f"Launched {campaign.name}: {count} item{'s' if count != 1 else ''} sent to their owners."


def _close(campaign, actor, data) -> str:
    applied = campaigns.close_campaign(campaign, actor=actor)
    kept = applied.pop("kept", 0)
    count = sum(applied.values())
    action = DefaultAction(campaign.default_action).label.lower()
    message = f"Closed {campaign.name}: {count} undecided item{'s' if count != 1 else ''} ({action})."
    if kept:
        message += (f" {kept} item{'s' if kept != 1 else ''} without a later stage's sign-off kept the earlier "
                    "decision.")
    return message


def _cancel(campaign, actor, data) -> str:
    campaigns.cancel_campaign(campaign, actor=actor, reason=data["reason"])
    return f"Cancelled {campaign.name}."


# The campaign steps of the detail page; perform(campaign, actor, data) returns what the page says.
CAMPAIGN_ACTIONS: dict[str, Action] = {
    action.slug: action
    for action in (
        Action(
            "launch", "Launch", NoInputForm, _launch, button_class="button-primary", offered=_offered_from("launch"),
            explanation="Creates one item per key in scope, assigned to its owner, and notifies the owners.",
        ),
        Action(
            "close", "Close", NoInputForm, _close, button_class="button-warning", offered=_offered_from("close"),
            explanation="Every undecided item gets the default action now.",
        ),
        Action(
            "cancel", "Cancel campaign", CancelCampaignForm, _cancel, button_class="button-danger",
            offered=_offered_from("cancel"), explanation="Stops the campaign without applying any default action.",
        ),
    )
}


def _scope_summary(campaign: Campaign) -> dict:
    environments, tiers = dict(Environment.choices), dict(RiskTier.choices)
    return {
        "customers": [c.name for c in campaign.customers.order_by("name")],
        "workflows": [f"{w.customer.name} · {w.name}" for w in
                      campaign.workflows.select_related("customer").order_by("customer__name", "name")],
        "environments": [environments.get(e, e) for e in campaign.environments],
        "risk_tiers": [tiers.get(t, t) for t in campaign.risk_tiers],
    }


def _stages(campaign: Campaign, pending: dict[int, int]) -> list[dict]:
    """Each stage as the page describes it, with its window once launched and its pending items."""
    return [
        {"stage": stage, "window": stage_window(campaign, stage.number), "pending": pending.get(stage.number, 0)}
        for stage in stages_of(campaign)
    ]


def _breakdown(rows, name_key: str, overdue: bool) -> list[dict]:
    return [
        {
            "name": row[name_key] or "—",
            "total": row["total"],
            "pending": row["pending"],
            "decided": row["total"] - row["pending"],
            "overdue": row["pending"] if overdue else 0,
            "percent": round(100 * (row["total"] - row["pending"]) / row["total"]) if row["total"] else 0,
        }
        for row in rows
    ]


def _notifications(campaign: Campaign) -> dict:
    kinds = dict(Notification.Kind.choices)
    totals = [
        {"kind": kinds.get(row["kind"], row["kind"]), "messages": row["messages"], "items": row["items"] or 0}
        for row in campaign.notifications.values("kind").annotate(messages=Count("pk"), items=Sum("item_count"))
        .order_by("kind")
    ]
    recent = list(campaign.notifications.select_related("recipient").order_by("-sent_at", "-pk")[:NOTIFICATIONS_SHOWN])
    return {"totals": totals, "recent": recent, "more": sum(t["messages"] for t in totals) > len(recent)}


class CampaignDetailView(ObjectListView):
    """A campaign's page: its progress, its steps and, as the list, its items."""

    table_class = AttestationItemTable
    filterset_class = AttestationItemFilterSet
    template_name = "attestations/campaign_detail.html"
    # The items' own order within the campaign, which an index gives (the model's order goes by the campaign).
    ordering = ("pk",)
    per_page = ITEMS_PER_PAGE
    table_id = "campaign-items"
    refresh_in_place = True
    allowed_roles = READERS
    permission_denied_message = "Only compliance and admins manage campaigns (auditors read them)."
    # A step the service refused, as (action slug, form): the page is shown again with its errors (400).
    refused: tuple[str, object] | None = None

    def get(self, request, *args, **kwargs):
        self.campaign = get_object_or_404(_campaigns(), pk=kwargs["pk"])
        response = super().get(request, *args, **kwargs)
        if self.refused:
            response.status_code = 400
        return response

    def post(self, request, *args, **kwargs):
        if self.refused is None:
            return self.http_method_not_allowed(request, *args, **kwargs)
        return self.get(request, *args, **kwargs)

    def visible_to(self, user):
        return AttestationItem.objects.filter(campaign=self.campaign).select_related(
            "key__workflow__customer", "reviewer", "delegate", "decided_by"
        )

    def get_filterset_kwargs(self, filterset_class):
        return super().get_filterset_kwargs(filterset_class) | {
            "campaign": self.campaign, "customers": progress.campaign_customers(self.campaign)}

    def get_list_url(self) -> str:
        return self.campaign.get_absolute_url()  # also when a refused step shows the page at the step's URL

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        if self.is_partial():
            return context
        campaign = self.campaign
        figures = progress.page_progress(campaign)
        overdue = figures["totals"]["overdue"] > 0
        may_act = roles.sees_everything(self.request.user)
        panels = offered_panels(CAMPAIGN_ACTIONS.values() if may_act else (), campaign, failed=self.refused)
        context.update({
            "campaign": campaign,
            "scope": _scope_summary(campaign),
            "stages": _stages(campaign, figures["pending_per_stage"]),
            "progress": figures,
            "per_customer": _breakdown(figures["per_customer"], "key__workflow__customer__name", overdue),
            # A page lists the reviewers furthest behind, and those with the most rapid decisions; the API and
            # the campaign report list every one.
            "per_reviewer": sorted(_breakdown(figures["per_reviewer"], "reviewer__username", overdue),
                                   key=lambda row: (-row["pending"], row["name"]))[:REVIEWERS_SHOWN],
            "reviewers_total": len(figures["per_reviewer"]),
            "counted_at": figures["counted_at"],
            "notifications": _notifications(campaign),
            "reviewer_quality": review_quality.written_out(sorted(
                figures["reviewer_quality"], key=lambda row: (-row["rapid_decisions"], -row["decisions"],
                                                              row["reviewer"]))[:REVIEWERS_SHOWN]),
            "deciders_total": len(figures["reviewer_quality"]),
            "reviewers_shown": REVIEWERS_SHOWN,
            "reminder_days": reminders.reminder_schedule(campaign),
            "release_grace_days": (settings.RELEASE_GRACE_DAYS if campaign.release_grace_days is None
                                   else campaign.release_grace_days),
            "action_panels": panels,
            **refusal(CAMPAIGN_ACTIONS, self.refused, panels),
        })
        return context


def _campaigns():
    return Campaign.objects.select_related("schedule", "created_by", "launched_by", "closed_by")


@compliance_required
@require_POST
def campaign_action(request, pk, action):
    spec = action_or_404(CAMPAIGN_ACTIONS, action)
    campaign = get_object_or_404(_campaigns(), pk=pk)
    form, message = spec.submit(request.POST, campaign, request.user)
    if form.is_valid():
        messages.success(request, message)
        return redirect(campaign)
    return CampaignDetailView.as_view(refused=(spec.slug, form))(request, pk=pk)
