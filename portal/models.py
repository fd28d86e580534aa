"""The tamper-evident chain over every history record of the governed models."""

from django.db import models


class ChainHead(models.Model):
    """The single head of the history chain; its row lock serialises sealing."""

    seq = models.PositiveBigIntegerField(default=0)
    digest = models.CharField(max_length=64, default="0" * 64)
    updated_at = models.DateTimeField(auto_now=True)


class ChainLink(models.Model):
    """One sealed history record: its digest covers the record's content and the previous digest."""

    seq = models.PositiveBigIntegerField(unique=True)
    model_label = models.CharField(max_length=100)
    history_id = models.BigIntegerField()
    digest = models.CharField(max_length=64)
    prev_digest = models.CharField(max_length=64)
    sealed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["seq"]
        constraints = [models.UniqueConstraint(fields=["model_label", "history_id"], name="one_link_per_history_record")]
