"""Celery tasks: thin, idempotent wrappers over attestations.campaigns (safe to run twice)."""

import logging

from celery import shared_task
from django.contrib.auth import get_user_model
from django.utils import timezone

from portal.actors import system_user

from . import campaigns, notifications
from .choices import CampaignStatus
from .models import Campaign, CampaignSchedule, Notification, OwnershipTransfer

log = logging.getLogger(__name__)
User = get_user_model()


@shared_task
def launch_scheduled_campaign(schedule_id: int) -> int | None:
    schedule = CampaignSchedule.objects.filter(pk=schedule_id).first()
    if schedule is None:
        return None
    campaign = campaigns.launch_due_schedule(schedule, actor=system_user())
    return campaign.pk if campaign else None


@shared_task
def launch_due_schedules() -> list[int]:
    launched = []
    for schedule_id in CampaignSchedule.objects.filter(is_active=True, next_launch_on__lte=timezone.localdate()) \
            .values_list("pk", flat=True):
        campaign_id = launch_scheduled_campaign(schedule_id)
        if campaign_id:
            launched.append(campaign_id)
    return launched


@shared_task
def notify_campaign_launched(campaign_id: int) -> int:
    campaign = Campaign.objects.get(pk=campaign_id)
    sent = 0
    for user_id, count in campaigns.reviewers_with_pending(campaign).items():
        if campaigns.record_notification(campaign, Notification.Kind.LAUNCHED, user_id, 0, count):
            notifications.campaign_launched(campaign, User.objects.get(pk=user_id), count)
            sent += 1
    return sent


def _active_campaigns(campaign_id: int | None):
    """Every active campaign, or the one named if it is active."""
    active = Campaign.objects.filter(status=CampaignStatus.ACTIVE)
    return active.filter(pk=campaign_id) if campaign_id else active


@shared_task
def send_reminders(campaign_id: int | None = None) -> int:
    """Remind reviewers who still have pending items, once per reminder day."""
    today = timezone.localdate()
    sent = 0
    for campaign in _active_campaigns(campaign_id):
        day = campaigns.due_reminder_day(campaign, today)
        if day is None:
            continue
        for user_id, count in campaigns.reviewers_with_pending(campaign).items():
            if campaigns.record_notification(campaign, Notification.Kind.REMINDER, user_id, day, count):
                notifications.reminder(campaign, User.objects.get(pk=user_id), count)
                sent += 1
    return sent


@shared_task
def escalate_overdue(campaign_id: int | None = None) -> int:
    """Send pending items past the escalation day to the owner's manager (or compliance)."""
    today = timezone.localdate()
    actor = system_user()
    sent = 0
    for campaign in _active_campaigns(campaign_id):
        for user_id, items in campaigns.escalation_targets(campaign, today, actor=actor).items():
            notifications.escalation(campaign, User.objects.get(pk=user_id), items)
            sent += 1
    return sent


@shared_task
def close_campaign(campaign_id: int, actor_id: int | None = None) -> dict:
    campaign = Campaign.objects.get(pk=campaign_id)
    actor = User.objects.get(pk=actor_id) if actor_id else system_user()
    result = campaigns.close_campaign(campaign, actor=actor)
    log.info("campaign %s closed: %s", campaign_id, result)
    return result


@shared_task
def close_due_campaigns() -> list[int]:
    today = timezone.localdate()
    closed = []
    for campaign_id in Campaign.objects.filter(status=CampaignStatus.ACTIVE, due_on__lt=today).values_list("pk", flat=True):
        close_campaign(campaign_id)
        closed.append(campaign_id)
    return closed


@shared_task
def notify_transfer_requested(transfer_id: int) -> None:
    transfer = OwnershipTransfer.objects.select_related("key", "to_user", "from_user", "requested_by").get(pk=transfer_id)
    notifications.transfer_requested(transfer)


@shared_task
def lapse_due_successions() -> dict:
    """Every hour: successions of departed owners' keys unaccepted at their deadline get their default action."""
    from . import successions

    result = successions.lapse_due_successions()
    if result["lapsed"]:
        log.info("successions lapsed: %s", result)
    return result
