import datetime

import pytest
from django.core import mail
from django.utils import timezone

from attestations import tasks
from attestations.choices import CampaignStatus, Decision, DefaultAction, ItemStatus, Recommendation
from attestations.models import AttestationItem, Notification, OwnershipTransfer
from attestations.services import campaigns, decisions
from keys.choices import ContractStatus, KeyStatus, RevocationReason
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def setup(compliance_user, owner, other_owner):
    keys_a = [factories.ApiKeyFactory(owner=owner) for _ in range(2)]
    keys_b = [factories.ApiKeyFactory(owner=other_owner) for _ in range(2)]
    factories.ApiKeyFactory(owner=owner, status=KeyStatus.REVOKED)
    campaign = campaigns.create_campaign(actor=compliance_user, name="2026-Q4", default_action=DefaultAction.SUSPEND)
    return campaign, keys_a, keys_b


def test_launch_snapshots_live_keys_once(setup, compliance_user, owner, django_capture_on_commit_callbacks):
    campaign, keys_a, keys_b = setup
    with django_capture_on_commit_callbacks(execute=True):
        assert campaigns.launch_campaign(campaign, actor=compliance_user) == 4
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.ACTIVE
    assert campaign.due_on == timezone.localdate() + datetime.timedelta(days=14)
    items = AttestationItem.objects.filter(campaign=campaign)
    assert {i.reviewer_id for i in items if i.key in keys_a} == {owner.pk}
    assert all(i.history.count() == 1 for i in items)
    assert all(decisions.can_decide(i.reviewer, i) for i in items)
    assert campaigns.launch_campaign(campaign, actor=compliance_user) == 0
    assert items.count() == 4
    assert len(mail.outbox) == 2


def test_recommendations_from_data(compliance_user, owner):
    ended = factories.ApiKeyFactory(owner=owner, workflow__customer__contract_status=ContractStatus.ENDED)
    unused = factories.ApiKeyFactory(owner=owner, last_used_at=timezone.now() - datetime.timedelta(days=120))
    fresh = factories.ApiKeyFactory(owner=owner, last_used_at=timezone.now())
    campaign = campaigns.create_campaign(actor=compliance_user, name="recs")
    campaigns.launch_campaign(campaign, actor=compliance_user)
    recs = dict(campaign.items.values_list("key_id", "recommendation"))
    assert recs[ended.pk] == Recommendation.RELEASE_CONTRACT
    assert recs[unused.pk] == Recommendation.RELEASE_UNUSED
    assert recs[fresh.pk] == ""


def test_confirm_moves_review_date_and_records_history(setup, compliance_user, owner):
    campaign, keys_a, _ = setup
    campaigns.launch_campaign(campaign, actor=compliance_user)
    item = campaign.items.get(key=keys_a[0])
    with pytest.raises(campaigns.CampaignError) as err:
        decisions.record_decision(item, actor=owner, decision=Decision.CONFIRM, justification="still used")
    assert "affirm" in err.value.errors
    decisions.record_decision(item, actor=owner, decision=Decision.CONFIRM, justification="still used", affirm=True)
    item.refresh_from_db()
    key = item.key
    key.refresh_from_db()
    assert item.status == ItemStatus.CONFIRMED and item.decided_by == owner
    assert key.next_review_on == timezone.localdate() + datetime.timedelta(days=campaign.review_cadence_days)
    assert key.events.last().reason == "confirmed in campaign 2026-Q4"
    with pytest.raises(campaigns.CampaignError):
        decisions.record_decision(item, actor=owner, decision=Decision.CONFIRM, justification="again", affirm=True)


def test_only_reviewer_or_delegate_decides(setup, compliance_user, owner, other_owner):
    campaign, keys_a, _ = setup
    campaigns.launch_campaign(campaign, actor=compliance_user)
    item = campaign.items.get(key=keys_a[0])
    for intruder in (other_owner, compliance_user):
        with pytest.raises(campaigns.CampaignError):
            decisions.record_decision(item, actor=intruder, decision=Decision.CONFIRM, justification="x", affirm=True)
    decisions.record_decision(item, actor=owner, decision=Decision.DELEGATE, to=other_owner.username)
    decisions.record_decision(item, actor=other_owner, decision=Decision.CONFIRM, justification="x", affirm=True)
    item.refresh_from_db()
    assert item.status == ItemStatus.CONFIRMED and item.decided_by == other_owner


def test_release_suspends_the_key_for_its_grace_window(setup, compliance_user, owner):
    campaign, keys_a, _ = setup
    campaigns.launch_campaign(campaign, actor=compliance_user)
    item = campaign.items.get(key=keys_a[1])
    decisions.record_decision(item, actor=owner, decision=Decision.RELEASE, reason="unused", justification="integration retired")
    key = keys_a[1]
    key.refresh_from_db()
    assert key.status == KeyStatus.SUSPENDED and not key.revocation_requests.exists()
    release = key.releases.get()
    assert release.status == "watching" and release.status_before == KeyStatus.ACTIVE
    assert (release.ends_at - release.started_at).days == 7


