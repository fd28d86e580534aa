from django.conf import settings
from django.core.files.storage import storages
from django.db import models
from django.urls import reverse
from django.utils import timezone
from simple_history.models import HistoricalRecords

from attestations.choices import (
    CampaignStatus,
    DefaultAction,
    ItemStatus,
    MissingSignoff,
    ReasonCode,
    Recommendation,
    TransferKind,
    TransferStatus,
)
from attestations.stages import validate_stages
from core.models import NamedRecord
from core.validators import refuse_hidden_characters
from keys.choices import Environment, RiskTier
from keys.models import ApiKey, Customer, KeyException, Workflow

USER = settings.AUTH_USER_MODEL


class Scope(models.Model):
    """Which keys a campaign covers. Empty lists mean "all"."""

    customers = models.ManyToManyField(Customer, blank=True, related_name="+")
    workflows = models.ManyToManyField(Workflow, blank=True, related_name="+")
    environments = models.JSONField(default=list, blank=True, help_text=f"Any of: {', '.join(Environment.values)}")
    risk_tiers = models.JSONField(default=list, blank=True, help_text=f"Any of: {', '.join(RiskTier.values)}")
    due_for_review_only = models.BooleanField(
        default=False, help_text="Only keys whose next review date has come (or that were never reviewed)."
    )
    unused_days = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Only keys unused for at least this many days (never used: issued that long ago)."
    )
    stale_only = models.BooleanField(default=False, help_text="Only keys flagged stale.")
    rotation_due_only = models.BooleanField(
        default=False, help_text="Only keys due for rotation (their owner changed since they were last rotated)."
    )
    under_exception_only = models.BooleanField(default=False, help_text="Only keys under an approved exception.")
    key_filter = models.CharField(
        max_length=2000, blank=True,
        help_text="A key-list filter (its query string, e.g. owner=owner1&risk_tier=high) the keys must also match.",
    )

    class Meta:
        abstract = True


class Rules(models.Model):
    duration_days = models.PositiveSmallIntegerField(default=14, help_text="Days owners have to decide.")
    reminder_days = models.JSONField(
        default=list, blank=True, help_text="Days after launch on which owners with pending items are reminded, e.g. [3, 7, 12]."
    )
    reminder_every_days = models.PositiveSmallIntegerField(
        null=True, blank=True,
        help_text="Also remind reviewers with pending items every this many days after launch (empty: only the listed days).",
    )
    escalation_days = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Days after launch when pending items go to the owner's manager."
    )
    release_grace_days = models.PositiveSmallIntegerField(
        null=True, blank=True,
        help_text="A released key is suspended this many days while its usage is watched before it is revoked "
                  "(0: revoke at once; empty: the RELEASE_GRACE_DAYS setting).",
    )
    default_action = models.CharField(max_length=20, choices=DefaultAction.choices, default=DefaultAction.SUSPEND)
    require_justification = models.BooleanField(default=True)
    review_cadence_days = models.PositiveSmallIntegerField(
        default=90, help_text="A confirmed key is next reviewed this many days later."
    )
    exception_review_cadence_days = models.PositiveSmallIntegerField(
        default=30, help_text="A confirmed key under an approved exception is next reviewed this many days later."
    )
    stages = models.JSONField(
        default=list, blank=True, validators=[validate_stages],
        help_text='One to three review stages, e.g. [{"reviewer": "owner", "duration_days": 14}, {"reviewer": '
                  '"compliance", "duration_days": 7, "risk_tiers": ["high", "critical"], "moves_on": ["confirm"]}]. '
                  "Empty: one stage of the campaign's duration, reviewed by the key's owner.",
    )
    missing_signoff = models.CharField(
        max_length=20, choices=MissingSignoff.choices, default=MissingSignoff.KEEP,
        help_text="An item waiting for a later stage's sign-off when that stage ends: keep the earlier decision, "
                  "or apply the default action.",
    )
    separation_of_duties = models.BooleanField(
        default=True,
        help_text="From stage 2 on, a reviewer may not decide an item they decided at an earlier stage, nor a key "
                  "they own, steward, registered or approved.",
    )

    class Meta:
        abstract = True

    def clean(self):
        from attestations.stages import clean_stages, total_days

        super().clean()
        self.stages = clean_stages(self.stages)
        self.duration_days = total_days(self.stages) or self.duration_days


class CampaignSchedule(NamedRecord, Scope, Rules):
    name = models.CharField(max_length=200, unique=True, validators=[refuse_hidden_characters])
    cadence_days = models.PositiveSmallIntegerField(default=90, help_text="Days between launches.")
    is_active = models.BooleanField(default=True)
    next_launch_on = models.DateField(default=timezone.localdate)
    history = HistoricalRecords()


