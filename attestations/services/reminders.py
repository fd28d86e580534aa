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
from attestations.stages import current_window, stage_window, stages_of
from core.chain import bulk_update_with_history, sealed_atomic

User = get_user_model()


# A reminder's sequence number: the stage's number times this, plus the day of the stage it was sent on.
STAGE_SEQUENCE = 1000


def reminder_schedule(campaign: Campaign, duration_days: int | None = None) -> list[int]:
    """The days after a stage starts (launch, for the first) on which reviewers with pending items are
    reminded: the listed days, plus every ``reminder_every_days`` days, before the stage ends."""
    duration = duration_days or campaign.duration_days
    days = {d for d in campaign.reminder_days or [] if isinstance(d, int) and 0 < d <= duration}
    if campaign.reminder_every_days:
        days.update(range(campaign.reminder_every_days, duration, campaign.reminder_every_days))
    return sorted(days)


def due_reminder_day(campaign: Campaign, today: datetime.date) -> int | None:
    """The latest reminder of the current stage that has come, as its sequence number (the day, in the first
    stage); a missed day is not sent twice later."""
    if campaign.status != CampaignStatus.ACTIVE or not campaign.launched_at:
        return None
    number = current_window(campaign, today)
    start, _ = stage_window(campaign, number)
    duration = stages_of(campaign)[number - 1].duration_days
    elapsed = (today - start).days
    days = [d for d in reminder_schedule(campaign, duration) if d <= elapsed]
    return (number - 1) * STAGE_SEQUENCE + max(days) if days else None


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
    """Mark pending items whose stage started ``escalation_days`` ago or more as escalated; return them by the
    person escalated to, who may then decide them (``may_decide``).

    The reviewer's manager gets them, or compliance (every officer) when the reviewer has none. Items compliance
    reviews are not escalated.
    """
    from core import roles

    if campaign.status != CampaignStatus.ACTIVE or campaign.escalation_days is None or not campaign.launched_at:
        return {}
    due_stages = [stage.number for stage in stages_of(campaign)
                  if (today - stage_window(campaign, stage.number)[0]).days >= campaign.escalation_days]
    if not due_stages:
        return {}
    compliance = list(User.objects.filter(groups__name=roles.COMPLIANCE, is_active=True).order_by("pk"))
    targets: dict[int, list[AttestationItem]] = {}
    with sealed_atomic():
        items = list(
            campaign.items.select_for_update(of=("self",))
            .filter(status=ItemStatus.PENDING, escalated_at__isnull=True, stage__in=due_stages, reviewer_role="")
            .select_related("reviewer__owner_profile__manager", "key")
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
            item.escalated_to_role = "" if manager else roles.COMPLIANCE
            for person in recipients:
                targets.setdefault(person.pk, []).append(item)
        escalated = [i for i in items if i.escalated_at]
        if escalated:
            bulk_update_with_history(escalated, AttestationItem, ["escalated_at", "escalated_to", "escalated_to_role"],
                                     default_user=actor,
                                     default_change_reason=f"escalated in campaign {campaign.name}"[:100])
    return targets
