from django.conf import settings
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase
from simple_history.models import HistoricalRecords

from core import roles
from core.models import IssuedToken, NamedRecord
from core.validators import refuse_hidden_characters
from keys.choices import (
    OPEN_RELEASE_STATUSES,
    OPEN_REVOCATION_STATUSES,
    BlastRadius,
    ContractStatus,
    Environment,
    ExceptionKind,
    ExceptionStatus,
    ExposureSource,
    IssuingSystemKind,
    KeyStatus,
    LifecycleAction,
    MigrationTarget,
    ReleaseStatus,
    Replaceability,
    RevocationReason,
    RevocationRequestStatus,
    RevocationState,
    RiskTier,
    TriageStatus,
    WorkflowStatus,
)

USER = settings.AUTH_USER_MODEL


class Customer(NamedRecord):
    name = models.CharField(max_length=200, unique=True, validators=[refuse_hidden_characters])
    external_id = models.CharField(max_length=100, unique=True, help_text="The customer's id in the CRM.",
                                   validators=[refuse_hidden_characters])
    contract_status = models.CharField(
        max_length=20, choices=ContractStatus.choices, default=ContractStatus.ACTIVE, db_index=True
    )
    contract_end = models.DateField(null=True, blank=True)
    account_manager = models.ForeignKey(
        USER, on_delete=models.SET_NULL, null=True, blank=True, related_name="managed_customers"
    )
    history = HistoricalRecords()


class Workflow(models.Model):
    """One integration of a customer: the reason a key exists."""

    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="workflows")
    name = models.CharField(max_length=200, validators=[refuse_hidden_characters])
    purpose = models.TextField()
    data_scope = models.CharField(max_length=300, help_text="What data the integration may reach.")
    environment = models.CharField(max_length=20, choices=Environment.choices, db_index=True)
    business_owner = models.ForeignKey(USER, on_delete=models.PROTECT, related_name="owned_workflows")
    technical_steward = models.ForeignKey(
        USER, on_delete=models.SET_NULL, null=True, blank=True, related_name="stewarded_workflows"
    )
    status = models.CharField(
        max_length=20, choices=WorkflowStatus.choices, default=WorkflowStatus.ACTIVE, db_index=True
    )
    decommissioned_on = models.DateField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["customer__name", "name"]
        constraints = [models.UniqueConstraint(fields=["customer", "name"], name="workflow_unique_per_customer")]

    def __str__(self):
        return f"{self.customer} / {self.name}"


class IssuingSystem(NamedRecord):
    name = models.CharField(max_length=200, unique=True, validators=[refuse_hidden_characters])
    kind = models.CharField(max_length=20, choices=IssuingSystemKind.choices, default=IssuingSystemKind.MANUAL)
    revoke_url = models.URLField(blank=True, help_text="Webhook systems: where signed revocation calls go.")
    notes = models.TextField(blank=True)
    history = HistoricalRecords()


class OwnerProfile(models.Model):
    user = models.OneToOneField(USER, on_delete=models.CASCADE, related_name="owner_profile")
    manager = models.ForeignKey(USER, on_delete=models.SET_NULL, null=True, blank=True, related_name="reports")
    department = models.CharField(max_length=200, blank=True, validators=[refuse_hidden_characters])
    is_active = models.BooleanField(default=True, help_text="Cleared when the person leaves.")
    departed_on = models.DateField(null=True, blank=True)
    # The person's identity at the company's identity provider: the OpenID Connect subject (``OIDC_SUBJECT_CLAIM``),
    # which is also the SCIM ``externalId``. Empty for people who sign in with a password only.
    external_id = models.CharField(max_length=255, unique=True, null=True, blank=True,
                                   help_text="Identity at the identity provider (OIDC subject, SCIM externalId).")
    history = HistoricalRecords()

    class Meta:
        ordering = ["user__username"]

    def __str__(self):
        return f"{self.user.get_username()} ({self.department or 'no department'})"


# The live statuses in a fixed order, as the partial indexes on live keys name them (LIVE_KEY_STATUSES is a set).
LIVE_STATUS_VALUES = [KeyStatus.PENDING, KeyStatus.ACTIVE, KeyStatus.SUSPENDED]


