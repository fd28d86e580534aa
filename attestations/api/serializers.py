"""Campaigns and attestation items over REST. Users appear by username."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from attestations.choices import (
    MOVABLE_DECISIONS,
    CampaignStatus,
    Decision,
    DefaultAction,
    ItemStatus,
    MissingSignoff,
    ReasonCode,
    Recommendation,
)
from attestations.models import AttestationItem, Campaign
from attestations.services.progress import page_progress
from attestations.stages import MAX_STAGE_DAYS
from keys.choices import Environment, KeyStatus, RiskTier
from keys.models import ApiKey, Customer, Workflow

MAX_CAMPAIGN_DAYS = 365


class CampaignSerializer(serializers.ModelSerializer):
    status = serializers.ChoiceField(choices=CampaignStatus.choices, read_only=True)
    created_by = serializers.CharField(source="created_by.username", read_only=True)
    launched_by = serializers.CharField(source="launched_by.username", read_only=True, allow_null=True)
    closed_by = serializers.CharField(source="closed_by.username", read_only=True, allow_null=True)
    item_count = serializers.IntegerField(
        read_only=True, help_text="Items in the campaign (on a large campaign, as of `progress.counted_at`).")
    pending_count = serializers.IntegerField(
        read_only=True, help_text="Items still undecided. On a campaign of at least CAMPAIGN_FIGURES_MIN_ITEMS "
                                  "items, as of its last count by a worker job every few minutes (the campaign's "
                                  "`progress.counted_at`); otherwise counted for this answer.")

    class Meta:
        model = Campaign
        fields = [
            "id", "name", "status", "schedule", "customers", "workflows", "environments", "risk_tiers",
            "due_for_review_only", "unused_days", "stale_only", "rotation_due_only", "under_exception_only",
            "key_filter", "duration_days", "stages", "missing_signoff", "separation_of_duties", "reminder_days",
            "reminder_every_days", "escalation_days", "default_action", "require_justification", "review_cadence_days",
            "exception_review_cadence_days", "release_grace_days", "stages_ended", "created_by", "created_at",
            "launched_at", "launched_by", "due_on", "closed_at", "closed_by", "item_count", "pending_count",
        ]
        read_only_fields = fields


class CountsSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    pending = serializers.IntegerField()


class CustomerProgressSerializer(CountsSerializer):
    customer = serializers.CharField(source="key__workflow__customer__name")


class ReviewerProgressSerializer(CountsSerializer):
    reviewer = serializers.CharField(source="reviewer__username")


class ProgressTotalsSerializer(CountsSerializer):
    decided = serializers.IntegerField()
    escalated = serializers.IntegerField()
    overdue = serializers.IntegerField()
    percent = serializers.IntegerField(help_text="Share of items decided, 0-100.")


class ProgressSerializer(serializers.Serializer):
    """A campaign's progress: decided / pending / overdue totals, by item status, per customer and per reviewer.
    On a campaign of at least CAMPAIGN_FIGURES_MIN_ITEMS items every figure is as of `counted_at`."""

    totals = ProgressTotalsSerializer()
    by_status = serializers.DictField(child=serializers.IntegerField(), help_text="Item status -> count.")
    per_customer = CustomerProgressSerializer(many=True)
    per_reviewer = ReviewerProgressSerializer(many=True)
    counted_at = serializers.DateTimeField(
        allow_null=True,
        help_text="When this progress was counted: null when counted for this answer. On a large campaign "
                  "(at least CAMPAIGN_FIGURES_MIN_ITEMS items, 20,000 by default) every figure here (totals, "
                  "by_status, per_customer, per_reviewer), and the campaign's item_count and pending_count, are "
                  "as of this time, counted by a worker job every few minutes and once more after it ends.")


class CampaignDetailSerializer(CampaignSerializer):
    progress = serializers.SerializerMethodField()

    class Meta(CampaignSerializer.Meta):
        fields = [*CampaignSerializer.Meta.fields, "progress"]
        read_only_fields = fields

    @extend_schema_field(ProgressSerializer)
    def get_progress(self, campaign):
        return ProgressSerializer(page_progress(campaign, quality=False)).data


class CampaignLaunchSerializer(CampaignDetailSerializer):
    items_created = serializers.IntegerField(read_only=True, help_text="Items this launch created (0 if already launched).")

    class Meta(CampaignDetailSerializer.Meta):
        fields = [*CampaignDetailSerializer.Meta.fields, "items_created"]
        read_only_fields = fields


class DefaultActionCountsSerializer(serializers.Serializer):
    suspend = serializers.IntegerField(default=0)
    revoke = serializers.IntegerField(default=0)
    keep_and_flag = serializers.IntegerField(default=0)


class CampaignCloseSerializer(CampaignDetailSerializer):
    default_action_applied = DefaultActionCountsSerializer(
        read_only=True, help_text="Undecided items per default action applied by this close (all 0 if already closed)."
    )
    kept_without_signoff = serializers.IntegerField(
        read_only=True, default=0,
        help_text="Items waiting for a later stage's sign-off that kept the earlier decision at this close.")

    class Meta(CampaignDetailSerializer.Meta):
        fields = [*CampaignDetailSerializer.Meta.fields, "default_action_applied", "kept_without_signoff"]
        read_only_fields = fields


class StageSerializer(serializers.Serializer):
    """One review stage; ``attestations.stages.clean_stages`` checks the stages together."""

    reviewer = serializers.CharField(max_length=150, help_text="owner, manager, compliance or a username.")
    fallback = serializers.CharField(max_length=150, required=False, default="compliance",
                                     help_text="compliance or a username: reviews when the reviewer has departed "
                                               "or the owner has no active manager.")
    duration_days = serializers.IntegerField(min_value=1, max_value=MAX_STAGE_DAYS, required=False, default=14)
    risk_tiers = serializers.ListField(child=serializers.ChoiceField(choices=RiskTier.choices), required=False,
                                       default=list, help_text="The items that enter the stage (empty: every item).")
    moves_on = serializers.ListField(
        child=serializers.ChoiceField(choices=[(d.value, d.label) for d in MOVABLE_DECISIONS]), required=False,
        default=list, help_text="The decisions of the stage before that move on to this one (empty: every one).")


class CampaignCreateSerializer(serializers.Serializer):
    """A draft campaign's name, scope (empty lists mean "all"), stages and rules, for create_campaign."""

    name = serializers.CharField(max_length=200)
    customers = serializers.PrimaryKeyRelatedField(queryset=Customer.objects.all(), many=True, required=False)
    workflows = serializers.PrimaryKeyRelatedField(queryset=Workflow.objects.all(), many=True, required=False)
    environments = serializers.ListField(child=serializers.ChoiceField(choices=Environment.choices), required=False)
    risk_tiers = serializers.ListField(child=serializers.ChoiceField(choices=RiskTier.choices), required=False)
    due_for_review_only = serializers.BooleanField(required=False)
    unused_days = serializers.IntegerField(min_value=1, max_value=3650, required=False, allow_null=True,
                                           help_text="Only keys unused for at least this many days.")
    stale_only = serializers.BooleanField(required=False, help_text="Only keys flagged stale.")
    rotation_due_only = serializers.BooleanField(required=False, help_text="Only keys due for rotation.")
    under_exception_only = serializers.BooleanField(required=False, help_text="Only keys under an approved exception.")
    key_filter = serializers.CharField(required=False, allow_blank=True, max_length=2000,
                                       help_text="A key-list filter as its query string, e.g. risk_tier=high&owner=owner1.")
    duration_days = serializers.IntegerField(min_value=1, max_value=MAX_CAMPAIGN_DAYS, required=False,
                                             help_text="Without stages; with stages, their durations add up.")
    stages = StageSerializer(many=True, required=False, help_text="One to three sequential review stages "
                                                                 "(omitted: one stage, the key's owner).")
    missing_signoff = serializers.ChoiceField(choices=MissingSignoff.choices, required=False)
    separation_of_duties = serializers.BooleanField(required=False)
    reminder_every_days = serializers.IntegerField(min_value=1, max_value=MAX_CAMPAIGN_DAYS, required=False,
                                                   allow_null=True)
    release_grace_days = serializers.IntegerField(min_value=0, max_value=365, required=False, allow_null=True)
    exception_review_cadence_days = serializers.IntegerField(min_value=1, max_value=3650, required=False)
    reminder_days = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_CAMPAIGN_DAYS), required=False, max_length=20,
        help_text="Days after launch on which owners with pending items are reminded.",
    )
    escalation_days = serializers.IntegerField(min_value=1, max_value=MAX_CAMPAIGN_DAYS, required=False, allow_null=True)
    default_action = serializers.ChoiceField(choices=DefaultAction.choices, required=False)
    require_justification = serializers.BooleanField(required=False)
    review_cadence_days = serializers.IntegerField(min_value=1, max_value=3650, required=False)

    def validate(self, attrs):
        if attrs.get("stages"):
            attrs["stages"] = [dict(stage) for stage in attrs["stages"]]
            attrs["duration_days"] = sum(stage["duration_days"] for stage in attrs["stages"])
        duration = attrs.get("duration_days", Campaign._meta.get_field("duration_days").default)
        errors = {}
        late = [day for day in attrs.get("reminder_days", []) if day > duration]
        if late:
            errors["reminder_days"] = [f"Reminders must fall within the campaign's {duration} days."]
        if (attrs.get("escalation_days") or 0) > duration:
            errors["escalation_days"] = [f"Escalation must fall within the campaign's {duration} days."]
        if errors:
            raise serializers.ValidationError(errors)
        if "reminder_days" in attrs:
            attrs["reminder_days"] = sorted(set(attrs["reminder_days"]))
        return attrs


