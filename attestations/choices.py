from django.db import models


class CampaignStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    ACTIVE = "active", "Active"
    CLOSED = "closed", "Closed"
    CANCELLED = "cancelled", "Cancelled"


CAMPAIGN_TRANSITIONS: dict[str, tuple[frozenset, str]] = {
    "launch": (frozenset({CampaignStatus.DRAFT}), CampaignStatus.ACTIVE),
    "close": (frozenset({CampaignStatus.ACTIVE}), CampaignStatus.CLOSED),
    "cancel": (frozenset({CampaignStatus.DRAFT, CampaignStatus.ACTIVE}), CampaignStatus.CANCELLED),
}


class ItemStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    CONFIRMED = "confirmed", "Confirmed"
    RELEASED = "released", "Released"
    REASSIGNED = "reassigned", "Reassigned"
    EXPIRED = "expired", "Expired (no response)"


class Decision(models.TextChoices):
    CONFIRM = "confirm", "Confirm"
    RELEASE = "release", "Release"
    REASSIGN = "reassign", "Reassign"
    DELEGATE = "delegate", "Delegate"


# What each decision does to a pending item; delegation leaves it pending with a delegate.
DECISION_OUTCOMES = {
    Decision.CONFIRM: ItemStatus.CONFIRMED,
    Decision.RELEASE: ItemStatus.RELEASED,
    Decision.REASSIGN: ItemStatus.REASSIGNED,
    Decision.DELEGATE: ItemStatus.PENDING,
}


class DefaultAction(models.TextChoices):
    SUSPEND = "suspend", "Suspend the key"
    REVOKE = "revoke", "Revoke the key"
    KEEP_AND_FLAG = "keep_and_flag", "Keep the key and flag it"


class TransferStatus(models.TextChoices):
    PENDING = "pending", "Awaiting acceptance"
    ACCEPTED = "accepted", "Accepted"
    DECLINED = "declined", "Declined"
    LAPSED = "lapsed", "Lapsed"


class TransferKind(models.TextChoices):
    REASSIGNMENT = "reassignment", "Reassigned in a campaign"
    SUCCESSION = "succession", "Successor of a departed owner"


class Recommendation(models.TextChoices):
    NONE = "", "No recommendation"
    RELEASE_UNUSED = "release_unused", "Unused for 90 days or more: consider releasing it"
    RELEASE_NEVER_USED = "release_never_used", "Never used since it was issued: consider releasing it"
    ROTATE = "rotate", "Ownership changed without rotation: confirm and rotate it"
    RELEASE_CONTRACT = "release_contract", "The customer's contract has ended: release it"
    RELEASE_DECOMMISSIONED = "release_decommissioned", "The workflow is decommissioned: release it"


class ReasonCode(models.TextChoices):
    """Why a key is released: a closed list, asked at every stage, beside the free-text justification."""

    UNUSED = "unused", "No longer needed"
    REPLACED = "replaced", "Replaced by another key"
    OWNER_UNKNOWN = "owner_unknown", "Owner unknown"
    SECURITY = "security", "Security concern"
    CONTRACT_ENDED = "contract_ended", "Contract ended"
    OTHER = "other", "Other"


class StageReviewer(models.TextChoices):
    """Who reviews a stage's items; a stage may also name one user by username."""

    OWNER = "owner", "The key's owner"
    MANAGER = "manager", "The owner's manager"
    COMPLIANCE = "compliance", "Compliance"


class MissingSignoff(models.TextChoices):
    """What an item waiting for a later stage's sign-off gets when that stage ends without one."""

    KEEP = "keep", "Keep the earlier decision"
    DEFAULT = "default", "Apply the default action"


# The decisions an earlier stage can pass on to the next one.
MOVABLE_DECISIONS = (Decision.CONFIRM, Decision.RELEASE)
MAX_STAGES = 3
