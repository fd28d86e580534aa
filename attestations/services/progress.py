"""A campaign's progress: its totals, by status, per stage, per reviewer and per customer, and its
reviewers' decision figures.

A small campaign's progress is counted per request, the totals, stages and reviewers from the item indexes
alone (campaign, status, stage / campaign, reviewer, status). On pages (and in the API) of a campaign of at
least CAMPAIGN_FIGURES_MIN_ITEMS items, all of it comes from ``CampaignFigures``, which the worker counts every
few minutes (and the first view counts if the worker has not yet), with the time it was counted: per request
even the index counts of 100,000 items took most of a page's time. The campaign list and its API read such a
campaign's items and pending items from there too. Evidence reports always count everything.
"""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.db.models import Case, Count, DateTimeField, F, IntegerField, OuterRef, Q, Subquery, Value, When
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


def count_progress(campaign: Campaign) -> dict:
    """Items by status, pending items per stage, escalated items and items and pending items per reviewer,
    counted now from the item indexes."""
    items = campaign.items.all()
    by_status, pending_per_stage = {}, {}
    for status, stage, n in items.values_list("status", "stage").annotate(n=Count("pk")).order_by():
        by_status[status] = by_status.get(status, 0) + n
        if status == ItemStatus.PENDING:
            pending_per_stage[stage] = n
    per_reviewer = list(
        items.values("reviewer__username")
        .annotate(total=Count("pk"), pending=Count("pk", filter=Q(status=ItemStatus.PENDING)))
        .order_by("reviewer__username")
    )
    return {"by_status": by_status, "pending_per_stage": pending_per_stage,
            "escalated": items.filter(escalated_at__isnull=False).count(), "per_reviewer": per_reviewer}


