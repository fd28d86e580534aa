"""Read-only serializers answer through one set of bound fields per class (portal.api.ReadOnlyFieldsOnce):
the answer is the one DRF's own per-instance fields give, for decided and pending items alike, and a
serializer whose fields read the context keeps its own."""

import pytest
from rest_framework import serializers

from attestations import campaigns
from attestations.api.serializers import AttestationItemSerializer, ItemKeySerializer
from keys.models import ApiKey
from portal.api import ReadOnlyFieldsOnce
from tests import factories

pytestmark = pytest.mark.django_db


def _per_instance(serializer, instance) -> dict:
    """What DRF's Serializer.to_representation gives with the serializer's own fields."""
    answer = {}
    for field in serializer.fields.values():
        attribute = field.get_attribute(instance)
        value = attribute.pk if isinstance(attribute, serializers.PKOnlyObject) else attribute
        answer[field.field_name] = None if value is None else field.to_representation(attribute)
    return answer


def test_same_answer_as_per_instance_fields(compliance_user, owner):
    for _ in range(3):
        factories.ApiKeyFactory(owner=owner)
    campaign = campaigns.create_campaign(actor=compliance_user, name="2026-Q4 <b>")
    campaigns.launch_campaign(campaign, actor=compliance_user)
    items = list(campaign.items.select_related("campaign", "key__workflow__customer", "reviewer").order_by("pk"))
    campaigns.record_decision(items[0], actor=owner, decision="confirm", affirm=True, justification="needed")
    items = list(campaign.items.select_related("campaign", "key__workflow__customer", "reviewer", "decided_by")
                 .order_by("pk"))
    for item in items:
        assert AttestationItemSerializer(item).data == _per_instance(AttestationItemSerializer(item), item)
        assert AttestationItemSerializer(item).data["key"] == _per_instance(ItemKeySerializer(item.key), item.key)
    assert AttestationItemSerializer(items, many=True).data == [AttestationItemSerializer(i).data for i in items]
    assert AttestationItemSerializer(items[0]).data["status"] == "confirmed"


def test_a_serializer_whose_fields_read_the_context_keeps_its_own(rf):
    class WithMethod(ReadOnlyFieldsOnce, serializers.ModelSerializer):
        seen_by = serializers.SerializerMethodField()

        class Meta:
            model = ApiKey
            fields = ["id", "label", "seen_by"]
            read_only_fields = fields

        def get_seen_by(self, key):
            return self.context["viewer"]

    key = factories.ApiKeyFactory()
    assert WithMethod(key, context={"viewer": "alice"}).data["seen_by"] == "alice"
    assert WithMethod(key, context={"viewer": "bob"}).data["seen_by"] == "bob"
    assert WithMethod.__dict__["_readable_once"] is False
