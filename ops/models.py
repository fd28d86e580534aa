from django.db import models


class WorkerHeartbeat(models.Model):
    """When a Celery worker last ran the heartbeat task: one row per name (``worker``), rewritten every minute."""

    name = models.CharField(max_length=50, unique=True)
    beat_at = models.DateTimeField()
    hostname = models.CharField(max_length=200, blank=True, help_text="The worker that ran it.")

    def __str__(self):
        return f"{self.name} at {self.beat_at:%Y-%m-%d %H:%M:%S}"
