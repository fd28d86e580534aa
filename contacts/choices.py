from django.db import models


class LinkPurpose(models.TextChoices):
    INVITATION = "invitation", "Invitation"
    CAMPAIGN = "campaign", "Campaign launched"
    REMINDER = "reminder", "Campaign reminder"
    MANUAL = "manual", "Sent by compliance"


class LinkState(models.TextChoices):
    """What an access link is good for now; computed from its timestamps, never stored."""

    VALID = "valid", "Valid"
    USED = "used", "Already used"
    SUPERSEDED = "superseded", "Replaced by a newer link"
    EXPIRED = "expired", "Expired"
    LOCKED = "locked", "Locked after wrong codes"
    INACTIVE = "inactive", "Contact deactivated"