class ItemKeySerializer(serializers.ModelSerializer):
    """What a reviewer needs to know about the key to decide."""

    status = serializers.ChoiceField(choices=KeyStatus.choices, read_only=True)
    customer = serializers.CharField(source="workflow.customer.name", read_only=True)
    workflow = serializers.CharField(source="workflow.name", read_only=True)
    purpose = serializers.CharField(source="workflow.purpose", read_only=True)
    data_scope = serializers.CharField(source="workflow.data_scope", read_only=True)
    environment = serializers.CharField(source="workflow.environment", read_only=True)
    owner = serializers.CharField(source="owner.username", read_only=True)

    class Meta:
        model = ApiKey
        fields = [
            "id", "label", "prefix", "status", "customer", "workflow", "purpose", "data_scope", "environment",
            "scopes", "owner", "risk_tier", "issued_on", "expires_on", "last_used_at",
        ]
        read_only_fields = fields


class StageDecisionSerializer(serializers.Serializer):
    stage = serializers.IntegerField()
    decision = serializers.ChoiceField(choices=Decision.choices)
    by = serializers.CharField(allow_null=True)
    at = serializers.DateTimeField()
    capacity = serializers.CharField(source="as", help_text="reviewer, delegate, escalation or compliance.")
    reason = serializers.CharField(allow_blank=True, help_text="The release's reason code.")
    justification = serializers.CharField(allow_blank=True)
    evidence = serializers.DictField(help_text="What the reviewer saw, frozen with the decision.")
    self_review = serializers.ListField(child=serializers.CharField(), default=list)


