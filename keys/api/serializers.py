"""The registry's REST representations. Users appear by username; a key's secret is write-only and never kept."""

from django.contrib.auth import get_user_model
from rest_framework import serializers

from core.api import GovernedModelSerializer, SlugRelatedField
from keys.choices import KeyStatus, LifecycleAction, RevocationReason, RiskTier
from keys.fingerprints import MAX_PREFIX_LENGTH
from keys.models import ApiKey, Customer, IssuingSystem, Workflow

User = get_user_model()


def username_field(**kwargs) -> SlugRelatedField:
    kwargs.setdefault("queryset", User.objects.all())
    return SlugRelatedField(slug_field="username", **kwargs)


class CustomerSerializer(GovernedModelSerializer):
    account_manager = username_field(required=False, allow_null=True)

    class Meta:
        model = Customer
        fields = ["id", "name", "external_id", "contract_status", "contract_end", "account_manager", "created_at"]
        read_only_fields = ["created_at"]


class WorkflowSerializer(GovernedModelSerializer):
    customer_name = serializers.CharField(source="customer.name", read_only=True)
    business_owner = username_field()
    technical_steward = username_field(required=False, allow_null=True)

    class Meta:
        model = Workflow
        fields = [
            "id", "customer", "customer_name", "name", "purpose", "data_scope", "environment", "business_owner",
            "technical_steward", "status", "decommissioned_on", "created_at",
        ]
        read_only_fields = ["created_at"]


class ApiKeySerializer(serializers.ModelSerializer):
    """A key as the registry knows it: prefix and metadata, never the secret (the fingerprint is not shown either)."""

    customer = serializers.IntegerField(source="workflow.customer_id", read_only=True)
    customer_name = serializers.CharField(source="workflow.customer.name", read_only=True)
    workflow_name = serializers.CharField(source="workflow.name", read_only=True)
    environment = serializers.CharField(source="workflow.environment", read_only=True)
    purpose = serializers.CharField(source="workflow.purpose", read_only=True)
    issuing_system_name = serializers.CharField(source="issuing_system.name", read_only=True)
    owner = serializers.CharField(source="owner.username", read_only=True)
    steward = serializers.CharField(source="steward.username", read_only=True, allow_null=True)
    approved_by = serializers.CharField(source="approved_by.username", read_only=True, allow_null=True)
    status = serializers.ChoiceField(choices=KeyStatus.choices, read_only=True)

    class Meta:
        model = ApiKey
        fields = [
            "id", "label", "prefix", "status", "status_changed_at", "customer", "customer_name", "workflow",
            "workflow_name", "environment", "purpose", "issuing_system", "issuing_system_name", "owner", "steward",
            "scopes", "risk_tier", "issued_on", "expires_on", "next_review_on", "last_used_at", "last_rotated_at",
            "last_attested_at", "approved_by", "approved_at", "approval_reference", "revocation_reason",
            "rotation_required", "orphaned", "stale", "unattested", "created_at", "updated_at",
        ]
        read_only_fields = fields


class RegisterKeySerializer(serializers.Serializer):
    """What an integration or admin sends to register a key. Validated here for shape, by register_key for rules."""

    label = serializers.CharField(max_length=200)
    workflow = serializers.PrimaryKeyRelatedField(queryset=Workflow.objects.select_related("customer"))
    issuing_system = serializers.PrimaryKeyRelatedField(
        queryset=IssuingSystem.objects.all(), required=False,
        help_text="Where the key was minted. May be left out only while a single issuing system exists.",
    )
    owner = username_field(help_text="Username of the accountable owner.")
    steward = username_field(required=False, allow_null=True, help_text="Username of the technical steward.")
    secret = serializers.CharField(
        write_only=True, required=False, trim_whitespace=False, max_length=512, style={"input_type": "password"},
        help_text="The key's secret: fingerprinted on arrival and dropped; never stored or returned. "
                  "Give this or `fingerprint`.",
    )
    fingerprint = serializers.CharField(
        required=False, max_length=64, help_text="Instead of the secret: its HMAC-SHA256 fingerprint (64 hex characters)."
    )
    prefix = serializers.CharField(
        required=False, allow_blank=True, max_length=MAX_PREFIX_LENGTH,
        help_text="The visible start of the key; derived from the secret when left out, required with a fingerprint.",
    )
    scopes = serializers.ListField(child=serializers.CharField(max_length=200), required=False, max_length=100)
    risk_tier = serializers.ChoiceField(choices=RiskTier.choices, default=RiskTier.MEDIUM)
    issued_on = serializers.DateField(required=False, allow_null=True, help_text="Today when left out.")
    expires_on = serializers.DateField(required=False, allow_null=True)
    next_review_on = serializers.DateField(required=False, allow_null=True)
    reason = serializers.CharField(required=False, allow_blank=True, max_length=500, help_text="Change reference or note.")

    def is_valid(self, *, raise_exception=False):
        try:
            return super().is_valid(raise_exception=raise_exception)
        finally:
            # The browsable API re-renders a refused form from the submitted data: drop the secret from it.
            if hasattr(self, "initial_data") and "secret" in self.initial_data:
                self.initial_data = self.initial_data.copy()
                self.initial_data.pop("secret")

    def validate(self, attrs):
        if "issuing_system" not in attrs:
            systems = list(IssuingSystem.objects.all()[:2])
            if len(systems) != 1:
                raise serializers.ValidationError(
                    {"issuing_system": ["Name the issuing system: there is more than one (or none yet)."]}
                )
            attrs["issuing_system"] = systems[0]
        return attrs


class RevokeKeySerializer(serializers.Serializer):
    reason_code = serializers.ChoiceField(choices=RevocationReason.choices)
    reason = serializers.CharField(required=False, allow_blank=True, max_length=2000)
    grace_days = serializers.IntegerField(
        required=False, allow_null=True, min_value=0, max_value=90,
        help_text="Release with a grace window: the key is suspended this many days while its usage is watched, "
                  "then revoked if unused. Omitted or 0: revoked at once. Exposed keys are always revoked at once.",
    )


class HistoryChangeSerializer(serializers.Serializer):
    field = serializers.CharField()
    old = serializers.JSONField(allow_null=True)
    new = serializers.JSONField(allow_null=True)


class KeyHistoryEntrySerializer(serializers.Serializer):
    """One entry of a key's history: a lifecycle event, a history record, or both written by the same step."""

    at = serializers.DateTimeField()
    source = serializers.ChoiceField(choices=["event", "record", "event+record"])
    action = serializers.CharField(
        help_text=f"A lifecycle action ({', '.join(LifecycleAction.values)}) or, for a bare history record, "
                  "created / changed / deleted."
    )
    actor = serializers.CharField(allow_null=True, help_text="Username of whoever did it.")
    reason = serializers.CharField(allow_blank=True)
    from_status = serializers.CharField(allow_blank=True)
    to_status = serializers.CharField(allow_blank=True)
    details = serializers.DictField()
    changes = HistoryChangeSerializer(many=True)
