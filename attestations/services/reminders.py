"""Reminders and escalations of an active campaign: which day reminds, who still has items pending, each
notice recorded once, and the items to put in front of an owner's manager."""

from __future__ import annotations

import datetime

from django.contrib.auth import get_user_model
from django.utils import timezone

from attestations.choices import (
    CampaignStatus,
    ItemStatus,
)
from attestations.models import (
    AttestationItem,
    Campaign,
    Notification,
)
from core.chain import bulk_update_with_history, sealed_atomic

User = get_user_model()


def reminder_schedule(campaign: Campaign) -> list[int]:
    """The days after launch on which reviewers with pending items are reminded: the listed days, plus
    every ``reminder_every_days`` days, before the campaign is due."""
    days = {d for d in campaign.reminder_days or [] if isinstance(d, int) and d > 0}
    if campaign.reminder_every_days:
        days.update(range(campaign.reminder_every_days, campaign.duration_days, campaign.reminder_every_days))
    return sorted(days)


def due_reminder_day(campaign: Campaign, today: datetime.date) -> int | None:
    """The latest reminder day that has come; a missed day is not sent twice later."""
    if campaign.status != CampaignStatus.ACTIVE or not campaign.launched_at:
        return None
    elapsed = (today - timezone.localdate(campaign.launched_at)).days
    days = [d for d in reminder_schedule(campaign) if d <= elapsed]
    return max(days) if days else None


def reviewers_with_pending(campaign: Campaign) -> dict[int, int]:
    """Who has undecided items (reviewer, or delegate where one was named), with counts."""
    pending = campaign.items.filter(status=ItemStatus.PENDING)
    counts: dict[int, int] = {}
    for reviewer_id, delegate_id in pending.values_list("reviewer_id", "delegate_id"):
        who = delegate_id or reviewer_id
        counts[who] = counts.get(who, 0) + 1
    return counts


def record_notification(campaign: Campaign, kind: str, recipient_id: int, sequence: int, item_count: int) -> bool:
    """Record a notification once; False if it was already sent (so a retried task sends nothing)."""
    _, created = Notification.objects.get_or_create(
        campaign=campaign, kind=kind, recipient_id=recipient_id, sequence=sequence,
        defaults={"item_count": item_count},
    )
    return created


def escalation_targets(campaign: Campaign, today: datetime.date, *, actor) -> dict[int, list[AttestationItem]]:
    """Mark pending items past the escalation day as escalated; return them by the person escalated to.

    The owner's manager gets them, or compliance when the owner has none.
    """
    from core import roles

    if campaign.status != CampaignStatus.ACTIVE or campaign.escalation_days is None or not campaign.launched_at:
        return {}
    if (today - timezone.localdate(campaign.launched_at)).days < campaign.escalation_days:
        return {}
    compliance = list(User.objects.filter(groups__name=roles.COMPLIANCE, is_active=True).order_by("pk"))
    targets: dict[int, list[AttestationItem]] = {}
    with sealed_atomic():
        items = list(
            campaign.items.select_for_update(of=("self",))
            .filter(status=ItemStatus.PENDING, escalated_at__isnull=True)
            .select_related("reviewer__owner_profile", "key")
        )
        now = timezone.now()
        for item in items:
            profile = getattr(item.reviewer, "owner_profile", None)
            manager = profile.manager if profile and profile.manager_id and profile.manager.is_active else None
            recipients = [manager] if manager else compliance
            if not recipients:
                continue
            item.escalated_at = now
            item.escalated_to = recipients[0]
            for person in recipients:
                targets.setdefault(person.pk, []).append(item)
        escalated = [i for i in items if i.escalated_at]
        if escalated:
            bulk_update_with_history(escalated, AttestationItem, ["escalated_at", "escalated_to"], default_user=actor,
                                     default_change_reason=f"escalated in campaign {campaign.name}"[:100])
    return targets
