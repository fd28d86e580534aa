"""The compliance dashboard's overview: campaigns and their completion, overdue items, revocations
waiting for the issuer, exceptions and recent evidence exports. A fixed number of queries (running campaigns
are read whole: a handful at any time)."""

import datetime

from django.db.models import Count

from attestations.choices import CampaignStatus
from attestations.models import Campaign, EvidenceExport
from attestations.services.progress import attach_item_counts, with_stored_counts
from keys.choices import OPEN_REVOCATION_STATUSES, ExceptionStatus, RevocationRequestStatus
from keys.models import KeyException, RevocationRequest

LIST_SIZE = 10


def _bars(rows: list[dict], count_key: str = "count") -> list[dict]:
    """Each row with ``width``: its share of the largest count, in whole percent (for a CSS bar)."""
    top = max((r[count_key] for r in rows), default=0)
    for row in rows:
        row["width"] = round(100 * row[count_key] / top) if top else 0
    return rows


def compliance_overview(today: datetime.date) -> dict:
    # Running campaigns are few: read whole, their items counted once for the campaigns shown and the totals
    # alike (a large campaign's from its stored figures).
    running = attach_item_counts(with_stored_counts(
        Campaign.objects.filter(status=CampaignStatus.ACTIVE).order_by("due_on", "pk")), total="total", pending="pending")
    stored_at = [campaign.counted_at for campaign in running if campaign.stored_total is not None]
    counted_at = min(stored_at) if stored_at else None
    for campaign in running:
        decided = campaign.total - campaign.pending
        campaign.percent = round(100 * decided / campaign.total) if campaign.total else 0
        campaign.overdue = campaign.pending if campaign.due_on and campaign.due_on < today else 0
    counts = {"active": len(running), "pending_items": sum(c.pending for c in running),
              "overdue_items": sum(c.overdue for c in running)}
    active = running[:LIST_SIZE]
    statuses = dict(RevocationRequestStatus.choices)
    revocation_counts = dict(
        RevocationRequest.objects.filter(status__in=OPEN_REVOCATION_STATUSES).values_list("status")
        .annotate(n=Count("pk")).order_by()
    )
    revocations = _bars([{"status": s, "label": statuses[s], "count": revocation_counts.get(s, 0)}
                         for s in RevocationRequestStatus.values if s in OPEN_REVOCATION_STATUSES])
    oldest_revocations = list(
        RevocationRequest.objects.filter(status__in=OPEN_REVOCATION_STATUSES)
        .select_related("key__workflow__customer", "issuing_system").order_by("requested_at", "pk")[:LIST_SIZE]
    )
    exception_counts = dict(KeyException.objects.values_list("status").annotate(n=Count("pk")).order_by())
    exceptions = _bars([{"status": s.value, "label": s.label, "count": exception_counts.get(s.value, 0)}
                        for s in ExceptionStatus])
    return {
        "campaigns": active,
        "campaign_counts": counts,
        "campaigns_counted_at": counted_at,
        "revocations": revocations,
        "revocations_open": sum(r["count"] for r in revocations),
        "oldest_revocations": oldest_revocations,
        "exceptions": exceptions,
        "exports": list(EvidenceExport.objects.select_related("requested_by").order_by("-requested_at", "-pk")[:LIST_SIZE]),
    }
