"""The owner's side of campaigns: the inbox, the item page, decisions and ownership transfers.

Views never change state themselves: attestations.services.campaigns decides, and its refusals become form
errors. Decisions post with htmx (the row is swapped in place) or as plain forms (redirect back).
"""

import datetime
from dataclasses import dataclass, field

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Case, F, IntegerField, Q, Value, When
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_POST

from attestations.choices import CampaignStatus, ItemStatus, TransferStatus
from attestations.forms.decisions import (
    DECISION_ACTIONS,
    BulkDecisionForm,
    DecisionForm,
    InboxFilterForm,
    decision_form,
    decision_panels,
    item_dom_id,
)
from attestations.models import AttestationItem, OwnershipTransfer
from attestations.services import decisions, evidence, review_quality
from attestations.services.campaigns import CampaignError
from attestations.stages import stages_of
from core import roles
from core.actions import Panel
from core.errors import ServiceError
from core.navigation import return_url

User = get_user_model()
PER_PAGE = 50
RECENT_DAYS = 30
# Joined into the page query so the query count does not grow with the rows; people come in one more.
ROW_RELATED = ("campaign", "key__workflow__customer", "exception")
TRANSFER_ANSWERS = {"accept": True, "decline": False}


@dataclass
class ItemRow:
    """One item as the inbox and the item page show it, with the decisions the user may make on it."""

    item: AttestationItem
    decidable: bool
    panels: list[Panel] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    done: str = ""
    decide_url: str = ""

    def __post_init__(self):
        self.dom_id = item_dom_id(self.item.pk)
        self.pending = self.item.status == ItemStatus.PENDING
        self.stage_count = len(stages_of(self.item.campaign))
        self.trail = evidence.stage_decisions(self.item.decisions)
        self.any_officer = self.item.reviewer_role == roles.COMPLIANCE


def item_row(item: AttestationItem, user, *, decidable: bool, failed: DecisionForm | None = None,
             done: str = "", blank_forms: dict | None = None) -> ItemRow:
    row = ItemRow(item=item, decidable=decidable, done=done)
    if failed is not None:
        row.refused = list(failed.non_field_errors())
    if decidable:
        row.decide_url = reverse("attestations:decide", args=[item.pk])
        row.panels = decision_panels(item, user, failed=failed, blank_forms=blank_forms)
    return row


PEOPLE = ("reviewer", "delegate", "decided_by", "reassigned_to")


def attach_people(items) -> None:
    """The people named on a page of items, in one query: joining the user table four more times
    into the page query costs more in planning than the whole query takes to run."""
    ids = {getattr(item, f"{name}_id") for item in items for name in PEOPLE} - {None}
    people = User.objects.in_bulk(ids)
    for item in items:
        for name in PEOPLE:
            setattr(item, name, people.get(getattr(item, f"{name}_id")))


def inbox_items(user):
    """The user's items (as reviewer or delegate), without those stuck in a cancelled or draft campaign."""
    return (
        AttestationItem.objects.decidable_by(user, officer=roles.is_compliance(user))
        .exclude(Q(status=ItemStatus.PENDING) & ~Q(campaign__status=CampaignStatus.ACTIVE))
        .select_related(*ROW_RELATED)
    )


def _pending_first(items):
    return items.annotate(
        decided=Case(When(status=ItemStatus.PENDING, then=Value(0)), default=Value(1), output_field=IntegerField())
    ).order_by("decided", F("decided_at").desc(nulls_last=True), "campaign__due_on", "pk")


def _filtered(items, data: dict):
    if data.get("campaign"):
        items = items.filter(campaign=data["campaign"])
    if data.get("customer"):
        items = items.filter(key__workflow__customer=data["customer"])
    status = data.get("status") or ""
    if status == InboxFilterForm.PENDING:
        return items.filter(status=ItemStatus.PENDING)
    if status == InboxFilterForm.DECIDED:
        return items.exclude(status=ItemStatus.PENDING)
    since = timezone.now() - datetime.timedelta(days=RECENT_DAYS)
    return items.filter(
        Q(status=ItemStatus.PENDING)
        | Q(decided_at__gte=since)
        | Q(decided_at__isnull=True, campaign__closed_at__gte=since)
    )


@login_required
def inbox(request):
    user = request.user
    items = inbox_items(user)
    filters = InboxFilterForm(request.GET or None, items=items)
    data = filters.cleaned_data if filters.is_valid() else {}
    page = Paginator(_pending_first(_filtered(items, data)), PER_PAGE).get_page(request.GET.get("page"))
    attach_people(page.object_list)
    blank_forms = {}
    rows = [item_row(item, user, decidable=item.status == ItemStatus.PENDING, blank_forms=blank_forms)
            for item in page.object_list]
    transfers = (
        OwnershipTransfer.objects.filter(to_user=user, status=TransferStatus.PENDING)
        .select_related("key__workflow__customer", "from_user", "requested_by", "item__campaign")
        .order_by("requested_at", "pk")
    )
    pending_count = items.filter(status=ItemStatus.PENDING).count()
    context = {
        "filters": filters,
        "page": page,
        "page_range": page.paginator.get_elided_page_range(page.number),
        "rows": rows,
        "transfers": transfers,
        "pending_count": pending_count,
        "inbox_pending_count": pending_count,
        "page_has_pending": any(row.decidable for row in rows),
        "return_to": request.get_full_path(),
        "hx_rows": True,
        "recent_days": RECENT_DAYS,
        "bulk_form": BulkDecisionForm(auto_id="bulk-%s"),
    }
    return render(request, "attestations/inbox.html", context)


