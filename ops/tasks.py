"""Celery tasks of operations."""

from celery import shared_task

from ops import heartbeat


@shared_task(bind=True, ignore_result=True)
def record_heartbeat(self) -> None:
    heartbeat.record_heartbeat(self.request.hostname or "")
