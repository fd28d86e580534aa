"""Celery tasks of the dashboard: thin wrappers over dashboard.summary (safe to run twice)."""

from celery import shared_task

from dashboard import summary


@shared_task
def refresh_key_summary() -> int:
    """Count every key per customer again for the dashboard; returns the keys counted."""
    return summary.refresh_key_summary().keys
