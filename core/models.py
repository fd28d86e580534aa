"""The tamper-evident chain over the evidence (history records and append-only rows), and the access audit."""

import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone
from simple_history.models import HistoricalRecords

from core.validators import refuse_hidden_characters


class NamedRecord(models.Model):
    """A record people know by its name: listed by name and shown as its name, with its creation time."""

    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        abstract = True
        ordering = ["name"]

    def __str__(self):
        return self.name


class IssuedToken(models.Model):
    """A bearer token an admin issues to a machine client (an integration, a SCIM client).

    Only a SHA-256 of the token is stored; the token is shown once, when it is created. When and from where it was
    last used is telemetry, kept out of the token's history. A concrete token adds its ``name``, its shown
    ``token_prefix``, the service account it ``acts_as`` and its ``history``.
    """

    token_hash = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    last_used_from = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        abstract = True

    def __str__(self):
        return f"{self.name} ({self.token_prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class ChainHead(models.Model):
    """The head of one chain (its primary key names it: 1 evidence, 2 access); its row lock serialises sealing."""

    seq = models.PositiveBigIntegerField(default=0)
    digest = models.CharField(max_length=64, default="0" * 64)
    updated_at = models.DateTimeField(auto_now=True)


class ChainLayout(models.Model):
    """The canonical form a link's record was hashed in: which columns, in which form, which are personal.

    Recorded once per (model, form, columns) so a column added to a table later does not change what
    earlier links cover. Editing a layout does not hide tampering: the digests no longer match.
    """

    model_label = models.CharField(max_length=100)
    form = models.PositiveSmallIntegerField()
    columns = models.JSONField()
    personal = models.JSONField(default=list, blank=True)
    salt_column = models.CharField(max_length=64, blank=True)
    signature = models.CharField(max_length=64, unique=True)

    def __str__(self):
        return f"{self.model_label} form {self.form} ({len(self.columns)} columns)"


class ChainLink(models.Model):
    """One sealed record: its digest covers the record's canonical form and the previous digest."""

    chain = models.PositiveSmallIntegerField(default=1)
    seq = models.PositiveBigIntegerField()
    model_label = models.CharField(max_length=100)
    record_id = models.BigIntegerField()
    layout = models.ForeignKey(ChainLayout, on_delete=models.PROTECT, related_name="+")
    digest = models.CharField(max_length=64)
    prev_digest = models.CharField(max_length=64)
    sealed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["chain", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["chain", "seq"], name="one_link_per_chain_position"),
            models.UniqueConstraint(fields=["model_label", "record_id"], name="one_link_per_record"),
        ]


class ChainCheckpoint(models.Model):
    """A verification that found the chains intact: where each head stood, and how far each table reached.

    The next export verifies only what was sealed, inserted or touched after the last intact checkpoint.
    """

    class Scope(models.TextChoices):
        FULL = "full", "Every link from the start"
        SINCE = "since", "Since the previous checkpoint"

    made_at = models.DateTimeField(auto_now_add=True)
    scope = models.CharField(max_length=10, choices=Scope.choices)
    heads = models.JSONField(help_text="{chain: [seq, digest]}")
    high_water = models.JSONField(help_text="{model label: highest primary key}")
    touch_id = models.BigIntegerField(default=0, help_text="The last change log entry already accounted for.")
    checked = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["-pk"]
        get_latest_by = "pk"

    def __str__(self):
        return f"Checkpoint {self.pk} ({self.get_scope_display()}) at {self.made_at:%Y-%m-%d %H:%M:%S}"


class ChainTouch(models.Model):
    """A row of a chained table updated, deleted or truncated: written by database triggers, never by the
    application, so incremental verification re-checks rows changed in SQL however old they are."""

    table_name = models.CharField(max_length=100)
    row_id = models.BigIntegerField(null=True, blank=True)
    operation = models.CharField(max_length=10)
    at = models.DateTimeField(null=True, blank=True)


class ChainErasure(models.Model):
    """Personal data erased from chained records, on request: which records, which fields, and the salted
    digests the chain covers, so the records stay verifiable without the erased values."""

    at = models.DateTimeField(auto_now_add=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                              related_name="+")
    reason = models.TextField()
    subject = models.CharField(max_length=200, help_text="Whose data, as a reference that is not itself personal.")
    digests = models.JSONField(help_text="{model label: {record id: {field: salted digest}}}")

    class Meta:
        ordering = ["at", "pk"]


class ChainPurge(models.Model):
    """Chained records deleted on purpose: at the end of their retention period (every record of the table up
    to ``up_to_id``) or named one by one (``record_ids``); how many, and why."""

    at = models.DateTimeField(auto_now_add=True)
    model_label = models.CharField(max_length=100)
    up_to_id = models.BigIntegerField(null=True, blank=True)
    record_ids = models.JSONField(default=list, blank=True)
    count = models.PositiveBigIntegerField()
    older_than = models.DateTimeField(null=True, blank=True)
    reason = models.TextField()

    class Meta:
        ordering = ["at", "pk"]


def new_salt() -> str:
    """A random salt for the digests of a record's personal fields."""
    return secrets.token_hex(16)


