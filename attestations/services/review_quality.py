"""What a reviewer saw when deciding, frozen into the item, and signals of rubber-stamping per reviewer.

``decision_evidence`` runs inside ``campaigns.record_decision``, so the item keeps
the usage, exceptions and recommendation as they were at decision time, whatever happens to the key
later. ``reviewer_quality`` turns the decided items of a campaign into per-reviewer figures: how long
decisions took (from the item first shown, or from launch, to the decision), the gaps between
consecutive decisions, bulk batches, and decisions by someone not independent of the key.
"""

from __future__ import annotations

import datetime
import statistics
from collections import defaultdict

from django.db.models import Exists, OuterRef
from django.utils import timezone

from attestations.choices import ItemStatus, Recommendation
from keys.choices import ExceptionStatus, LifecycleAction
from keys.models import KeyException, LifecycleEvent, UsageDaily

MAX_SOURCES = 20
# Consecutive decisions closer than this are counted as rapid (seconds).
RAPID_SECONDS = 10

SELF_REVIEW_LABELS = {
    "approved_key": "approved the key",
    "registered_key": "registered the key",
    "requested_exception": "requested the key's exception",
    "owner_is_steward": "owner is also the steward",
}


def decision_evidence(item, actor, *, registered_key: bool | None = None,
                      now: datetime.datetime | None = None) -> tuple[dict, list[str]]:
    """What the reviewer had in front of them, JSON-ready: last use, calls in 30/90 days, sources, open
    exceptions, the recommendation; and why the decider is not independent of the key (see
    ``SELF_REVIEW_LABELS``): they approved or registered it, or requested its open exception; or the
    key's owner is also its steward (nobody else looks at it).

    Two queries: the key's daily usage rows of 90 days, and its open exceptions (which also say who
    requested them). ``registered_key``, when the caller read it with the key (see
    ``registered_by``), saves the look-up of the key's registration.
    """
    now = now or timezone.now()
    key = item.key
    today = timezone.localdate(now)
    since_30 = today - datetime.timedelta(days=30)
    calls_30 = calls_90 = 0
    sources: dict[str, None] = {}
    usage = UsageDaily.objects.filter(key=key.pk, day__gt=today - datetime.timedelta(days=90), day__lte=today)
    for day, count, day_sources in usage.order_by("-day").values_list("day", "count", "sources"):
        calls_90 += count
        if day > since_30:
            calls_30 += count
        if len(sources) < MAX_SOURCES:
            for source in day_sources or []:
                sources.setdefault(source, None)
    exceptions, requested = [], False
    open_exceptions = KeyException.objects.filter(
        key=key.pk, status__in=[ExceptionStatus.REQUESTED, ExceptionStatus.APPROVED]).order_by("pk")
    for pk, kind, status, end, review, requested_by_id in open_exceptions.values_list(
            "pk", "kind", "status", "end_date", "review_date", "requested_by_id"):
        exceptions.append({"id": pk, "kind": kind, "status": status,
                           "due_on": (end or review).isoformat() if (end or review) else None})
        requested = requested or requested_by_id == actor.pk
    evidence = {
        "frozen_at": now.isoformat(),
        "last_used_at": key.last_used_at.isoformat() if key.last_used_at else None,
        "calls_30d": calls_30,
        "calls_90d": calls_90,
        "sources": list(sources)[:MAX_SOURCES],
        "open_exceptions": exceptions,
        "recommendation": item.recommendation or "",
        "recommendation_label": Recommendation(item.recommendation).label if item.recommendation else "",
        "key_status": key.status,
    }
    if registered_key is None:
        registered_key = LifecycleEvent.objects.filter(key=key, action=LifecycleAction.REGISTER, actor=actor).exists()
    flags = []
    if key.approved_by_id and key.approved_by_id == actor.pk:
        flags.append("approved_key")
    if registered_key:
        flags.append("registered_key")
    if requested:
        flags.append("requested_exception")
    if key.steward_id and key.steward_id == key.owner_id:
        flags.append("owner_is_steward")
    return evidence, flags


