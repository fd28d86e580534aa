"""The compliance overview's campaign figures against direct counts, after a decision and a close."""

import datetime

import pytest
from django.urls import reverse
from django.utils import timezone

from attestations.choices import CampaignStatus, Decision, ItemStatus
from attestations.models import AttestationItem, Campaign
from attestations.services import campaigns, decisions
from tests import factories

pytestmark = pytest.mark.django_db


def overview(client):
    return client.get(reverse("dashboard")).context["compliance_overview"]


def test_campaign_counts_match_the_items(client, compliance_user, owner, other_owner):
    for n in range(4):
        factories.ApiKeyFactory(owner=owner if n % 2 else other_owner)
    late = campaigns.create_campaign(actor=compliance_user, name="Late")
    campaigns.launch_campaign(late, actor=compliance_user)
    Campaign.objects.filter(pk=late.pk).update(due_on=timezone.localdate() - datetime.timedelta(days=1))
    decisions.record_decision(late.items.filter(reviewer=owner).first(), actor=owner, decision=Decision.CONFIRM,
                              justification="in use", affirm=True)
    factories.ApiKeyFactory(owner=owner)
    fresh = campaigns.create_campaign(actor=compliance_user, name="Fresh")
    campaigns.launch_campaign(fresh, actor=compliance_user)
    client.force_login(compliance_user)

    pending = AttestationItem.objects.filter(status=ItemStatus.PENDING, campaign__status=CampaignStatus.ACTIVE)
    figures = overview(client)
    assert figures["campaign_counts"] == {
        "active": 2, "pending_items": pending.count(), "overdue_items": pending.filter(campaign=late).count()}
    assert (figures["campaign_counts"]["pending_items"], figures["campaign_counts"]["overdue_items"]) == (5, 3)
    # Fresh holds the new key and the one confirmed in Late (no longer under review).
    shown = {c.name: (c.total, c.pending, c.percent, c.overdue) for c in figures["campaigns"]}
    assert shown == {"Late": (4, 3, 25, 3), "Fresh": (2, 2, 0, 0)}

    campaigns.close_campaign(late, actor=compliance_user)
    figures = overview(client)
    assert figures["campaign_counts"] == {"active": 1, "pending_items": 2, "overdue_items": 0}
    assert [c.name for c in figures["campaigns"]] == ["Fresh"]
