"""Celery tasks of keys: thin, idempotent wrappers over keys.services (revocation delivery, sweeps,
releases, exception lapses and reminders).

All tasks may run twice (``acks_late``: a task whose worker died is delivered again): the services
they call check state under a row lock.
"""

import datetime
import logging

from celery import shared_task
from django.conf import settings
from django.core.mail import send_mail
from django.urls import reverse
from django.utils import timezone

from core.actors import system_user
from core.chain import sealed_atomic
from keys.choices import ExceptionKind
from keys.models import KeyException
from keys.services import key_exceptions as exceptions
from keys.services import releases, revocation, sweeps

log = logging.getLogger(__name__)

# A webhook request never called this long after it was opened lost its enqueue (process died).
UNSENT_AFTER = datetime.timedelta(minutes=2)


@shared_task(bind=True, acks_late=True)
def deliver_revocation(self, request_id: int) -> str:
    """Make the revocation call if due; after a failure, schedule the next one after the backoff.

    Run eagerly (locally, no broker) a failure is not re-enqueued at once, which would retry without
    waiting: ``retry_due_revocations`` sends it again when it is due.
    """
    outcome = revocation.deliver(request_id)
    if outcome.retry_in is not None and not self.request.is_eager:
        deliver_revocation.apply_async((request_id,), countdown=outcome.retry_in)
    return outcome.status


@shared_task
def retry_due_revocations() -> list[int]:
    """Every few minutes: re-enqueue webhook revocations that are due and not delivered.

    The safety net under the delivery task: a retry whose scheduled task was lost, a call whose
    worker died before reporting back (its claim lapses), a request whose first enqueue never happened.
    """
    due = revocation.retry_due(unsent_after=UNSENT_AFTER)
    for request_id in due:
        deliver_revocation.delay(request_id)
    if due:
        log.info("revocation requests re-enqueued: %s", due)
    return due


def _sweep(name: str, counts: dict[str, int]) -> dict[str, int]:
    if any(counts.values()):
        log.info("%s: %s", name, counts)
    return counts


@shared_task
def sweep_expired_keys() -> dict[str, int]:
    return _sweep("expired keys", sweeps.sweep_expired_keys())


@shared_task
def sweep_ended_contracts() -> dict[str, int]:
    return _sweep("ended contracts", sweeps.sweep_ended_contracts())


@shared_task
def sweep_decommissioned_workflows() -> dict[str, int]:
    return _sweep("decommissioned workflows", sweeps.sweep_decommissioned_workflows())


@shared_task
def sweep_departed_owners() -> dict[str, int]:
    return _sweep("departed owners", sweeps.sweep_departed_owners())


@shared_task
def sweep_stale_keys() -> dict[str, int]:
    return _sweep("stale keys", sweeps.sweep_stale_keys())


@shared_task
def sweep_rotation_due() -> dict[str, int]:
    return _sweep("rotation due", sweeps.sweep_rotation_due())


@shared_task
def finalise_due_releases() -> dict[str, int]:
    """Every hour: end release grace windows that ran out (revoke quiet keys, hold used ones)."""
    return _sweep("release grace windows", releases.finalise_due_releases())


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
