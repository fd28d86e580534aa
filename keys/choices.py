from django.db import models


class ContractStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    ENDING = "ending", "Ending"
    ENDED = "ended", "Ended"


class Environment(models.TextChoices):
    PRODUCTION = "production", "Production"
    STAGING = "staging", "Staging"
    DEVELOPMENT = "development", "Development"


class WorkflowStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    DECOMMISSIONED = "decommissioned", "Decommissioned"


class IssuingSystemKind(models.TextChoices):
    WEBHOOK = "webhook", "Webhook (signed HTTP call)"
    MANUAL = "manual", "Manual (admin confirms)"


class RiskTier(models.TextChoices):
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"
    CRITICAL = "critical", "Critical"


class KeyStatus(models.TextChoices):
    PENDING = "pending", "Pending approval"
    ACTIVE = "active", "Active"
    SUSPENDED = "suspended", "Suspended"
    REVOKED = "revoked", "Revoked"
    EXPIRED = "expired", "Expired"


FINAL_KEY_STATUSES = frozenset({KeyStatus.REVOKED, KeyStatus.EXPIRED})
LIVE_KEY_STATUSES = frozenset({KeyStatus.PENDING, KeyStatus.ACTIVE, KeyStatus.SUSPENDED})


class RevocationReason(models.TextChoices):
    RELEASED = "released", "Released by owner"
    CONTRACT_ENDED = "contract_ended", "Customer contract ended"
    WORKFLOW_DECOMMISSIONED = "workflow_decommissioned", "Workflow decommissioned"
    OWNER_DEPARTED = "owner_departed", "Owner departed"
    EXPOSED = "exposed", "Secret exposed"
    NO_RESPONSE = "no_response", "No response in campaign"
    MANUAL = "manual", "Manual"


class LifecycleAction(models.TextChoices):
    REGISTER = "register", "Registered"
    APPROVE = "approve", "Approved"
    ROTATE = "rotate", "Rotated"
    SUSPEND = "suspend", "Suspended"
    REINSTATE = "reinstate", "Reinstated"
    REVOKE = "revoke", "Revoked"
    EXPIRE = "expire", "Expired"
    CHANGE_OWNER = "change_owner", "Owner changed"
    IMPORT = "import", "Imported"
    ATTEST = "attest", "Attested"
    FLAG = "flag", "Flagged as unattested"
    CONFIRM_REVOCATION = "confirm_revocation", "Revocation confirmed at the issuer"
    FLAG_ORPHANED = "flag_orphaned", "Flagged as orphaned"
    FLAG_STALE = "flag_stale", "Flagged as stale"
    CLEAR_STALE = "clear_stale", "Used again: no longer stale"
    FLAG_ROTATION = "flag_rotation", "Flagged for rotation"
    RELEASE_GRACE = "release_grace", "Released: suspended for a grace window"
    ROLL_BACK_RELEASE = "release_rollback", "Release rolled back"


# The key state machine: action -> (statuses it may start from, status it leads to).
# ``None`` as the target keeps the current status (rotation, ownership change).
KEY_TRANSITIONS: dict[str, tuple[frozenset, str | None]] = {
    LifecycleAction.APPROVE: (frozenset({KeyStatus.PENDING}), KeyStatus.ACTIVE),
    LifecycleAction.ROTATE: (frozenset({KeyStatus.ACTIVE, KeyStatus.SUSPENDED}), None),
    LifecycleAction.SUSPEND: (frozenset({KeyStatus.ACTIVE}), KeyStatus.SUSPENDED),
    LifecycleAction.REINSTATE: (frozenset({KeyStatus.SUSPENDED}), KeyStatus.ACTIVE),
    LifecycleAction.REVOKE: (
        frozenset({KeyStatus.PENDING, KeyStatus.ACTIVE, KeyStatus.SUSPENDED}),
        KeyStatus.REVOKED,
    ),
    LifecycleAction.EXPIRE: (frozenset({KeyStatus.ACTIVE, KeyStatus.SUSPENDED}), KeyStatus.EXPIRED),
    LifecycleAction.CHANGE_OWNER: (frozenset(LIVE_KEY_STATUSES), None),
    LifecycleAction.RELEASE_GRACE: (frozenset({KeyStatus.ACTIVE, KeyStatus.SUSPENDED}), KeyStatus.SUSPENDED),
    # Back to the status the key had before its release (active, or suspended if it already was).
    LifecycleAction.ROLL_BACK_RELEASE: (frozenset({KeyStatus.SUSPENDED}), None),
}