class Campaign(Scope, Rules):
    name = models.CharField(max_length=200, validators=[refuse_hidden_characters])
    schedule = models.ForeignKey(CampaignSchedule, on_delete=models.SET_NULL, null=True, blank=True, related_name="campaigns")
    status = models.CharField(max_length=20, choices=CampaignStatus.choices, default=CampaignStatus.DRAFT, db_index=True)
    created_by = models.ForeignKey(USER, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    launched_at = models.DateTimeField(null=True, blank=True)
    launched_by = models.ForeignKey(USER, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    due_on = models.DateField(null=True, blank=True)
    stages_ended = models.PositiveSmallIntegerField(
        default=0, help_text="How many of the stages have ended (their undecided items settled)."
    )
    closed_at = models.DateTimeField(null=True, blank=True)
    closed_by = models.ForeignKey(USER, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    history = HistoricalRecords()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("attestations:campaign", args=[self.pk])


class AttestationItemQuerySet(models.QuerySet):
    def visible_to(self, user):
        """Compliance and admins (and an auditor while their grant lasts) see every item; anyone else sees the
        items they may decide."""
        from core import roles

        if not user.is_authenticated:
            return self.none()
        if roles.reads_everything(user):
            return self
        # Not a compliance officer (they read everything): the role need not be asked again.
        return self.decidable_by(user, officer=False)

    def decidable_by(self, user, *, officer: bool | None = None):
        """The items ``user`` may decide (``may_decide``): the inbox, the API, the contact pages, the
        item's visibility and the decision itself all read this one rule. ``officer``: whether the user is a
        compliance officer, when the caller has just read it (see ``may_decide``)."""
        if not user.is_authenticated:
            return self.none()
        return self.filter(may_decide(user, officer=officer))


def may_decide(user, *, officer: bool | None = None) -> models.Q:
    """Who may decide an item at its current stage: its reviewer, the delegate the reviewer named (a delegation
    replaces the one before) and the person it was escalated to; for a stage reviewed by compliance (or an item
    escalated to compliance), any compliance officer. ``user``: a user or a user's pk. One condition the
    database answers in the same query (the role too), unless ``officer`` says whether the user is a compliance
    officer: lists pass it, so that each branch of the condition is an index look-up (a branch joined with the
    role check is not, and costs a scan of every item)."""
    from django.contrib.auth import get_user_model

    from core import roles

    people = models.Q(reviewer=user) | models.Q(delegate=user) | models.Q(escalated_to=user)
    compliance_items = models.Q(reviewer_role=roles.COMPLIANCE) | models.Q(escalated_to_role=roles.COMPLIANCE)
    if officer is not None:
        return people | compliance_items if officer else people
    is_officer = models.Exists(get_user_model().groups.through.objects.filter(
        user_id=getattr(user, "pk", user), group__name=roles.COMPLIANCE))
    return people | (compliance_items & models.Q(is_officer))


class AttestationItem(models.Model):
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="items")
    key = models.ForeignKey(ApiKey, on_delete=models.PROTECT, related_name="attestation_items")
    reviewer = models.ForeignKey(USER, on_delete=models.PROTECT, related_name="review_items")
    delegate = models.ForeignKey(USER, on_delete=models.PROTECT, null=True, blank=True, related_name="delegated_items")
    status = models.CharField(max_length=20, choices=ItemStatus.choices, default=ItemStatus.PENDING)
    recommendation = models.CharField(max_length=40, choices=Recommendation.choices, blank=True)
    reviewer_role = models.CharField(
        max_length=20, blank=True, db_default="", default="",
        help_text="compliance: any compliance officer may decide the item at its current stage.",
    )
    stage = models.PositiveSmallIntegerField(default=1, db_default=1, help_text="The stage the item is at (1-based).")
    decisions = models.JSONField(
        default=list, db_default=[], blank=True,
        help_text="Every stage's decision: stage, decision, by, at, reason code, justification and the evidence "
                  "frozen with it.",
    )
    reason = models.CharField(
        max_length=20, choices=ReasonCode.choices, blank=True, db_default="", default="",
        help_text="Why the key was released (the release's reason code).",
    )
    decided_by = models.ForeignKey(USER, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)
    affirmed = models.BooleanField(default=False)
    justification = models.TextField(blank=True)
    reassigned_to = models.ForeignKey(USER, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    escalated_at = models.DateTimeField(null=True, blank=True)
    escalated_to = models.ForeignKey(USER, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    escalated_to_role = models.CharField(
        max_length=20, blank=True, db_default="", default="",
        help_text="compliance: escalated to compliance (the owner has no active manager); any officer may decide.",
    )
    default_action_applied = models.CharField(max_length=20, choices=DefaultAction.choices, blank=True)
    kept_without_signoff = models.BooleanField(
        default=False, db_default=False,
        help_text="A later stage's sign-off never came, and the earlier stage's decision was kept.",
    )
    exception = models.ForeignKey(
        KeyException, on_delete=models.SET_NULL, null=True, blank=True, related_name="attestation_items",
        help_text="The exception the key was under at launch; the reviewer re-affirms its justification.",
    )
    exception_lapsed = models.BooleanField(default=False, help_text="The exception's end or review date has passed.")
    exception_reaffirmed = models.BooleanField(default=False)
    shown_at = models.DateTimeField(null=True, blank=True, help_text="When the reviewer first opened the item.")
    # Database defaults: a launch inserts items with raw SQL that names only the launch's columns.
    evidence = models.JSONField(
        default=dict, db_default={}, blank=True, help_text="What the reviewer saw, frozen when the decision was recorded."
    )
    batch_size = models.PositiveIntegerField(
        default=0, db_default=0, help_text="Items decided in the same submission (1: alone)."
    )
    self_review = models.JSONField(
        default=list, db_default=[], blank=True, help_text="Why the decider was not independent of the key, if they were not."
    )
    history = HistoricalRecords(excluded_fields=["shown_at"])

    objects = AttestationItemQuerySet.as_manager()

    class Meta:
        ordering = ["campaign", "pk"]
        constraints = [models.UniqueConstraint(fields=["campaign", "key"], name="one_item_per_key_per_campaign")]
        indexes = [
            models.Index(fields=["reviewer", "status"]),
            models.Index(fields=["delegate", "status"]),
            # A campaign's counts by status, stage and reviewer are read from these indexes alone.
            models.Index(fields=["campaign", "status", "stage"], name="item_campaign_status_stage"),
            models.Index(fields=["campaign", "reviewer", "status"], name="item_campaign_reviewer"),
            models.Index(fields=["campaign"], condition=models.Q(escalated_at__isnull=False),
                         name="item_campaign_escalated"),
            models.Index(fields=["reviewer_role", "status"]),
            models.Index(fields=["escalated_to", "status"]),
            # The few items escalated to compliance, for the officers' inbox.
            models.Index(fields=["status"], condition=models.Q(escalated_to_role="compliance"),
                         name="item_escalated_to_compliance"),
            # A campaign's items in their own order (its page, the API's list by campaign).
            models.Index(fields=["campaign", "id"], name="item_campaign_order"),
        ]

    def __str__(self):
        return f"{self.campaign} / {self.key.label}"

    def get_absolute_url(self):
        return reverse("attestations:item", args=[self.pk])

    def attach_shown_rows(self, viewer) -> "AttestationItem":
        """Load what the item's row and its API representation show of its relations, keeping those already
        in memory (a decision leaves the item's campaign and key there): the key's workflow and customer in
        one query, the exception if any, and ``viewer`` for whichever of the item's people (or the key's
        owner) the viewer is. Anyone else is read when shown."""
        people = [(self, name) for name in ("reviewer", "delegate", "decided_by", "reassigned_to", "escalated_to")]
        for target, name in [*people, (self.key, "owner")]:
            field = type(target)._meta.get_field(name)
            if not field.is_cached(target) and getattr(target, field.attname) == viewer.pk:
                field.set_cached_value(target, viewer)
        if not type(self.key)._meta.get_field("workflow").is_cached(self.key):
            self.key.workflow = Workflow.objects.select_related("customer").get(pk=self.key.workflow_id)
        return self


class CampaignFigures(models.Model):
    """A large campaign's progress, which per view would count every item (and join each with its key, or read
    every decision): its totals, by status, per stage, per reviewer, per customer and the reviewers' decision
    figures. Counted by the worker every few minutes while the campaign runs, and once more after it ends
    (``services.progress.refresh_campaign_figures``)."""

    campaign = models.OneToOneField(Campaign, on_delete=models.CASCADE, primary_key=True, related_name="figures")
    counted_at = models.DateTimeField()
    item_total = models.PositiveIntegerField(default=0, help_text="Items in the campaign.")
    item_pending = models.PositiveIntegerField(default=0, help_text="Items still undecided.")
    escalated = models.PositiveIntegerField(default=0, help_text="Items escalated.")
    by_status = models.JSONField(default=dict, help_text="Item status -> items.")
    pending_per_stage = models.JSONField(default=dict, help_text="Stage number -> pending items.")
    per_reviewer = models.JSONField(default=list, help_text="Per reviewer: username, items, pending items.")
    per_customer = models.JSONField(default=list, help_text="Per customer: id, name, items, pending items.")
    reviewer_quality = models.JSONField(default=list, help_text="review_quality.reviewer_quality's rows.")

    class Meta:
        verbose_name_plural = "campaign figures"

    def __str__(self):
        return f"{self.campaign} as of {self.counted_at:%Y-%m-%d %H:%M}"


class OwnershipTransfer(models.Model):
    """A reassignment waiting for the named new owner to accept it."""

    key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="transfers")
    kind = models.CharField(max_length=20, choices=TransferKind.choices, default=TransferKind.REASSIGNMENT)
    item = models.ForeignKey(AttestationItem, on_delete=models.SET_NULL, null=True, blank=True, related_name="transfers")
    from_user = models.ForeignKey(USER, on_delete=models.PROTECT, related_name="+")
    to_user = models.ForeignKey(USER, on_delete=models.PROTECT, related_name="incoming_transfers")
    requested_by = models.ForeignKey(USER, on_delete=models.PROTECT, related_name="+")
    reason = models.TextField()
    status = models.CharField(max_length=20, choices=TransferStatus.choices, default=TransferStatus.PENDING)
    requested_at = models.DateTimeField(default=timezone.now)
    answered_at = models.DateTimeField(null=True, blank=True)
    deadline = models.DateTimeField(null=True, blank=True, help_text="Successions: accepted by then, or the default action.")
    default_action = models.CharField(max_length=20, choices=DefaultAction.choices, blank=True,
                                      help_text="Successions: what happens to the key if nobody accepts in time.")
    default_action_applied = models.CharField(max_length=20, choices=DefaultAction.choices, blank=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["-requested_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["key"], condition=models.Q(status="pending"), name="one_pending_transfer_per_key"
            )
        ]


class Notification(models.Model):
    """Every reminder and escalation sent, so a retried task never sends the same one twice."""

    class Kind(models.TextChoices):
        LAUNCHED = "launched", "Campaign launched"
        REMINDER = "reminder", "Reminder"
        ESCALATION = "escalation", "Escalation"
        TRANSFER = "transfer", "Ownership transfer requested"

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    recipient = models.ForeignKey(USER, on_delete=models.PROTECT, related_name="+")
    sequence = models.PositiveSmallIntegerField(default=0, help_text="Which reminder (by day) this is.")
    item_count = models.PositiveIntegerField(default=0)
    sent_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-sent_at"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "kind", "recipient", "sequence"], name="notification_sent_once")
        ]


def export_storage():
    """The "exports" storage of ``STORAGES``: files under MEDIA_ROOT, or S3-compatible object storage
    (``EXPORT_STORAGE=s3``) shared by every web process and worker."""
    return storages["exports"]


class EvidenceExport(models.Model):
    """A rendered PDF of audit evidence, stored with its digest and who asked for it."""

    class Kind(models.TextChoices):
        CAMPAIGN = "campaign", "Campaign report"
        KEY = "key", "Key dossier"
        CUSTOMER = "customer", "Customer report"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RENDERING = "rendering", "Rendering"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    kind = models.CharField(max_length=20, choices=Kind.choices)
    campaign = models.ForeignKey(Campaign, on_delete=models.PROTECT, null=True, blank=True, related_name="exports")
    key = models.ForeignKey(ApiKey, on_delete=models.PROTECT, null=True, blank=True, related_name="exports")
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, null=True, blank=True, related_name="exports")
    period_start = models.DateField(null=True, blank=True)
    period_end = models.DateField(null=True, blank=True)
    parameters = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED, db_index=True)
    progress = models.PositiveSmallIntegerField(default=0, help_text="Percent done.")
    progress_note = models.CharField(max_length=200, blank=True)
    chunks_total = models.PositiveIntegerField(default=0)
    chunks_done = models.PositiveIntegerField(default=0)
    requested_by = models.ForeignKey(USER, on_delete=models.PROTECT, related_name="+")
    requested_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    file = models.FileField(upload_to="exports/%Y/%m/", storage=export_storage, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    size = models.PositiveBigIntegerField(default=0)
    page_count = models.PositiveIntegerField(default=0)
    signed = models.BooleanField(default=False)
    chain_ok = models.BooleanField(null=True)
    file_purged_at = models.DateTimeField(null=True, blank=True,
                                          help_text="When the file was deleted at the end of its retention period.")
    chain_seq = models.PositiveBigIntegerField(null=True, blank=True,
                                               help_text="The evidence chain's head the report was made at.")
    chain_head = models.CharField(max_length=64, blank=True)
    error = models.TextField(blank=True)
    # Progress is written many times a second while a report renders; the states and the file are recorded.
    history = HistoricalRecords(excluded_fields=["progress", "progress_note", "chunks_done"])

    class Meta:
        ordering = ["-requested_at"]

    def __str__(self):
        return f"{self.get_kind_display()} #{self.pk}"