class AccessAction(models.TextChoices):
    LOGIN = "login", "Signed in"
    LOGIN_FAILED = "login_failed", "Failed sign-in"
    LOCKED_OUT = "locked_out", "Locked out"
    LOGOUT = "logout", "Signed out"
    OTP_VERIFIED = "otp_verified", "Second factor verified"
    OTP_FAILED = "otp_failed", "Second factor refused"
    OTP_ENROLLED = "otp_enrolled", "Second factor enrolled"
    EXPORT_DOWNLOADED = "export_downloaded", "Export downloaded"
    API_TOKEN_USED = "api_token_used", "API token used"
    CONTACT_INVITED = "contact_invited", "Customer contact invited"
    CONTACT_LINK_SENT = "contact_link_sent", "Contact link sent"
    CONTACT_LINK_OPENED = "contact_link_opened", "Contact link opened"
    CONTACT_LINK_REFUSED = "contact_link_refused", "Contact link refused"
    CONTACT_CODE_SENT = "contact_code_sent", "Contact code sent"
    CONTACT_CODE_FAILED = "contact_code_failed", "Contact code refused"
    CONTACT_SIGNED_IN = "contact_signed_in", "Contact signed in with link and code"
    CONTACT_VISIT = "contact_visit", "Contact page visited"
    CONTACT_DECISION = "contact_decision", "Contact decided an item"
    CONTACT_REFUSED = "contact_refused", "Contact refused outside their pages"
    AUDITOR_VIEW = "auditor_view", "Auditor opened a page"
    AUDITOR_REFUSED = "auditor_refused", "Auditor refused an action"
    AUDITOR_SIGNED_OUT = "auditor_signed_out", "Auditor signed out: no current access"


class AccessRecord(models.Model):
    """Who reached the portal, when, from where, and what they did: sign-ins (failed ones too), exports
    downloaded and API token use. Written by ``core.audit.record_access``; never edited."""

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    # PROTECT: the record is chained, so deleting the account must not rewrite it (deactivate instead).
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="access_records"
    )
    # The name as typed or as it was, so the record outlives the account and names unknown users.
    username = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=32, choices=AccessAction.choices, db_index=True)
    target = models.CharField(max_length=255, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=255, blank=True)
    # The chain covers a digest of ``username`` salted with this, so the name can be erased on request.
    personal_salt = models.CharField(max_length=32, default=new_salt, editable=False)

    class Meta:
        ordering = ["-at", "-pk"]
        indexes = [models.Index(fields=["user", "-at"], name="access_by_user_recent")]

    def __str__(self):
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.username or '-'} {self.get_action_display()} {self.target}".strip()


class SignedInSession(models.Model):
    """A session someone signed in with, so that all of a person's sessions can be ended at once
    (deactivation, deprovisioning, an auditor's access ending). Written at sign-in, removed at sign-out."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="signed_in_sessions")
    session_key = models.CharField(max_length=40, unique=True)
    started_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self):
        return f"{self.user_id} since {self.started_at:%Y-%m-%d %H:%M}"


class AuditorGrantQuerySet(models.QuerySet):
    def current(self, now=None):
        """Grants in force at ``now``: started, not yet at their end, not ended early."""
        now = now or timezone.now()
        return self.filter(starts_at__lte=now, ends_at__gt=now, ended_at__isnull=True)

    def lapsed(self, now=None):
        """Grants past their end that nothing has closed yet (``core.auditors.services.expire_auditor_grants``)."""
        return self.filter(ends_at__lte=now or timezone.now(), ended_at__isnull=True)


class AuditorGrantState(models.TextChoices):
    SCHEDULED = "scheduled", "Scheduled"
    CURRENT = "current", "Current"
    ENDED = "ended", "Ended early"
    EXPIRED = "expired", "Expired"


class AuditorGrant(models.Model):
    """Read access compliance gives an external auditor for one engagement, from ``starts_at`` until ``ends_at``.

    While it is current the auditor reads evidence, history and exports and changes nothing; every page they open
    is in the access log. Ended early (``ended_by``) or at its end (a periodic job), their sessions end with it.
    Written only by ``core.auditors.services``.
    """

    auditor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="auditor_grants")
    engagement = models.CharField(max_length=200, validators=[refuse_hidden_characters],
                                  help_text="The audit this access is for, e.g. \"ISO 27001 surveillance audit 2027\".")
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    granted_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    granted_at = models.DateTimeField(auto_now_add=True)
    # Set when compliance ends the access early, or when the periodic job closes it at its end (``ends_at``).
    ended_at = models.DateTimeField(null=True, blank=True)
    ended_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                 related_name="+")
    end_reason = models.CharField(max_length=200, blank=True)
    history = HistoricalRecords()

    objects = AuditorGrantQuerySet.as_manager()

    class Meta:
        ordering = ["-starts_at", "-pk"]
        indexes = [models.Index(fields=["auditor", "ends_at"], name="auditor_grant_by_end")]
        constraints = [models.CheckConstraint(condition=models.Q(ends_at__gt=models.F("starts_at")),
                                              name="auditor_grant_ends_after_it_starts")]

    def __str__(self):
        return f"{self.auditor.get_username()}: {self.engagement}"

    def state_at(self, now=None) -> str:
        now = now or timezone.now()
        if self.ended_at is not None and self.ended_at < self.ends_at:
            return AuditorGrantState.ENDED
        if self.ended_at is not None or self.ends_at <= now:
            return AuditorGrantState.EXPIRED
        return AuditorGrantState.SCHEDULED if self.starts_at > now else AuditorGrantState.CURRENT

    @property
    def state(self) -> str:
        return self.state_at()

    def get_state_display(self) -> str:
        return AuditorGrantState(self.state).label

    @property
    def is_open(self) -> bool:
        """Scheduled or current: compliance may still end it."""
        return self.state in (AuditorGrantState.SCHEDULED, AuditorGrantState.CURRENT)
