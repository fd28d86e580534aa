"""Celery tasks of the core: thin, idempotent wrappers over its services (safe to run twice)."""

import logging

from celery import shared_task

from core.auditors import services as auditors

log = logging.getLogger(__name__)


@shared_task
def expire_auditor_grants() -> int:
    """Every five minutes: close the auditor grants past their end and end those auditors' sessions."""
    closed = auditors.expire_auditor_grants()
    if closed:
        log.info("closed %s ended auditor grant(s)", closed)
    return closed
