"""Successor handshake for departed owners' keys, reminder cadence, and campaigns with nothing to attest."""

import datetime

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from attestations import tasks
from attestations.choices import CampaignStatus, DefaultAction, TransferKind, TransferStatus
from attestations.models import Campaign, CampaignSchedule, Notification, OwnershipTransfer
from attestations.services import campaigns, decisions, reminders, successions
from keys.choices import KeyStatus, LifecycleAction, RevocationReason
from keys.services import lifecycle, sweeps
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def departed(owner, other_owner):
    """erin left; her manager is bob (other_owner), who must name a successor for her key."""
    erin = factories.OwnerFactory(username="erin")
    factories.OwnerProfileFactory(user=erin, manager=other_owner, is_active=False)
    key = factories.ApiKeyFactory(owner=erin, label="Erin's export")
    assert sweeps.sweep_departed_owners()["orphaned"] == 1
    key.refresh_from_db()
    assert key.orphaned
    return erin, key


def test_scopes_are_frozen_while_the_owner_is_gone(departed, admin_user, client):
    _, key = departed
    assert "frozen" in lifecycle.scope_change_refusal(key)
    client.force_login(admin_user)
    url = reverse("admin:keys_apikey_change", args=[key.pk])
    response = client.post(url, {"label": key.label, "scopes": '["write:everything"]', "risk_tier": key.risk_tier,
                                 "expires_on": key.expires_on.isoformat(), "next_review_on": key.next_review_on.isoformat()})
    assert response.status_code == 200 and "scopes are frozen" in response.text
    key.refresh_from_db()
    assert key.scopes == ["read:cases"]


def test_manager_names_a_successor_who_accepts_and_ownership_moves(departed, owner, other_owner, client):
    erin, key = departed
    client.force_login(other_owner)
    page = client.get(reverse("attestations:successions"))
    assert page.status_code == 200 and "Erin&#x27;s export" in page.text
    # alice is not erin's manager: she may not name anyone.
    with pytest.raises(campaigns.CampaignError, match="manager"):
        successions.name_successor(key, actor=owner, successor=owner.username)
    response = client.post(reverse("attestations:succession-name", args=[key.pk]), {"successor": "nobody"}, follow=True)
    assert "No user named" in response.text
    response = client.post(reverse("attestations:succession-name", args=[key.pk]), {"successor": owner.username})
    assert response.status_code == 302
    transfer = OwnershipTransfer.objects.get(key=key)
    assert (transfer.kind, transfer.status, transfer.to_user, transfer.requested_by) == (
        TransferKind.SUCCESSION, TransferStatus.PENDING, owner, other_owner)
    assert transfer.default_action == DefaultAction.SUSPEND and transfer.deadline > timezone.now()
    key.refresh_from_db()
    assert key.owner == erin  # nothing moves before the successor accepts
    with pytest.raises(campaigns.CampaignError, match="already asked"):
        successions.name_successor(key, actor=other_owner, successor=other_owner.username)
    client.force_login(owner)
    response = client.post(reverse("attestations:transfer", args=[transfer.pk, "accept"]))
    assert response.status_code == 302
    key.refresh_from_db()
    transfer.refresh_from_db()
    assert key.owner == owner and not key.orphaned and key.rotation_required
    assert transfer.status == TransferStatus.ACCEPTED
    assert key.events.last().action == LifecycleAction.CHANGE_OWNER
    # Accepted: the deadline passing later changes nothing.
    assert successions.lapse_due_successions(timezone.now() + datetime.timedelta(days=30))["lapsed"] == 0


def test_unaccepted_succession_falls_to_the_campaigns_default_action_once(departed, owner, other_owner,
                                                                        compliance_user):
    erin, key = departed
    campaign = campaigns.create_campaign(actor=compliance_user, name="Q4", default_action=DefaultAction.REVOKE)
    campaigns.launch_campaign(campaign, actor=compliance_user)
    transfer = successions.name_successor(key, actor=other_owner, successor=owner)
    assert transfer.default_action == DefaultAction.REVOKE and transfer.item.campaign == campaign
    later = transfer.deadline + datetime.timedelta(minutes=1)
    assert successions.lapse_due_successions(transfer.deadline - datetime.timedelta(minutes=1))["lapsed"] == 0
    assert successions.lapse_due_successions(later) == {"lapsed": 1, "skipped": 0}
    key.refresh_from_db()
    transfer.refresh_from_db()
    assert key.status == KeyStatus.REVOKED and key.revocation_reason == RevocationReason.OWNER_DEPARTED
    assert (transfer.status, transfer.default_action_applied) == (TransferStatus.LAPSED, DefaultAction.REVOKE)
    assert successions.lapse_due_successions(later + datetime.timedelta(days=1)) == {"lapsed": 0, "skipped": 0}
    assert key.events.filter(action=LifecycleAction.REVOKE).count() == 1 and key.revocation_requests.count() == 1
    with pytest.raises(campaigns.CampaignError, match="already lapsed"):
        decisions.answer_transfer(transfer, actor=owner, accept=True)