def _visible_item(user, pk) -> AttestationItem:
    return get_object_or_404(AttestationItem.objects.visible_to(user).select_related(*ROW_RELATED, *PEOPLE), pk=pk)


def _can_decide_now(user, item: AttestationItem) -> bool:
    return (
        item.status == ItemStatus.PENDING
        and item.campaign.status == CampaignStatus.ACTIVE
        and decisions.can_decide(user, item)
    )


def _render_item(request, item: AttestationItem, failed: DecisionForm | None = None, status: int = 200):
    row = item_row(item, request.user, decidable=_can_decide_now(request.user, item), failed=failed)
    context = {
        "item": item,
        "key": item.key,
        "show_key_link": roles.reads_everything(request.user) or request.user.pk in (item.key.owner_id, item.key.steward_id),
        "row": row,
        "history": item.history.select_related("history_user").order_by("-history_date", "-history_id"),
        "transfers": item.transfers.select_related("from_user", "to_user", "requested_by").order_by("-requested_at"),
        "return_to": item.get_absolute_url(),
        "hx_rows": False,
        "evidence_frozen_at": parse_datetime(item.evidence.get("frozen_at") or ""),
        "evidence_last_used": parse_datetime(item.evidence.get("last_used_at") or ""),
        "self_review": review_quality.self_review_labels(item.self_review),
    }
    return render(request, "attestations/item_detail.html", context, status=status)


@login_required
def item_detail(request, pk):
    item = _visible_item(request.user, pk)
    decisions.mark_shown(request.user, [item.pk])
    return _render_item(request, item)


@login_required
@require_POST
def decide(request, pk):
    form = decision_form(request.POST, item_id=pk)
    if form.is_valid():
        # The decision reads the item under its lock and refuses anyone without the decide permission
        # (granted to the reviewer and the delegate, who see the item); a refusal of an item the user
        # may not see, or of none at all, is a 404 below, as it would have been before the form.
        try:
            decided = decisions.record_decision(AttestationItem(pk=pk), actor=request.user, **form.service_kwargs())
        except AttestationItem.DoesNotExist:
            raise Http404("No such item.") from None
        except ServiceError as error:  # CampaignError, or a lifecycle refusal from inside the decision
            form.add_service_errors(error)
        else:
            done = DECISION_ACTIONS[form.decision].done.format(label=decided.key.label, to=form.cleaned_data.get("to", ""))
            if not request.htmx:
                messages.success(request, done)
                return redirect(return_url(request, reverse("attestations:inbox")))
            return _render_row(request, decided.attach_shown_rows(request.user), done=done)
    item = _visible_item(request.user, pk)
    if request.htmx:
        # 200 so that htmx swaps the row in, with the errors beside the fields.
        return _render_row(request, item, failed=form)
    return _render_item(request, item, failed=form, status=400)


def _render_row(request, item, *, failed=None, done=""):
    row = item_row(item, request.user, decidable=_can_decide_now(request.user, item), failed=failed, done=done)
    context = {"row": row, "return_to": return_url(request, reverse("attestations:inbox")), "hx_rows": True}
    return render(request, "attestations/_item_row.html", context)


@login_required
@require_POST
def bulk_decide(request):
    """One decision (confirm, release or reassign) on the ticked items: each is done or refused on its own
    (decisions.bulk_decide); what the submission lacks for every item refuses it whole."""
    back = return_url(request, reverse("attestations:inbox"))
    form = BulkDecisionForm(request.POST)
    if not form.is_valid():
        for error_list in form.errors.values():
            for message in error_list:
                messages.error(request, message)
        return redirect(back)
    ids = form.cleaned_data["items"]
    decision = form.cleaned_data["decision"]
    try:
        results = decisions.bulk_decide(ids, actor=request.user, **form.service_kwargs())
    except CampaignError as error:
        for message in error.messages:
            messages.error(request, message)
        return redirect(back)
    # Items the user may not see are named by number only, and refused as missing ones are.
    labels = {
        pk: f"{label} ({prefix}…)"
        for pk, label, prefix in AttestationItem.objects.visible_to(request.user)
        .filter(pk__in=ids).values_list("pk", "key__label", "key__prefix")
    }
    done = [result for result in results if result.done]
    if done:
        plural = "s" if len(done) != 1 else ""
        messages.success(request, f"{decisions.PAST[decision].capitalize()} {len(done)} item{plural}.")
    for result in sorted((r for r in results if not r.done), key=lambda r: r.item):
        messages.error(request, f"{labels.get(result.item, f'Item #{result.item}')} was not {decisions.PAST[decision]}: "
                                f"{' '.join(result.errors)}")
    return redirect(back)


@login_required
@require_POST
def answer_transfer(request, pk, answer):
    if answer not in TRANSFER_ANSWERS:
        raise Http404("Answer accept or decline.")
    transfer = get_object_or_404(OwnershipTransfer.objects.select_related("key"), pk=pk, to_user=request.user)
    try:
        decisions.answer_transfer(transfer, actor=request.user, accept=TRANSFER_ANSWERS[answer])
    except CampaignError as error:
        for message in error.messages:
            messages.error(request, message)
    else:
        if TRANSFER_ANSWERS[answer]:
            messages.success(request, f"You now own {transfer.key}. Rotate it: ownership changed.")
        else:
            messages.success(request, f"You declined the ownership of {transfer.key}.")
    return redirect("attestations:inbox")