class ApiKeyQuerySet(models.QuerySet):
    def visible_to(self, user):
        """The one definition of who sees which key.

        Admins and compliance (and an auditor while their grant lasts) see every key; anyone else sees the
        keys they own or steward and those granted to them explicitly (delegates) through object permissions.
        """
        if not user.is_authenticated:
            return self.none()
        ids = self.visible_ids(user)
        return self if ids is None else self.filter(pk__in=ids)

    def visible_ids(self, user):
        """The ids of the keys ``user`` may see, as a subquery; None when they see every key (then a list of
        rows about keys, such as exceptions or releases, needs no condition at all)."""
        if not user.is_authenticated:
            return ApiKey.objects.none().values("pk")
        if roles.reads_everything(user):
            return None
        # One id list from three index lookups (owned, stewarded, granted), rather than three ORed conditions: an
        # OR with a subquery cannot use the indexes, and costs a scan of every key (230 ms at a million keys,
        # against 20 ms this way).
        granted = ApiKeyUserObjectPermission.objects.filter(
            user=user, permission__codename="view_apikey"
        ).order_by().values("content_object_id")
        owned = ApiKey.objects.filter(owner=user).order_by().values("pk")
        stewarded = ApiKey.objects.filter(steward=user).order_by().values("pk")
        return owned.union(stewarded, granted, all=True)

    def visible_id_list(self, user, *, limit: int = 10_000):
        """``visible_ids`` read once into a list while they are at most ``limit`` (the subquery beyond): for lists
        of rows about keys ordered by their own columns, where PostgreSQL would otherwise walk the list's order
        index and test every row against the union (750 ms for an owner's exceptions at a million keys, 2 ms
        with the list)."""
        ids = self.visible_ids(user)
        if ids is None:
            return None
        found = list(ids.values_list("pk", flat=True)[: limit + 1])
        return sorted(set(found)) if len(found) <= limit else ids

    def live(self):
        return self.filter(status__in=LIVE_STATUS_VALUES)


