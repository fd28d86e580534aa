"""Figures counted over every key, kept by a worker job so the dashboard does not count a million keys per view."""

from django.db import models

from keys.models import Customer


class CustomerKeyCounts(models.Model):
    """One customer's keys counted by status and flag when the key summary was last refreshed
    (``dashboard.summary.refresh_key_summary``). The dated counts (review due, expiring, unused) are
    taken against the refresh's day."""

    customer = models.OneToOneField(Customer, on_delete=models.CASCADE, primary_key=True, related_name="+")
    total = models.PositiveIntegerField(default=0)
    pending = models.PositiveIntegerField(default=0)
    active = models.PositiveIntegerField(default=0)
    suspended = models.PositiveIntegerField(default=0)
    revoked = models.PositiveIntegerField(default=0)
    expired = models.PositiveIntegerField(default=0)
    # Over live keys only, as the dashboard shows them.
    due_for_review = models.PositiveIntegerField(default=0)
    expiring = models.PositiveIntegerField(default=0)
    rotation_required = models.PositiveIntegerField(default=0)
    orphaned = models.PositiveIntegerField(default=0)
    unattested = models.PositiveIntegerField(default=0)
    unused = models.PositiveIntegerField(default=0)
    flagged = models.PositiveIntegerField(default=0, help_text="Orphaned, unattested or due for rotation.")

    class Meta:
        verbose_name_plural = "customer key counts"


class KeySummaryRefresh(models.Model):
    """When the customer key counts were last taken (one row), and how many keys there were then."""

    refreshed_at = models.DateTimeField()
    as_of = models.DateField(help_text="The day the dated counts were taken against.")
    keys = models.PositiveBigIntegerField(default=0)
    took_ms = models.PositiveIntegerField(default=0)

    def __str__(self):
        return f"Key summary of {self.refreshed_at:%Y-%m-%d %H:%M}"
