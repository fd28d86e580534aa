"""A campaign's progress: its totals, by status, per stage, per reviewer and per customer, and its
reviewers' decision figures.

The totals, stages and reviewers are counted per request from the item indexes alone (campaign, status,
stage / campaign, reviewer, status). Per customer needs every item joined with its key, and the reviewers'
figures read every decision: on pages of a campaign of at least CAMPAIGN_FIGURES_MIN_ITEMS items these come
from ``CampaignFigures``, which the worker counts every few minutes (and the first view counts if the worker
has not yet), with the time they were counted. Evidence reports always count everything.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, IntegerField, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from attestations.choices import CampaignStatus, ItemStatus
from attestations.models import AttestationItem, Campaign, CampaignFigures
from attestations.services import review_quality
from keys.models import Customer

CUSTOMER_NAME = "key__workflow__customer__name"


def count_per_customer(campaign: Campaign) -> list[dict]:
    """Items and pending items per customer (id, name), by customer name: every item joined with its key."""
    rows = (
        campaign.items.values("key__workflow__customer_id", CUSTOMER_NAME)
        .annotate(total=Count("pk"), pending=Count("pk", filter=Q(status=ItemStatus.PENDING)))
        .order_by(CUSTOMER_NAME, "key__workflow__customer_id")
    )
    return [{"customer_id": row["key__workflow__customer_id"], CUSTOMER_NAME: row[CUSTOMER_NAME],
             "total": row["total"], "pending": row["pending"]} for row in rows]


@dataclass
class Counted:
    """The per-customer rows and the reviewers' figures, and when they were counted (None: for this request)."""

    per_customer: list[dict]
    reviewer_quality: list[dict]
    counted_at: datetime.datetime | None = None


def refresh_campaign_figures(campaign: Campaign) -> CampaignFigures:
    """Count the campaign's per-customer rows and reviewers' figures again and store them."""
    with transaction.atomic():
        counted_at = timezone.now()
        figures, _ = CampaignFigures.objects.update_or_create(
            campaign=campaign,
            defaults={"counted_at": counted_at, "per_customer": count_per_customer(campaign),
                      "reviewer_quality": review_quality.reviewer_quality(campaign)},
        )
    return figures


def campaigns_to_count():
    """Campaigns whose stored figures the worker counts again: every running campaign that has them (or is
    large enough to need them), and every campaign that ended after they were counted."""
    running = Campaign.objects.filter(status=CampaignStatus.ACTIVE)
    large = running.filter(figures__isnull=True).annotate(n=Count("items")).filter(
        n__gte=settings.CAMPAIGN_FIGURES_MIN_ITEMS).values("pk")
    return Campaign.objects.filter(
        Q(pk__in=running.filter(figures__isnull=False).values("pk")) | Q(pk__in=large)
        | Q(figures__counted_at__lt=F("closed_at"))
    ).order_by("pk")


def _counted(campaign: Campaign, total: int, quality: bool) -> Counted:
    if total < settings.CAMPAIGN_FIGURES_MIN_ITEMS:
        return Counted(count_per_customer(campaign), review_quality.reviewer_quality(campaign) if quality else [])
    figures = CampaignFigures.objects.filter(campaign=campaign).first()
    if figures is None or (campaign.closed_at and figures.counted_at < campaign.closed_at):
        figures = refresh_campaign_figures(campaign)
    return Counted(figures.per_customer, figures.reviewer_quality, figures.counted_at)


def campaign_progress(campaign: Campaign) -> dict:
    """Decided / pending / overdue / escalated totals, counts by status and of pending items per stage, and
    the items and pending items per reviewer and per customer, all counted now."""
    return _progress(campaign, stored=False)


def page_progress(campaign: Campaign, *, quality: bool = True) -> dict:
    """``campaign_progress`` for pages, with the reviewers' figures (``reviewer_quality``) unless ``quality`` is
    false; a large campaign's per-customer rows and reviewers' figures come from its stored figures,
    ``counted_at`` saying when they were counted (None: counted now)."""
    return _progress(campaign, stored=True, quality=quality)


