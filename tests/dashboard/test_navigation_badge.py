"""The navigation's badge of pending items, on every page: the items the user may decide in running campaigns,
counted up to a cap ("99+" beyond), the same for owners and compliance officers as the rule of who decides."""

import pytest
from django.urls import reverse

from attestations.choices import CampaignStatus, Decision, ItemStatus
from attestations.models import AttestationItem, may_decide
from attestations.services import campaigns, decisions
from core import roles
from dashboard import context_processors
from dashboard.context_processors import pending_badge
from tests import factories

pytestmark = pytest.mark.django_db


def badge(client) -> str | None:
    """The badge's text as the page shows it (None: no badge)."""
    text = client.get(reverse("keys:list")).text
    if 'class="count nav-count"' not in text:
        return None
    return text.split('class="count nav-count">')[1].split("<span")[0]


@pytest.fixture
def running(compliance_user, owner, other_owner):
    for n in range(5):
        factories.ApiKeyFactory(owner=owner if n < 3 else other_owner)
    campaign = campaigns.create_campaign(actor=compliance_user, name="Quarterly")
    campaigns.launch_campaign(campaign, actor=compliance_user)
    return campaign


def decidable(user) -> int:
    """The direct count the badge stands for, the role asked by the database (``may_decide`` without ``officer``)."""
    return AttestationItem.objects.filter(may_decide(user), status=ItemStatus.PENDING,
                                          campaign__status=CampaignStatus.ACTIVE).count()


def test_an_owner_counts_the_items_they_may_decide(client, owner, other_owner, running, compliance_user):
    client.force_login(owner)
    assert badge(client) == "3" and pending_badge(owner) == 3
    decisions.record_decision(running.items.filter(reviewer=owner).first(), actor=owner, decision=Decision.CONFIRM,
                              justification="in use", affirm=True)
    assert badge(client) == "2"
    # Compliance's items are not an owner's; a closed campaign's items wait no more.
    running.items.filter(reviewer=other_owner).update(reviewer_role=roles.COMPLIANCE)
    assert pending_badge(owner) == 2 == decidable(owner)
    campaigns.close_campaign(running, actor=compliance_user)
    assert badge(client) is None and pending_badge(owner) == 0


def test_a_compliance_officer_counts_the_items_of_compliance_stages(client, compliance_user, other_owner, running):
    client.force_login(compliance_user)
    assert badge(client) is None
    running.items.filter(reviewer=other_owner).update(reviewer_role=roles.COMPLIANCE)
    assert badge(client) == "2" and pending_badge(compliance_user) == 2 == decidable(compliance_user)
    # The reviewer named on those items still counts them, as the rule of who decides says.
    assert pending_badge(other_owner) == 2 == decidable(other_owner)


def test_beyond_the_cap_the_badge_says_more(client, owner, running, monkeypatch):
    monkeypatch.setattr(context_processors, "BADGE_CAP", 2)
    client.force_login(owner)
    assert badge(client) == "2+"
    monkeypatch.setattr(context_processors, "BADGE_CAP", 3)
    assert badge(client) == "3"


def test_the_badge_is_one_query(client, compliance_user, running, django_assert_num_queries):
    running.items.update(reviewer_role=roles.COMPLIANCE)
    roles.is_compliance(compliance_user)  # the role, read once per request by then
    with django_assert_num_queries(1):
        assert pending_badge(compliance_user) == 5
