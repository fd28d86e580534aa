"""Review trends per campaign schedule: for the last closed cycles of each schedule, how many items a
person decided, how they decided, how many went unanswered, and how long deciding took.

Rubber-stamping shows as a confirm rate that rises while the time to decide falls; a cycle where both
happened against the cycle before is flagged. Four queries whatever the number of schedules, campaigns
or items: the ranked campaigns' ids, their item counts, the campaigns, and the decision times of their
decided items.
"""

from __future__ import annotations

import statistics
from collections import defaultdict

from django.db.models import Count, DurationField, ExpressionWrapper, F, Window
from django.db.models.functions import Coalesce, RowNumber

from attestations.choices import CampaignStatus, ItemStatus
from attestations.models import AttestationItem, Campaign
from attestations.services.review_quality import format_seconds

LIMIT_CYCLES = 8
ADHOC_NAME = "Ad-hoc campaigns"
# Statuses a person chose; ``expired`` is the default action on no response.
DECIDED_BY_PERSON = (ItemStatus.CONFIRMED, ItemStatus.RELEASED, ItemStatus.REASSIGNED)
COUNTED = {
    "confirmed": ItemStatus.CONFIRMED,
    "released": ItemStatus.RELEASED,
    "reassigned": ItemStatus.REASSIGNED,
    "expired": ItemStatus.EXPIRED,
}


def _last_closed_cycles(limit_cycles: int):
    """The ids of closed campaigns, numbered newest first within their schedule (campaigns without one form
    a group of their own), keeping the last ``limit_cycles`` of each: a subquery for the two queries."""
    return (
        Campaign.objects.filter(status=CampaignStatus.CLOSED)
        .annotate(cycle_rank=Window(RowNumber(), partition_by=[F("schedule")],
                                    order_by=[F("closed_at").desc(nulls_last=True), F("pk").desc()]))
        .filter(cycle_rank__lte=limit_cycles)
        .values("pk")
    )


def _percent(part: int, whole: int) -> float | None:
    return round(100 * part / whole, 1) if whole else None


def _median_seconds(durations: dict[int, list[float]], campaign_id: int) -> float | None:
    values = durations.get(campaign_id)
    return round(statistics.median(values), 1) if values else None


def _decision_times(cycles) -> dict[int, list[float]]:
    """Seconds from an item first shown (or from its campaign's launch) to its decision, per campaign, for
    the items a person decided. One value per item, subtracted in the database."""
    took = ExpressionWrapper(F("decided_at") - Coalesce(F("shown_at"), F("campaign__launched_at")),
                             output_field=DurationField())
    rows = (
        AttestationItem.objects.filter(campaign__in=cycles, status__in=DECIDED_BY_PERSON,
                                       decided_at__isnull=False)
        .annotate(took=took).order_by().values_list("campaign_id", "took")
    )
    durations: dict[int, list[float]] = defaultdict(list)
    for campaign_id, delta in rows.iterator():
        if delta is not None:
            durations[campaign_id].append(max(delta.total_seconds(), 0.0))
    return durations


def _flag_rubber_stamping(cycles: list[dict]) -> None:
    """Mark each cycle whose confirm rate rose while its median time to decide fell, against the cycle before."""
    for previous, cycle in zip(cycles, cycles[1:], strict=False):
        rates = (previous["confirm_rate"], cycle["confirm_rate"])
        times = (previous["median_seconds"], cycle["median_seconds"])
        cycle["rubber_stamping"] = (
            None not in rates and None not in times and rates[1] > rates[0] and times[1] < times[0]
        )


def schedule_trends(limit_cycles: int = LIMIT_CYCLES) -> list[dict]:
    """Per campaign schedule (by name; campaigns without a schedule last, as "Ad-hoc campaigns"), its last
    ``limit_cycles`` closed campaigns, oldest to newest, each with its item counts, its rates in percent
    of its items (completion: decided by a person; confirm, release, reassign; no response: expired), the
    median seconds to decide, and whether it looks like rubber-stamping (schedules only: ad-hoc campaigns
    are not cycles of one another). Schedules without a closed campaign are left out."""
    # The shown campaigns' ids first, so that their items are found through the campaign index.
    cycles = list(_last_closed_cycles(limit_cycles).values_list("pk", flat=True))
    # Items are counted for the shown campaigns only, not for every campaign ever closed, from the
    # (campaign, status) index.
    per_status: dict[int, dict[str, int]] = defaultdict(dict)
    for campaign_id, status, n in (AttestationItem.objects.filter(campaign__in=cycles).order_by()
                                   .values_list("campaign_id", "status").annotate(n=Count("pk"))):
        per_status[campaign_id][status] = n
    counted = []
    for row in Campaign.objects.filter(pk__in=cycles).values(
            "pk", "name", "schedule_id", "schedule__name", "launched_at", "closed_at").order_by(
            F("closed_at").asc(nulls_first=True), "pk"):
        statuses = per_status[row["pk"]]
        counted.append({**row, "total": sum(statuses.values()),
                        **{name: statuses.get(status, 0) for name, status in COUNTED.items()}})
    durations = _decision_times(cycles) if cycles else {}
    groups: dict[int | None, dict] = {}
    for row in counted:
        group = groups.setdefault(row["schedule_id"], {
            "schedule_id": row["schedule_id"],
            "name": row["schedule__name"] or ADHOC_NAME,
            "adhoc": row["schedule_id"] is None,
            "cycles": [],
        })
        decided = row["confirmed"] + row["released"] + row["reassigned"]
        median = _median_seconds(durations, row["pk"])
        group["cycles"].append({
            "campaign_id": row["pk"],
            "name": row["name"],
            "launched_at": row["launched_at"],
            "closed_at": row["closed_at"],
            "total": row["total"],
            "decided": decided,
            **{name: row[name] for name in COUNTED},
            "completion_rate": _percent(decided, row["total"]),
            "confirm_rate": _percent(row["confirmed"], row["total"]),
            "release_rate": _percent(row["released"], row["total"]),
            "reassign_rate": _percent(row["reassigned"], row["total"]),
            "expired_rate": _percent(row["expired"], row["total"]),
            "median_seconds": median,
            "median_label": format_seconds(median),
            "rubber_stamping": False,
        })
    trends = sorted(groups.values(), key=lambda g: (g["adhoc"], g["name"].casefold(), g["schedule_id"] or 0))
    for group in trends:
        if not group["adhoc"]:
            _flag_rubber_stamping(group["cycles"])
        group["flagged"] = sum(1 for c in group["cycles"] if c["rubber_stamping"])
    return trends