def _progress(campaign: Campaign, *, stored: bool, quality: bool = False) -> dict:
    items = campaign.items.all()
    overdue = campaign.status == CampaignStatus.ACTIVE and campaign.due_on and campaign.due_on < timezone.localdate()
    by_status, pending_per_stage = {}, {}
    for status, stage, n in items.values_list("status", "stage").annotate(n=Count("pk")).order_by():
        by_status[status] = by_status.get(status, 0) + n
        if status == ItemStatus.PENDING:
            pending_per_stage[stage] = n
    total = sum(by_status.values())
    pending = by_status.get(ItemStatus.PENDING, 0)
    totals = {"total": total, "pending": pending, "decided": total - pending,
              "escalated": items.filter(escalated_at__isnull=False).count()}
    totals["overdue"] = pending if overdue else 0
    totals["percent"] = round(100 * totals["decided"] / total) if total else 0
    per_reviewer = list(
        items.values("reviewer__username")
        .annotate(total=Count("pk"), pending=Count("pk", filter=Q(status=ItemStatus.PENDING)))
        .order_by("reviewer__username")
    )
    progress = {"totals": totals, "by_status": by_status, "pending_per_stage": pending_per_stage,
                "per_reviewer": per_reviewer}
    if not stored:
        return progress | {"per_customer": count_per_customer(campaign)}
    counted = _counted(campaign, total, quality)
    return progress | {"per_customer": counted.per_customer, "reviewer_quality": counted.reviewer_quality,
                       "counted_at": counted.counted_at}


def item_counts(campaigns: list[Campaign]) -> tuple[dict[int, tuple[int, int]], datetime.datetime | None]:
    """Each campaign's items and pending items, by campaign id: a large campaign's summed from its stored
    figures (as of their count), the others' counted in one query grouped by campaign; and when the oldest of
    the stored figures read was counted (None: every campaign counted now)."""
    ids = [campaign.pk for campaign in campaigns]
    counts, counted_at = {}, None
    for campaign_id, at, per_customer in CampaignFigures.objects.filter(campaign__in=ids).values_list(
            "campaign_id", "counted_at", "per_customer"):
        counts[campaign_id] = (sum(row["total"] for row in per_customer), sum(row["pending"] for row in per_customer))
        counted_at = at if counted_at is None else min(counted_at, at)
    uncounted = [pk for pk in ids if pk not in counts]
    if uncounted:
        counts.update(
            (campaign_id, (total, pending))
            for campaign_id, total, pending in AttestationItem.objects.filter(campaign__in=uncounted).order_by()
            .values_list("campaign_id").annotate(total=Count("pk"), pending=Count("pk", filter=Q(status=ItemStatus.PENDING)))
        )
    return counts, counted_at


def campaign_customers(campaign: Campaign):
    """The customers with items in the campaign, from its stored figures when it has them."""
    figures = CampaignFigures.objects.filter(campaign=campaign).first()
    if figures is not None:
        return Customer.objects.filter(pk__in=[row["customer_id"] for row in figures.per_customer])
    return Customer.objects.filter(workflows__keys__attestation_items__campaign=campaign).distinct()


def _item_count(**conditions) -> Coalesce:
    counted = (AttestationItem.objects.filter(campaign=OuterRef("pk"), **conditions).order_by()
               .values("campaign").annotate(n=Count("pk")).values("n"))
    return Coalesce(Subquery(counted, output_field=IntegerField()), Value(0))


def with_item_counts(campaigns, *, total: str = "item_total", pending: str = "item_pending"):
    """Each campaign's items and pending items, each counted in a subquery from the (campaign, status, stage)
    index, for the campaigns shown only (a join would group every item of every campaign)."""
    return campaigns.annotate(**{total: _item_count(), pending: _item_count(status=ItemStatus.PENDING)})