class AttestationItemSerializer(serializers.ModelSerializer):
    key = ItemKeySerializer(read_only=True)
    campaign_name = serializers.CharField(source="campaign.name", read_only=True)
    due_on = serializers.DateField(source="campaign.due_on", read_only=True, allow_null=True)
    status = serializers.ChoiceField(choices=ItemStatus.choices, read_only=True)
    recommendation = serializers.ChoiceField(choices=Recommendation.choices, read_only=True)
    recommendation_text = serializers.CharField(source="get_recommendation_display", read_only=True)
    reviewer = serializers.CharField(source="reviewer.username", read_only=True)
    delegate = serializers.CharField(source="delegate.username", read_only=True, allow_null=True)
    decided_by = serializers.CharField(source="decided_by.username", read_only=True, allow_null=True)
    reassigned_to = serializers.CharField(source="reassigned_to.username", read_only=True, allow_null=True)
    escalated_to = serializers.CharField(source="escalated_to.username", read_only=True, allow_null=True)
    reason = serializers.ChoiceField(choices=ReasonCode.choices, read_only=True, allow_blank=True)
    decisions = StageDecisionSerializer(many=True, read_only=True, help_text="Every stage's decision, oldest first.")

    class Meta:
        model = AttestationItem
        fields = [
            "id", "campaign", "campaign_name", "due_on", "key", "status", "stage", "decisions", "recommendation",
            "recommendation_text", "reviewer", "reviewer_role", "delegate", "decided_by", "decided_at", "affirmed",
            "justification", "reason", "reassigned_to", "escalated_at", "escalated_to", "default_action_applied",
            "exception", "exception_lapsed", "exception_reaffirmed",
        ]
        read_only_fields = fields


class DecisionSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(choices=Decision.choices)
    justification = serializers.CharField(required=False, allow_blank=True, max_length=4000)
    affirm = serializers.BooleanField(
        required=False, default=False,
        help_text="Confirm only: the key's purpose, scope and ownership are still right.",
    )
    reaffirm_exception = serializers.BooleanField(
        required=False, default=False,
        help_text="Confirm only, for an item whose key was under an exception at launch: its justification still holds.",
    )
    to = serializers.CharField(
        required=False, allow_blank=True, allow_null=True, max_length=150,
        help_text="Reassign and delegate: the username of the new owner or of the delegate.",
    )
    reason = serializers.ChoiceField(
        choices=ReasonCode.choices, required=False, allow_blank=True, default="",
        help_text="Release only (required there): why the key is released.",
    )


class BulkDecisionSerializer(DecisionSerializer):
    items = serializers.ListField(child=serializers.IntegerField(min_value=1, max_value=2**63 - 1), min_length=1,
                                  max_length=1000, help_text="The ids of the items to decide.")


class BulkItemResultSerializer(serializers.Serializer):
    item = serializers.IntegerField()
    result = serializers.ChoiceField(choices=[("done", "done"), ("refused", "refused")])
    status = serializers.CharField(allow_blank=True, help_text="The item's status after the request ('' if unseen).")
    errors = serializers.ListField(child=serializers.CharField(), help_text="Why the item was refused.")


class BulkDecisionResultSerializer(serializers.Serializer):
    done = serializers.IntegerField()
    refused = serializers.IntegerField()
    results = BulkItemResultSerializer(many=True)