def registered_by(actor):
    """An annotation for a key query: whether ``actor`` registered the key."""
    return Exists(LifecycleEvent.objects.filter(key=OuterRef("pk"), action=LifecycleAction.REGISTER, actor=actor))


def evidence_summary(evidence: dict) -> str:
    """One line of the frozen evidence, for tables and the PDF."""
    if not evidence:
        return ""
    last_used = (evidence.get("last_used_at") or "never")[:10]
    parts = [f"last used {last_used}", f"{evidence.get('calls_30d', 0)} calls in 30 days, "
                                       f"{evidence.get('calls_90d', 0)} in 90"]
    if evidence.get("sources"):
        parts.append("from " + ", ".join(evidence["sources"][:5]) + (" …" if len(evidence["sources"]) > 5 else ""))
    if evidence.get("open_exceptions"):
        parts.append("exceptions " + ", ".join(f"#{e['id']} {e['status']}" for e in evidence["open_exceptions"]))
    parts.append(f"recommendation: {evidence.get('recommendation_label') or 'none'}")
    return "; ".join(parts)


def self_review_labels(flags: list[str]) -> list[str]:
    return [SELF_REVIEW_LABELS.get(flag, flag) for flag in flags or []]


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def reviewer_quality(campaign) -> list[dict]:
    """Per decider: decisions, median seconds to decide, median gap between decisions, rapid decisions,
    bulk decisions and the largest batch, self-review decisions. Expired (undecided) items are not counted."""
    rows = (
        campaign.items.filter(decided_by__isnull=False).exclude(status=ItemStatus.EXPIRED)
        .order_by("decided_by__username", "decided_at", "pk")
        .values_list("decided_by__username", "decided_at", "shown_at", "batch_size", "self_review")
    )
    per: dict[str, dict] = defaultdict(lambda: {"times": [], "decided": [], "bulk": 0, "largest": 0, "self": 0})
    launched = type(campaign).objects.filter(pk=campaign.pk).values_list("launched_at", flat=True).first()
    for username, decided_at, shown_at, batch_size, self_review in rows.iterator():
        entry = per[username]
        start = shown_at or launched
        if start and decided_at:
            entry["times"].append(max((decided_at - start).total_seconds(), 0))
        entry["decided"].append(decided_at)
        if batch_size > 1:
            entry["bulk"] += 1
        entry["largest"] = max(entry["largest"], batch_size)
        if self_review:
            entry["self"] += 1
    result = []
    for username, entry in sorted(per.items()):
        decided = sorted(d for d in entry["decided"] if d)
        gaps = [(b - a).total_seconds() for a, b in zip(decided, decided[1:], strict=False)]
        result.append({
            "reviewer": username,
            "decisions": len(entry["decided"]),
            "median_seconds_to_decide": _median(entry["times"]),
            "median_seconds_between": _median(gaps),
            "rapid_decisions": sum(1 for g in gaps if g < RAPID_SECONDS),
            "bulk_decisions": entry["bulk"],
            "largest_batch": entry["largest"],
            "self_review_decisions": entry["self"],
        })
    return result


def format_seconds(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 120:
        return f"{value:.0f} s"
    if value < 7200:
        return f"{value / 60:.0f} min"
    if value < 172800:
        return f"{value / 3600:.1f} h"
    return f"{value / 86400:.1f} d"


def reviewer_quality_rows(campaign) -> list[dict]:
    """``reviewer_quality`` with the durations written out, for pages and PDFs."""
    return written_out(reviewer_quality(campaign))


def written_out(rows: list[dict]) -> list[dict]:
    """``reviewer_quality``'s rows with the durations written out."""
    return [
        {**row, "to_decide": format_seconds(row["median_seconds_to_decide"]),
         "between": format_seconds(row["median_seconds_between"])}
        for row in rows
    ]