def refresh_campaign_figures(campaign: Campaign) -> CampaignFigures:
    """Count the campaign's progress and reviewers' figures again and store them."""
    with transaction.atomic():
        counted_at = timezone.now()
        counted = count_progress(campaign)
        total = sum(counted["by_status"].values())
        figures, _ = CampaignFigures.objects.update_or_create(
            campaign=campaign,
            defaults={
                "counted_at": counted_at, "item_total": total,
                "item_pending": counted["by_status"].get(ItemStatus.PENDING, 0), "escalated": counted["escalated"],
                "by_status": counted["by_status"],
                # JSON object keys are text: the stages are read back as numbers (_stored).
                "pending_per_stage": {str(stage): n for stage, n in counted["pending_per_stage"].items()},
                "per_reviewer": counted["per_reviewer"], "per_customer": count_per_customer(campaign),
                "reviewer_quality": review_quality.reviewer_quality(campaign),
            },
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


def _current(figures: CampaignFigures, campaign: Campaign) -> bool:
    """Counted since the campaign ended, if it has (a close decides every pending item at once)."""
    return not (campaign.closed_at and figures.counted_at < campaign.closed_at)


def campaign_progress(campaign: Campaign) -> dict:
    """Decided / pending / overdue / escalated totals, counts by status and of pending items per stage, and
    the items and pending items per reviewer and per customer, all counted now."""
    return _progress(campaign, count_progress(campaign)) | {"per_customer": count_per_customer(campaign)}


def page_progress(campaign: Campaign, *, quality: bool = True) -> dict:
    """``campaign_progress`` for pages, with the reviewers' figures (``reviewer_quality``) unless ``quality`` is
    false. A campaign of at least CAMPAIGN_FIGURES_MIN_ITEMS items is read whole from its stored figures,
    ``counted_at`` saying when they were counted (None: counted now); stored figures it lacks, or counted
    before it ended, are counted first."""
    figures = CampaignFigures.objects.filter(campaign=campaign).first()
    if figures is not None and figures.item_total >= settings.CAMPAIGN_FIGURES_MIN_ITEMS:
        if not _current(figures, campaign):
            figures = refresh_campaign_figures(campaign)
        return _stored(campaign, figures)
    counted = count_progress(campaign)
    if sum(counted["by_status"].values()) >= settings.CAMPAIGN_FIGURES_MIN_ITEMS:
        return _stored(campaign, refresh_campaign_figures(campaign))
    return _progress(campaign, counted) | {
        "per_customer": count_per_customer(campaign), "counted_at": None,
        "reviewer_quality": review_quality.reviewer_quality(campaign) if quality else []}


def _stored(campaign: Campaign, figures: CampaignFigures) -> dict:
    counted = {"by_status": figures.by_status, "escalated": figures.escalated, "per_reviewer": figures.per_reviewer,
               "pending_per_stage": {int(stage): n for stage, n in figures.pending_per_stage.items()}}
    return _progress(campaign, counted) | {"per_customer": figures.per_customer, "counted_at": figures.counted_at,
                                           "reviewer_quality": figures.reviewer_quality}


def _progress(campaign: Campaign, counted: dict) -> dict:
    overdue = campaign.status == CampaignStatus.ACTIVE and campaign.due_on and campaign.due_on < timezone.localdate()
    by_status = counted["by_status"]
    total = sum(by_status.values())
    pending = by_status.get(ItemStatus.PENDING, 0)
    totals = {"total": total, "pending": pending, "decided": total - pending, "escalated": counted["escalated"]}
    totals["overdue"] = pending if overdue else 0
    totals["percent"] = round(100 * totals["decided"] / total) if total else 0
    return {"totals": totals, "by_status": by_status, "pending_per_stage": counted["pending_per_stage"],
            "per_reviewer": counted["per_reviewer"]}


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


def _figures_current() -> Q:
    """A campaign's stored figures are read: it is large, and they were counted since it ended, if it has."""
    return Q(figures__item_total__gte=settings.CAMPAIGN_FIGURES_MIN_ITEMS) & (
        Q(closed_at__isnull=True) | Q(figures__counted_at__gte=F("closed_at")))


def _stored_value(field: str, output_field):
    return Case(When(_figures_current(), then=F(f"figures__{field}")), default=None, output_field=output_field)


def with_stored_counts(campaigns):
    """Each campaign with its stored items, pending items and when they were counted (``stored_total``,
    ``stored_pending``, ``counted_at``) if it is large enough to read them, else None: for
    ``attach_item_counts`` once the campaigns shown are known."""
    return campaigns.annotate(stored_total=_stored_value("item_total", IntegerField()),
                              stored_pending=_stored_value("item_pending", IntegerField()),
                              counted_at=_stored_value("counted_at", DateTimeField()))


def attach_item_counts(campaigns, *, total: str = "item_total", pending: str = "item_pending"):
    """Set each of ``campaigns`` (from ``with_stored_counts``, the ones shown) its items and pending items: a
    large campaign's as stored, the others' counted in one query from the (campaign, status, stage) index.
    Correlated count subqueries per row instead made the planner expect to read every item once per campaign
    (a cost that also had the query JIT-compiled, about 1 s on its own)."""
    campaigns = list(campaigns)
    # A draft has no items: the launch creates them in the transaction that makes it active.
    to_count = [campaign.pk for campaign in campaigns
                if campaign.stored_total is None and campaign.status != CampaignStatus.DRAFT]
    counted = {}
    if to_count:
        counted = {row["campaign"]: (row["n"], row["pending"]) for row in
                   AttestationItem.objects.filter(campaign__in=to_count).values("campaign")
                   .annotate(n=Count("pk"), pending=Count("pk", filter=Q(status=ItemStatus.PENDING))).order_by()}
    for campaign in campaigns:
        if campaign.stored_total is None:
            counts = counted.get(campaign.pk, (0, 0))
        else:
            counts = (campaign.stored_total, campaign.stored_pending)
        setattr(campaign, total, counts[0])
        setattr(campaign, pending, counts[1])
    return campaigns


def with_item_count_sort_keys(campaigns, *, total: str = "item_total", pending: str = "item_pending"):
    """The items and pending items as sort keys (aliases, in SQL only when a list is sorted by them): a large
    campaign's as stored, the others' counted in a subquery each."""
    current = _figures_current()
    return campaigns.alias(**{
        total: Case(When(current, then=F("figures__item_total")), default=_item_count(), output_field=IntegerField()),
        pending: Case(When(current, then=F("figures__item_pending")), default=_item_count(status=ItemStatus.PENDING),
                      output_field=IntegerField()),
    })