def test_release_with_no_grace_window_revokes_the_key(setup, compliance_user, owner):
    campaign, keys_a, _ = setup
    campaign.release_grace_days = 0
    campaign.save()
    campaigns.launch_campaign(campaign, actor=compliance_user)
    item = campaign.items.get(key=keys_a[1])
    decisions.record_decision(item, actor=owner, decision=Decision.RELEASE, reason="unused", justification="integration retired")
    key = keys_a[1]
    key.refresh_from_db()
    assert key.status == KeyStatus.REVOKED and key.revocation_reason == RevocationReason.RELEASED
    assert not key.releases.exists()


def test_reassign_waits_for_acceptance(setup, compliance_user, owner, other_owner):
    campaign, keys_a, _ = setup
    campaigns.launch_campaign(campaign, actor=compliance_user)
    item = campaign.items.get(key=keys_a[0])
    decisions.record_decision(item, actor=owner, decision=Decision.REASSIGN, to=other_owner.username,
                              justification="bob's team runs it now")
    transfer = OwnershipTransfer.objects.get(key=keys_a[0])
    keys_a[0].refresh_from_db()
    assert keys_a[0].owner == owner
    with pytest.raises(campaigns.CampaignError):
        decisions.answer_transfer(transfer, actor=owner, accept=True)
    decisions.answer_transfer(transfer, actor=other_owner, accept=True)
    keys_a[0].refresh_from_db()
    assert keys_a[0].owner == other_owner and keys_a[0].rotation_required


@pytest.mark.parametrize(
    "action,expected_status",
    [(DefaultAction.SUSPEND, KeyStatus.SUSPENDED), (DefaultAction.REVOKE, KeyStatus.REVOKED),
     (DefaultAction.KEEP_AND_FLAG, KeyStatus.ACTIVE)],
)
def test_close_applies_default_action_once(compliance_user, owner, other_owner, action, expected_status):
    decided = factories.ApiKeyFactory(owner=owner)
    silent = factories.ApiKeyFactory(owner=other_owner)
    campaign = campaigns.create_campaign(actor=compliance_user, name="close", default_action=action)
    campaigns.launch_campaign(campaign, actor=compliance_user)
    decisions.record_decision(campaign.items.get(key=decided), actor=owner, decision=Decision.CONFIRM,
                              justification="ok", affirm=True)
    result = campaigns.close_campaign(campaign, actor=compliance_user)
    assert result[action] == 1
    silent.refresh_from_db()
    decided.refresh_from_db()
    assert silent.status == expected_status
    assert silent.unattested == (action != DefaultAction.REVOKE)
    assert decided.status == KeyStatus.ACTIVE and not decided.unattested
    item = campaign.items.get(key=silent)
    assert item.status == ItemStatus.EXPIRED and item.default_action_applied == action
    assert campaigns.close_campaign(campaign, actor=compliance_user) == {}
    assert silent.events.filter(reason__startswith="no response").count() >= 1
    with pytest.raises(campaigns.CampaignError):
        decisions.record_decision(item, actor=other_owner, decision=Decision.CONFIRM, justification="late", affirm=True)


def test_reminders_only_to_pending_reviewers_once_per_day(setup, compliance_user, owner, other_owner):
    campaign, keys_a, _ = setup
    campaign.reminder_days = [3, 7]
    campaign.save()
    campaigns.launch_campaign(campaign, actor=compliance_user)
    for item in campaign.items.filter(reviewer=owner):
        decisions.record_decision(item, actor=owner, decision=Decision.CONFIRM, justification="ok", affirm=True)
    campaign.refresh_from_db()
    campaign.launched_at = timezone.now() - datetime.timedelta(days=4)
    campaign.save()
    mail.outbox.clear()
    assert tasks.send_reminders() == 1
    assert tasks.send_reminders() == 0
    assert [m.to for m in mail.outbox] == [[other_owner.email]]
    assert Notification.objects.filter(kind="reminder", sequence=3).count() == 1


def test_escalation_to_manager_or_compliance(setup, compliance_user, owner, other_owner):
    manager = factories.OwnerFactory(username="mgr")
    factories.OwnerProfileFactory(user=owner, manager=manager)
    campaign, _, _ = setup
    campaign.escalation_days = 5
    campaign.save()
    campaigns.launch_campaign(campaign, actor=compliance_user)
    campaign.refresh_from_db()
    campaign.launched_at = timezone.now() - datetime.timedelta(days=6)
    campaign.save()
    mail.outbox.clear()
    assert tasks.escalate_overdue() == 2
    assert sorted(m.to[0] for m in mail.outbox) == sorted([manager.email, compliance_user.email])
    assert tasks.escalate_overdue() == 0
    assert campaign.items.filter(escalated_to=manager).count() == 2


def test_schedule_launches_when_due_and_skips_empty_scope(compliance_user, owner):
    from attestations.models import CampaignSchedule

    factories.ApiKeyFactory(owner=owner)
    schedule = CampaignSchedule.objects.create(name="Quarterly", cadence_days=90)
    campaign_id = tasks.launch_scheduled_campaign(schedule.pk)
    assert campaign_id is not None
    assert tasks.launch_scheduled_campaign(schedule.pk) is None
    schedule.refresh_from_db()
    assert schedule.next_launch_on == timezone.localdate() + datetime.timedelta(days=90)
    empty = CampaignSchedule.objects.create(name="Staging only", environments=["staging"])
    assert tasks.launch_scheduled_campaign(empty.pk) is None
