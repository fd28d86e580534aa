"""Celery tasks for the key lifecycle: thin, idempotent wrappers over keys.revocation and keys.sweeps.

All tasks may run twice (``acks_late``: a task whose worker died is delivered again): the services
they call check state under a row lock.
"""

import datetime
import logging

from celery import shared_task

from . import releases, revocation, sweeps

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
