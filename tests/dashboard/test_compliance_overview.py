"""The compliance overview's campaign figures against direct counts, after a decision and a close."""

import datetime

import pytest
from django.urls import reverse
from django.utils import timezone

from attestations.choices import CampaignStatus, Decision, ItemStatus
from attestations.models import AttestationItem, Campaign
from attestations.services import campaigns, decisions, progress
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


def test_a_large_campaign_is_counted_from_its_stored_figures(client, compliance_user, owner, settings):
    settings.CAMPAIGN_FIGURES_MIN_ITEMS = 3
    for _ in range(3):
        factories.ApiKeyFactory(owner=owner)
    large = campaigns.create_campaign(actor=compliance_user, name="Large")
    campaigns.launch_campaign(large, actor=compliance_user)
    progress.refresh_campaign_figures(large)
    factories.ApiKeyFactory(owner=owner)
    small = campaigns.create_campaign(actor=compliance_user, name="Small")
    campaigns.launch_campaign(small, actor=compliance_user)
    client.force_login(compliance_user)
    decisions.record_decision(large.items.first(), actor=owner, decision=Decision.CONFIRM, justification="in use",
                              affirm=True)
    decisions.record_decision(small.items.first(), actor=owner, decision=Decision.CONFIRM, justification="in use",
                              affirm=True)

    # The large campaign as of its figures (3 pending), the small one counted now (0 pending).
    figures = overview(client)
    assert {c.name: (c.total, c.pending) for c in figures["campaigns"]} == {"Large": (3, 3), "Small": (1, 0)}
    assert figures["campaign_counts"]["pending_items"] == 3
    counted_at = large.figures.counted_at
    assert figures["campaigns_counted_at"] == counted_at
    assert 'data-testid="campaigns-counted-at"' in client.get(reverse("dashboard")).text

    progress.refresh_campaign_figures(large)
    figures = overview(client)
    assert {c.name: (c.total, c.pending) for c in figures["campaigns"]} == {"Large": (3, 2), "Small": (1, 0)}
    assert figures["campaigns_counted_at"] > counted_at


def test_without_stored_figures_nothing_says_as_of(client, compliance_user, owner):
    factories.ApiKeyFactory(owner=owner)
    campaigns.launch_campaign(campaigns.create_campaign(actor=compliance_user, name="Small"), actor=compliance_user)
    client.force_login(compliance_user)
    assert overview(client)["campaigns_counted_at"] is None
    assert 'data-testid="campaigns-counted-at"' not in client.get(reverse("dashboard")).text
