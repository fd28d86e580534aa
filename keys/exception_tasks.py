"""Celery tasks for key exceptions: thin, idempotent wrappers over keys.exceptions.

Kept apart from keys/tasks.py; portal/celery.py discovers ``exception_tasks`` modules too.
"""

import logging

from celery import shared_task
from django.conf import settings
from django.core.mail import send_mail
from django.urls import reverse
from django.utils import timezone

from portal.actors import system_user
from portal.chain import sealed_atomic

from . import exceptions
from .choices import ExceptionKind
from .models import KeyException

log = logging.getLogger(__name__)


@shared_task
def sweep_lapsed_exceptions() -> list[int]:
    """Daily: mark approved exceptions past their end or review date as lapsed."""
    lapsed = exceptions.sweep_lapsed_exceptions(actor=system_user())
    if lapsed:
        log.info("exceptions lapsed: %s", lapsed)
    return lapsed


@shared_task
def send_exception_reminders() -> int:
    """Daily: remind the requester and the key's owner 14 and 3 days before an exception's due date.

    Each reminder is recorded in the exception's history before the mail leaves, in the same
    transaction, so a rerun sends nothing twice and a failed send is retried the next run.
    """
    today = timezone.localdate()
    actor = system_user()
    sent = 0
    for exception in exceptions.reminder_candidates(today).select_related("key__owner", "requested_by"):
        with sealed_atomic():
            days = exceptions.claim_reminder(exception, actor=actor, today=today)
            if days is not None:
                sent += remind(exception, days)
    return sent


def remind(exception: KeyException, days: int) -> int:
    key = exception.key
    recipients = sorted({u.email for u in (exception.requested_by, key.owner) if u.email and u.is_active})
    if not recipients:
        return 0
    what = "migration must be done" if exception.kind == ExceptionKind.TRANSITIONAL else "risk acceptance must be reviewed"
    send_mail(
        f"[Keys portal] Exception for {key.label} due in {days} days",
        f"The {exception.get_kind_display().lower()} exception for {key.label} ({key.prefix}…) of "
        f"{key.workflow.customer.name} is due on {exception.due_on:%d %b %Y}: its {what} by then.\n\n"
        f"If nothing happens, the exception lapses and the key is put in front of its owner in the next "
        f"attestation campaign.\n\n"
        f"The exception: {settings.SITE_URL}{reverse('keys:exception', args=[exception.pk])}\n",
        settings.DEFAULT_FROM_EMAIL,
        recipients,
    )
    return len(recipients)