def test_without_a_campaign_the_configured_default_applies(departed, owner, other_owner, settings):
    settings.SUCCESSION_DEFAULT_ACTION = "suspend"
    erin, key = departed
    transfer = successions.name_successor(key, actor=other_owner, successor=owner)
    # Past the deadline the successor can no longer accept, even before the sweep runs.
    OwnershipTransfer.objects.filter(pk=transfer.pk).update(deadline=timezone.now() - datetime.timedelta(seconds=1))
    with pytest.raises(campaigns.CampaignError, match="time to accept"):
        decisions.answer_transfer(transfer, actor=owner, accept=True)
    assert tasks.lapse_due_successions()["lapsed"] == 1
    key.refresh_from_db()
    assert key.status == KeyStatus.SUSPENDED and key.unattested and key.owner == erin


def test_reminders_follow_the_schedules_cadence_and_only_reach_reviewers_with_pending_items(
        owner, other_owner, compliance_user, mailoutbox):
    schedule = CampaignSchedule.objects.create(name="Monthly", duration_days=14, reminder_every_days=3,
                                               reminder_days=[], next_launch_on=timezone.localdate())
    for user in (owner, other_owner):
        factories.ApiKeyFactory(owner=user)
    campaign = campaigns.launch_due_schedule(schedule, actor=compliance_user)
    campaign.refresh_from_db()
    assert campaign.reminder_every_days == 3 and reminders.reminder_schedule(campaign) == [3, 6, 9, 12]
    item = campaign.items.get(reviewer=owner)
    decisions.record_decision(item, actor=owner, decision="confirm", affirm=True, justification="in use")
    launched = timezone.localdate(campaign.launched_at)
    assert reminders.due_reminder_day(campaign, launched + datetime.timedelta(days=2)) is None
    Campaign.objects.filter(pk=campaign.pk).update(launched_at=campaign.launched_at - datetime.timedelta(days=7))
    mail.outbox.clear()
    assert tasks.send_reminders(campaign.pk) == 1
    sent = Notification.objects.filter(campaign=campaign, kind=Notification.Kind.REMINDER)
    assert list(sent.values_list("recipient__username", "sequence")) == [("bob", 6)]
    assert [m.to for m in mailoutbox] == [[other_owner.email]]
    assert tasks.send_reminders(campaign.pk) == 0  # the same cadence day is not sent twice


def test_campaigns_with_nothing_to_attest_are_not_launched(owner, compliance_user):
    empty = campaigns.create_campaign(actor=compliance_user, name="Nothing", risk_tiers=["critical"])
    with pytest.raises(campaigns.CampaignError, match="No key"):
        campaigns.launch_campaign(empty, actor=compliance_user)
    empty.refresh_from_db()
    assert empty.status == CampaignStatus.DRAFT and not empty.items.exists()
    # A schedule whose keys are all under review elsewhere launches nothing and moves on.
    factories.ApiKeyFactory(owner=owner)
    busy = campaigns.create_campaign(actor=compliance_user, name="Busy")
    campaigns.launch_campaign(busy, actor=compliance_user)
    schedule = CampaignSchedule.objects.create(name="Weekly", cadence_days=7, next_launch_on=timezone.localdate())
    assert campaigns.launch_due_schedule(schedule, actor=compliance_user) is None
    schedule.refresh_from_db()
    assert schedule.next_launch_on == timezone.localdate() + datetime.timedelta(days=7)
    assert not Campaign.objects.filter(schedule=schedule, status=CampaignStatus.ACTIVE).exists()
    assert Campaign.objects.get(schedule=schedule).status == CampaignStatus.CANCELLED
    assert tasks.launch_due_schedules() == []