class ApiKey(models.Model):
    """A customer-owned API key, known by its prefix and fingerprint. The secret is never stored."""

    workflow = models.ForeignKey(Workflow, on_delete=models.PROTECT, related_name="keys")
    issuing_system = models.ForeignKey(IssuingSystem, on_delete=models.PROTECT, related_name="keys")
    label = models.CharField(max_length=200, validators=[refuse_hidden_characters])
    prefix = models.CharField(max_length=32, db_index=True, help_text="The visible start of the key, e.g. sk_live_4f2a.")
    fingerprint = models.CharField(max_length=64, unique=True, help_text="HMAC-SHA256 of the secret under the pepper.")
    pepper_version = models.PositiveSmallIntegerField(default=1)
    scopes = models.JSONField(default=list, blank=True)
    owner = models.ForeignKey(USER, on_delete=models.PROTECT, related_name="owned_keys")
    steward = models.ForeignKey(USER, on_delete=models.SET_NULL, null=True, blank=True, related_name="stewarded_keys")
    approved_by = models.ForeignKey(USER, on_delete=models.SET_NULL, null=True, blank=True, related_name="approved_keys")
    approved_at = models.DateTimeField(null=True, blank=True)
    approval_reference = models.CharField(max_length=200, blank=True)
    issued_on = models.DateField(default=timezone.localdate)
    expires_on = models.DateField(null=True, blank=True)
    next_review_on = models.DateField(null=True, blank=True, db_index=True)
    last_used_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_rotated_at = models.DateTimeField(null=True, blank=True)
    last_attested_at = models.DateTimeField(null=True, blank=True)
    risk_tier = models.CharField(max_length=20, choices=RiskTier.choices, default=RiskTier.MEDIUM)
    status = models.CharField(max_length=20, choices=KeyStatus.choices, default=KeyStatus.PENDING, db_index=True)
    status_changed_at = models.DateTimeField(default=timezone.now)
    revocation_reason = models.CharField(max_length=40, choices=RevocationReason.choices, blank=True)
    rotation_required = models.BooleanField(default=False, help_text="Set when ownership changed since the last rotation.")
    orphaned = models.BooleanField(default=False, help_text="The owner has left; the key awaits reassignment.")
    stale = models.BooleanField(default=False, help_text="Unused for longer than the configured number of days.")
    unattested = models.BooleanField(default=False, help_text="Nobody vouched for the key in its last campaign.")
    revocation_state = models.CharField(
        max_length=20, choices=RevocationState.choices, blank=True, default=RevocationState.NONE,
        help_text="Whether the issuer has confirmed the revocation.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    history = HistoricalRecords(excluded_fields=["updated_at"])

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        ordering = ["workflow__customer__name", "label"]
        verbose_name = "API key"
        indexes = [
            models.Index(fields=["owner", "status"]),
            # The dashboard's keys waiting for a rotation, longest waiting first: few among many.
            models.Index(fields=["status_changed_at"], condition=models.Q(rotation_required=True),
                         name="key_rotation_due"),
            # Departed owners' keys awaiting a successor: few among many.
            models.Index(fields=["owner"], condition=models.Q(orphaned=True), name="keys_apikey_orphaned"),
            # Expiry look-ups, and the list sorted by expiry paged by keyset (equal dates in id order).
            models.Index(fields=["expires_on", "id"], name="keys_apikey_expiry_order"),
            # A risk tier, and its keys in expiry order: riskier keys live shorter, so the whole expiry order would be
            # read past the others before meeting them.
            models.Index(fields=["risk_tier", "expires_on", "id"], name="keys_apikey_risk_expiry_order"),
            # The dashboard's live keys soonest due for review and soonest expiring, in its order (the id breaks
            # ties): its first ten read from the index, not every key of the earliest date sorted.
            models.Index(fields=["next_review_on", "id"], condition=models.Q(status__in=LIVE_STATUS_VALUES),
                         name="key_live_review_order"),
            models.Index(fields=["expires_on", "id"], condition=models.Q(status__in=LIVE_STATUS_VALUES),
                         name="key_live_expiry_order"),
        ]

    def __str__(self):
        return f"{self.label} ({self.prefix}…)"

    def get_absolute_url(self):
        return reverse("keys:detail", args=[self.pk])

    @property
    def customer(self):
        return self.workflow.customer

    @property
    def is_final(self):
        return self.status in {KeyStatus.REVOKED, KeyStatus.EXPIRED}


class ApiKeyUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(ApiKey, on_delete=models.CASCADE)


class ApiKeyGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(ApiKey, on_delete=models.CASCADE)


class LifecycleEvent(models.Model):
    """One step of a key's life, with who did it and why. Append-only."""

    key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="events")
    action = models.CharField(max_length=20, choices=LifecycleAction.choices)
    from_status = models.CharField(max_length=20, choices=KeyStatus.choices, blank=True)
    to_status = models.CharField(max_length=20, choices=KeyStatus.choices, blank=True)
    actor = models.ForeignKey(USER, on_delete=models.PROTECT, related_name="+")
    reason = models.TextField()
    details = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["at", "pk"]

    def __str__(self):
        return f"{self.get_action_display()} {self.key_id} by {self.actor_id}"