class RevocationState(models.TextChoices):
    NONE = "", "Not revoked"
    PENDING = "pending", "Awaiting the issuer"
    CONFIRMED = "confirmed", "Confirmed at the issuer"


class RevocationRequestStatus(models.TextChoices):
    PENDING = "pending", "Waiting to be sent"
    RETRYING = "retrying", "Failed, will retry"
    AWAITING_CONFIRMATION = "awaiting_confirmation", "Awaiting an admin's confirmation"
    ACKNOWLEDGED = "acknowledged", "Acknowledged by the issuer"
    CONFIRMED = "confirmed", "Confirmed by an admin"
    GAVE_UP = "gave_up", "Retries exhausted: needs an admin"


OPEN_REVOCATION_STATUSES = frozenset(
    {RevocationRequestStatus.PENDING, RevocationRequestStatus.RETRYING,
     RevocationRequestStatus.AWAITING_CONFIRMATION, RevocationRequestStatus.GAVE_UP}
)
# Webhook requests a delivery task may (still) send.
SENDABLE_REVOCATION_STATUSES = frozenset({RevocationRequestStatus.PENDING, RevocationRequestStatus.RETRYING})
# Requests an admin may confirm by hand: manual systems, and webhook deliveries that gave up.
CONFIRMABLE_REVOCATION_STATUSES = frozenset(
    {RevocationRequestStatus.AWAITING_CONFIRMATION, RevocationRequestStatus.GAVE_UP}
)


class ReleaseStatus(models.TextChoices):
    WATCHING = "watching", "In its grace window"
    HELD = "held", "Used during its window: awaiting a decision"
    ROLLED_BACK = "rolled_back", "Rolled back"
    REVOKED = "revoked", "Revoked after a quiet window"
    SUPERSEDED = "superseded", "Ended otherwise (revoked or expired meanwhile)"


# A release still deciding the key's fate: at most one per key.
OPEN_RELEASE_STATUSES = frozenset({ReleaseStatus.WATCHING, ReleaseStatus.HELD})


class ExposureSource(models.TextChoices):
    PORTAL = "portal", "Reported in the portal"
    API = "api", "Reported through the API"


class TriageStatus(models.TextChoices):
    """A fingerprint-only exposure report of a key its reporter may not see, until compliance decides."""

    OPEN = "open", "Awaiting triage"
    REVOKED = "revoked", "Key revoked after triage"
    DISMISSED = "dismissed", "Dismissed after triage"


class ExceptionKind(models.TextChoices):
    TRANSITIONAL = "transitional", "Transitional (migrating away)"
    PERMANENT = "permanent", "Permanent (risk accepted)"


class ExceptionStatus(models.TextChoices):
    REQUESTED = "requested", "Requested"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    EXPIRED = "expired", "Expired"
    WITHDRAWN = "withdrawn", "Withdrawn"


EXCEPTION_TRANSITIONS: dict[str, tuple[frozenset, str]] = {
    "approve": (frozenset({ExceptionStatus.REQUESTED}), ExceptionStatus.APPROVED),
    "reject": (frozenset({ExceptionStatus.REQUESTED}), ExceptionStatus.REJECTED),
    "expire": (frozenset({ExceptionStatus.APPROVED}), ExceptionStatus.EXPIRED),
    "withdraw": (frozenset({ExceptionStatus.REQUESTED, ExceptionStatus.APPROVED}), ExceptionStatus.WITHDRAWN),
}


class BlastRadius(models.TextChoices):
    LOW = "low", "Low: one system, no sensitive data"
    MEDIUM = "medium", "Medium: several systems or some sensitive data"
    HIGH = "high", "High: regulated data or broad write access"


class Replaceability(models.TextChoices):
    REPLACEABLE = "replaceable", "Replaceable now"
    WITH_EFFORT = "with_effort", "Replaceable with engineering effort"
    NOT_REPLACEABLE = "not_replaceable", "Not replaceable (the platform only supports API keys)"


class MigrationTarget(models.TextChoices):
    OAUTH = "oauth", "OAuth client credentials"
    WORKLOAD_IDENTITY = "workload_identity", "Workload identity"
    TOKEN_BROKER = "token_broker", "Short-lived token broker"
    OTHER = "other", "Other"


class CompensatingControl(models.TextChoices):
    SECRET_MANAGER = "secret_manager", "Stored in a secret manager"
    NETWORK_RESTRICTION = "network_restriction", "Network restriction (IP allow-list)"
    SHORTER_ROTATION = "shorter_rotation", "Shorter rotation period"
    EXTRA_LOGGING = "extra_logging", "Extra logging and alerting"
    REDUCED_SCOPE = "reduced_scope", "Scope reduced to the minimum"
