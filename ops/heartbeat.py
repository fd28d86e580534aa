"""The worker heartbeat: a task beat runs every minute records when a worker last ran it; /health/ reads it."""

import datetime
import socket

from django.conf import settings
from django.utils import timezone

from ops.models import WorkerHeartbeat

WORKER = "worker"


def record_heartbeat(hostname: str = "") -> datetime.datetime:
    """Record that a worker is running tasks now."""
    now = timezone.now()
    WorkerHeartbeat.objects.update_or_create(
        name=WORKER, defaults={"beat_at": now, "hostname": (hostname or socket.gethostname())[:200]})
    return now


def tasks_run_in_process() -> bool:
    """No worker is configured: tasks run in the web process, and there is no broker or heartbeat to check."""
    return bool(settings.CELERY_TASK_ALWAYS_EAGER)


def heartbeat_max_age() -> datetime.timedelta:
    return datetime.timedelta(seconds=settings.WORKER_HEARTBEAT_MAX_AGE)