class RevocationRequest(models.Model):
    """One per revocation: carried to the issuing system until it is acknowledged or confirmed."""

    key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="revocation_requests")
    issuing_system = models.ForeignKey(IssuingSystem, on_delete=models.PROTECT, related_name="revocation_requests")
    reason_code = models.CharField(max_length=40, choices=RevocationReason.choices)
    reason = models.TextField()
    requested_by = models.ForeignKey(USER, on_delete=models.PROTECT, related_name="+")
    requested_at = models.DateTimeField(default=timezone.now)
    emergency = models.BooleanField(default=False)
    status = models.CharField(max_length=30, choices=RevocationRequestStatus.choices,
                              default=RevocationRequestStatus.PENDING, db_index=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    issuer_reference = models.CharField(max_length=200, blank=True)
    confirmed_by = models.ForeignKey(USER, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    confirmed_at = models.DateTimeField(null=True, blank=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["-requested_at"]
        # The revocation list's order (emergencies first, newest first), paged by keyset at any depth.
        indexes = [models.Index(fields=["emergency", "requested_at", "id"], name="keys_revocation_list_order")]
        constraints = [models.UniqueConstraint(fields=["key"], name="one_revocation_request_per_key")]

    def __str__(self):
        return f"Revocation of {self.key} ({self.get_status_display()})"

    @property
    def is_open(self):
        return self.status in OPEN_REVOCATION_STATUSES


class RevocationAttempt(models.Model):
    """Every call made to an issuer for a revocation, successful or not."""

    request = models.ForeignKey(RevocationRequest, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveSmallIntegerField()
    at = models.DateTimeField(default=timezone.now)
    url = models.URLField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    succeeded = models.BooleanField(default=False)
    history = HistoricalRecords()

    class Meta:
        ordering = ["request", "number"]


class KeyRelease(models.Model):
    """A release in its grace window (brownout): the key is suspended while usage reports are watched.

    Traffic during the window tells the owner and compliance (once) and holds the release for a person
    to roll back or revoke; a quiet window ends in the key's revocation, once.
    """

    key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="releases")
    reason_code = models.CharField(max_length=40, choices=RevocationReason.choices, default=RevocationReason.RELEASED)
    reason = models.TextField()
    context = models.CharField(max_length=200, blank=True, help_text="Where it was released (campaign, key page, API).")
    status_before = models.CharField(max_length=20, choices=KeyStatus.choices)
    requested_by = models.ForeignKey(USER, on_delete=models.PROTECT, related_name="+")
    started_at = models.DateTimeField(default=timezone.now)
    ends_at = models.DateTimeField(db_index=True)
    status = models.CharField(max_length=20, choices=ReleaseStatus.choices, default=ReleaseStatus.WATCHING,
                              db_index=True)
    traffic_calls = models.PositiveIntegerField(default=0, help_text="Calls reported inside the window.")
    first_traffic_at = models.DateTimeField(null=True, blank=True)
    last_traffic_at = models.DateTimeField(null=True, blank=True)
    traffic_sources = models.JSONField(default=list, blank=True)
    notified_at = models.DateTimeField(null=True, blank=True, help_text="When the owner and compliance were told.")
    decided_by = models.ForeignKey(USER, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_reason = models.TextField(blank=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["-started_at"]
        # The release list's order (newest first, id breaking ties): a page is read from here, at any depth.
        indexes = [models.Index(fields=["started_at", "id"], name="keys_release_list_order")]
        constraints = [
            models.UniqueConstraint(fields=["key"], condition=Q(status__in=sorted(OPEN_RELEASE_STATUSES)),
                                    name="one_open_release_per_key")
        ]

    def __str__(self):
        return f"Release of {self.key} ({self.get_status_display()})"

    @property
    def is_open(self):
        return self.status in OPEN_RELEASE_STATUSES


class UsageDaily(models.Model):
    """Calls made with a key, aggregated per day."""

    key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="usage")
    day = models.DateField()
    count = models.PositiveIntegerField(default=0)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    sources = models.JSONField(default=list, blank=True, help_text="Distinct calling sources (first 50).")

    class Meta:
        ordering = ["-day"]
        constraints = [models.UniqueConstraint(fields=["key", "day"], name="usage_one_row_per_key_per_day")]


class UsageEventReceipt(models.Model):
    """The ids of usage events already counted, so a re-sent batch counts nothing twice."""

    event_id = models.CharField(max_length=100, unique=True)
    key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="+")
    received_at = models.DateTimeField(default=timezone.now)


class Exposure(models.Model):
    """A reported leak of a secret, matched by fingerprint. The secret itself is never kept."""

    key = models.ForeignKey(ApiKey, on_delete=models.SET_NULL, null=True, blank=True, related_name="exposures")
    fingerprint = models.CharField(max_length=64, db_index=True)
    location = models.CharField(max_length=500, help_text="Where the secret was found.")
    notes = models.TextField(blank=True)
    source = models.CharField(max_length=20, choices=ExposureSource.choices)
    reported_by = models.ForeignKey(USER, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    reported_at = models.DateTimeField(default=timezone.now)
    history = HistoricalRecords()

    class Meta:
        ordering = ["-reported_at"]

    @property
    def matched(self):
        return self.key_id is not None


class ExposureTriage(models.Model):
    """A report that gave only the fingerprint of a key its reporter may not see. Fingerprints are not secret
    (key pages and evidence show them), so such a report does not revoke the key: compliance decides."""

    exposure = models.OneToOneField(Exposure, on_delete=models.CASCADE, related_name="triage")
    status = models.CharField(max_length=20, choices=TriageStatus.choices, default=TriageStatus.OPEN, db_index=True)
    opened_at = models.DateTimeField(default=timezone.now)
    decided_by = models.ForeignKey(USER, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_reason = models.TextField(blank=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["-opened_at"]
        verbose_name = "exposure triage"

    def __str__(self):
        return f"Triage of exposure #{self.exposure_id} ({self.get_status_display()})"

    @property
    def is_open(self):
        return self.status == TriageStatus.OPEN


class IntegrationToken(IssuedToken):
    """An API token for a machine integration, scoped to an issuing system or a customer."""

    name = models.CharField(max_length=200, validators=[refuse_hidden_characters])
    token_prefix = models.CharField(max_length=12)
    issuing_system = models.ForeignKey(IssuingSystem, on_delete=models.CASCADE, null=True, blank=True,
                                       related_name="tokens")
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, null=True, blank=True, related_name="tokens")
    acts_as = models.ForeignKey(USER, on_delete=models.PROTECT, related_name="integration_tokens",
                                help_text="The service account the integration's changes are recorded under.")
    history = HistoricalRecords(excluded_fields=["last_used_at", "last_used_from"])

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(issuing_system__isnull=False) | Q(customer__isnull=False), name="token_is_scoped"
            )
        ]


class KeyException(models.Model):
    """A key allowed to deviate from the rules: transitional (migrating away) or permanent (risk accepted).

    Approved by compliance only, never by the key's owner or the requester.
    """

    key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="exceptions")
    kind = models.CharField(max_length=20, choices=ExceptionKind.choices)
    status = models.CharField(max_length=20, choices=ExceptionStatus.choices, default=ExceptionStatus.REQUESTED,
                              db_index=True)
    business_justification = models.TextField()
    blast_radius = models.CharField(max_length=20, choices=BlastRadius.choices)
    replaceability = models.CharField(max_length=20, choices=Replaceability.choices)
    compensating_controls = models.JSONField(default=list, blank=True)
    other_controls = models.TextField(blank=True)
    migration_target = models.CharField(max_length=30, choices=MigrationTarget.choices, blank=True)
    migration_plan = models.TextField(blank=True)
    end_date = models.DateField(null=True, blank=True, help_text="Transitional: when the migration must be done.")
    risk_acceptance = models.TextField(blank=True, help_text="Permanent: the formal acceptance of the residual risk.")
    review_date = models.DateField(null=True, blank=True, help_text="Permanent: when the acceptance is reviewed.")
    requested_by = models.ForeignKey(USER, on_delete=models.PROTECT, related_name="+")
    requested_at = models.DateTimeField(default=timezone.now)
    decided_by = models.ForeignKey(USER, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_reason = models.TextField(blank=True)
    lapsed_on = models.DateField(null=True, blank=True, help_text="When the end or review date passed unresolved.")
    history = HistoricalRecords()

    class Meta:
        ordering = ["-requested_at"]
        verbose_name = "key exception"
        # The exception list's order (newest first, id breaking ties), so that a page joins its 50 keys only.
        indexes = [models.Index(fields=["requested_at", "id"], name="keys_exception_list_order")]

    def __str__(self):
        return f"{self.get_kind_display()} exception for {self.key}"

    @property
    def due_on(self):
        return self.end_date if self.kind == ExceptionKind.TRANSITIONAL else self.review_date


class SavedKeyFilter(models.Model):
    """A key-list filter someone saved under a name: to come back to the same list, or to start a campaign
    over the keys it matches. Each person sees only their own."""

    user = models.ForeignKey(USER, on_delete=models.CASCADE, related_name="saved_key_filters")
    name = models.CharField(max_length=100, validators=[refuse_hidden_characters])
    query = models.CharField(max_length=2000, help_text="The key list's query string, e.g. risk_tier=high&owner=owner1.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "pk"]
        constraints = [models.UniqueConstraint(fields=["user", "name"], name="saved_key_filter_name_per_user")]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return f"{reverse('keys:list')}?{self.query}"
