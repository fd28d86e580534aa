"""Multi-stage review: which items enter a stage, what moves on, who reviews (fallback, departure, escalation),
separation of duties, the ends of stages and of the campaign, bulk decisions and reason codes."""

import datetime

import pytest
from django.utils import timezone

from attestations.choices import DefaultAction, ItemStatus, MissingSignoff
from attestations.models import AttestationItem
from attestations.services import campaigns, decisions, evidence, reminders, review_stages
from attestations.stages import stage_window
from keys.choices import KeyStatus, RiskTier
from tests import factories

pytestmark = pytest.mark.django_db

OWNER_THEN_COMPLIANCE = [
    {"reviewer": "owner", "duration_days": 7},
    {"reviewer": "compliance", "duration_days": 5, "risk_tiers": ["high", "critical"], "moves_on": ["confirm"]},
]
CONFIRM = {"decision": "confirm", "affirm": True, "justification": "Still used by the nightly export."}


def launched(actor, stages=OWNER_THEN_COMPLIANCE, **rules):
    campaign = campaigns.create_campaign(actor=actor, name=f"staged {AttestationItem.objects.count()}",
                                         stages=stages, **rules)
    campaigns.launch_campaign(campaign, actor=actor)
    campaign.refresh_from_db()
    return campaign


def item_of(campaign, key) -> AttestationItem:
    return campaign.items.select_related("campaign").get(key=key)


@pytest.fixture
def keys(owner):
    return {tier: factories.ApiKeyFactory(owner=owner, risk_tier=tier, label=f"{tier} key") for tier in RiskTier.values}


def test_stages_add_up_to_the_campaigns_duration(compliance_user, keys):
    campaign = launched(compliance_user)
    assert campaign.duration_days == 12
    assert campaign.due_on == timezone.localdate() + datetime.timedelta(days=12)
    start = timezone.localdate()
    assert stage_window(campaign, 1) == (start, start + datetime.timedelta(days=7))
    assert stage_window(campaign, 2) == (start + datetime.timedelta(days=7), start + datetime.timedelta(days=12))


def test_bad_stages_are_refused_with_a_message_per_problem(compliance_user):
    with pytest.raises(campaigns.CampaignError) as refused:
        campaigns.create_campaign(actor=compliance_user, name="bad", stages=[
            {"reviewer": "owner", "risk_tiers": ["high"]},
            {"reviewer": "nobody-here", "duration_days": 0, "moves_on": ["reassign"]},
            {"reviewer": "compliance"}, {"reviewer": "compliance"},
        ])
    assert "stages" in refused.value.errors
    with pytest.raises(campaigns.CampaignError) as refused:
        campaigns.create_campaign(actor=compliance_user, name="bad", stages=[
            {"reviewer": "owner", "risk_tiers": ["high"]},
            {"reviewer": "nobody-here", "duration_days": 0, "moves_on": ["reassign"]},
        ])
    messages = " ".join(refused.value.errors["stages"])
    assert "Stage 1 reviews every item" in messages
    assert "no user named 'nobody-here'" in messages
    assert "Stage 2: its duration" in messages
    assert "reassign is not one of confirm, release" in messages
    assert not campaigns.Campaign.objects.filter(name="bad").exists()


def test_only_the_tiers_and_decisions_a_stage_admits_move_on(compliance_user, owner, keys):
    campaign = launched(compliance_user)
    low, high, critical = (item_of(campaign, keys[t]) for t in ("low", "high", "critical"))
    before = keys["high"].next_review_on

    decisions.record_decision(low, actor=owner, **CONFIRM)
    decisions.record_decision(high, actor=owner, **CONFIRM)
    decisions.record_decision(critical, actor=owner, decision="release", reason="replaced",
                              justification="Replaced by the OAuth client.")
    low.refresh_from_db(), high.refresh_from_db(), critical.refresh_from_db()

    assert (low.status, low.stage) == (ItemStatus.CONFIRMED, 1)  # low risk: the owner's confirmation is final
    assert (critical.status, critical.reason) == (ItemStatus.RELEASED, "replaced")  # releases do not move on
    assert critical.key.status == KeyStatus.SUSPENDED
    # A high-risk confirmation waits for compliance, and does nothing to the key yet.
    assert (high.status, high.stage, high.reviewer_role) == (ItemStatus.PENDING, 2, "compliance")
    high.key.refresh_from_db()
    assert high.key.next_review_on == before
    assert [(d["stage"], d["decision"], d["by"], d["as"]) for d in high.decisions] == [(1, "confirm", "alice", "reviewer")]
    assert high.decisions[0]["evidence"]["key_status"] == "active"
    assert "confirmed at stage 1, on to stage 2" in high.history.first().history_change_reason
    # The owner no longer has it; compliance does, and sees the owner's decision with it.
    assert not AttestationItem.objects.decidable_by(owner).filter(pk=high.pk).exists()
    assert AttestationItem.objects.decidable_by(compliance_user).filter(pk=high.pk).exists()


def test_a_later_stage_signs_off_or_overrules(compliance_user, owner, keys):
    campaign = launched(compliance_user)
    high, critical = item_of(campaign, keys["high"]), item_of(campaign, keys["critical"])
    for item in (high, critical):
        decisions.record_decision(item, actor=owner, **CONFIRM)
    officer = factories.ComplianceFactory(username="erin")

    decisions.record_decision(high, actor=officer, **CONFIRM)
    decisions.record_decision(critical, actor=compliance_user, decision="release", reason="security",
                              justification="Scopes far wider than the workflow needs.")
    high.refresh_from_db(), critical.refresh_from_db()
    assert (high.status, high.decided_by, high.stage) == (ItemStatus.CONFIRMED, officer, 2)
    assert [d["by"] for d in high.decisions] == ["alice", "erin"]
    assert high.decisions[1]["as"] == "compliance"
    high.key.refresh_from_db()
    assert high.key.next_review_on == timezone.localdate() + datetime.timedelta(days=campaign.review_cadence_days)
    # The release overrules the owner's confirmation: the key goes into its grace window as any release.
    assert (critical.status, critical.reason) == (ItemStatus.RELEASED, "security")
    assert [(d["decision"], d["reason"]) for d in critical.decisions] == [("confirm", ""), ("release", "security")]
    critical.key.refresh_from_db()
    assert critical.key.status == KeyStatus.SUSPENDED
    assert "at stage 2" in critical.history.first().history_change_reason


def test_reassigning_belongs_to_the_first_stage(compliance_user, owner, other_owner, keys):
    campaign = launched(compliance_user)
    high = item_of(campaign, keys["high"])
    decisions.record_decision(high, actor=owner, **CONFIRM)
    with pytest.raises(campaigns.CampaignError) as refused:
        decisions.record_decision(high, actor=compliance_user, decision="reassign", to=other_owner.username,
                                  justification="Bob's team runs it.")
    assert "first stage" in refused.value.errors["decision"][0]


def test_a_release_needs_a_reason_code_at_every_stage(compliance_user, owner, keys):
    campaign = launched(compliance_user)
    low = item_of(campaign, keys["low"])
    with pytest.raises(campaigns.CampaignError) as refused:
        decisions.record_decision(low, actor=owner, decision="release", justification="Not needed.")
    assert "Choose why the key is released" in refused.value.errors["reason"][0]
    with pytest.raises(campaigns.CampaignError):
        decisions.record_decision(low, actor=owner, decision="release", reason="bored", justification="x")
    low.refresh_from_db()
    assert low.status == ItemStatus.PENDING and low.decisions == []


@pytest.mark.parametrize("why", ["decided", "owns", "approved"])
def test_separation_of_duties_blocks_a_later_stage_reviewer(compliance_user, owner, why):
    officer = factories.ComplianceFactory(username="erin")
    key = factories.ApiKeyFactory(owner=officer if why == "owns" else owner, risk_tier="high",
                                  approved_by=officer if why == "approved" else None)
    stages = [{"reviewer": "owner", "duration_days": 7},
              {"reviewer": "compliance", "duration_days": 5, "moves_on": ["confirm"]}]
    campaign = launched(compliance_user, stages=stages)
    item = item_of(campaign, key)
    if why == "decided":  # erin is the owner's delegate at stage 1, then a compliance reviewer at stage 2
        decisions.record_decision(item, actor=owner, decision="delegate", to=officer.username)
        decisions.record_decision(item, actor=officer, **CONFIRM)
    else:
        decisions.record_decision(item, actor=item.reviewer, **CONFIRM)
    with pytest.raises(decisions.NotAllowedToDecide) as refused:
        decisions.record_decision(item, actor=officer, **CONFIRM)
    assert "Separation of duties" in refused.value.messages[0]
    decisions.record_decision(item, actor=compliance_user, **CONFIRM)  # another officer may
    item.refresh_from_db()
    assert item.status == ItemStatus.CONFIRMED


def test_separation_of_duties_can_be_turned_off(compliance_user, owner):
    key = factories.ApiKeyFactory(owner=compliance_user, risk_tier="high")
    stages = [{"reviewer": "owner", "duration_days": 7}, {"reviewer": "compliance", "duration_days": 5}]
    campaign = launched(compliance_user, stages=stages, separation_of_duties=False)
    item = item_of(campaign, key)
    decisions.record_decision(item, actor=compliance_user, **CONFIRM)
    decisions.record_decision(item, actor=compliance_user, **CONFIRM)
    item.refresh_from_db()
    assert item.status == ItemStatus.CONFIRMED and len(item.decisions) == 2


def test_at_stage_one_an_owner_who_approved_their_key_is_flagged_not_blocked(compliance_user, owner):
    key = factories.ApiKeyFactory(owner=owner, approved_by=owner)
    campaign = launched(compliance_user)
    item = item_of(campaign, key)
    decisions.record_decision(item, actor=owner, **CONFIRM)
    item.refresh_from_db()
    assert item.status == ItemStatus.CONFIRMED and "approved_key" in item.self_review


def test_a_manager_stage_falls_back_when_the_owner_has_no_manager(compliance_user, owner, other_owner):
    boss = factories.OwnerFactory(username="mallory")
    factories.OwnerProfileFactory(user=owner, manager=boss)
    factories.OwnerProfileFactory(user=other_owner, manager=None)
    fallback = factories.OwnerFactory(username="frank")
    managed = factories.ApiKeyFactory(owner=owner)
    unmanaged = factories.ApiKeyFactory(owner=other_owner)
    campaign = launched(compliance_user, stages=[{"reviewer": "manager", "fallback": "frank", "duration_days": 7}])
    assert item_of(campaign, managed).reviewer == boss
    item = item_of(campaign, unmanaged)
    assert (item.reviewer, item.reviewer_role) == (fallback, "")
    campaigns.cancel_campaign(campaign, actor=compliance_user, reason="Trying another set-up.")
    campaign = launched(compliance_user, stages=[{"reviewer": "owner", "duration_days": 7},
                                                 {"reviewer": "manager", "duration_days": 7}])
    item = item_of(campaign, unmanaged)
    decisions.record_decision(item, actor=other_owner, **CONFIRM)
    item.refresh_from_db()
    assert (item.stage, item.reviewer_role) == (2, "compliance")  # no manager, no fallback named: compliance
    assert "no active manager" in item.history.first().history_change_reason


def test_a_departing_reviewer_s_items_move_to_the_fallback_at_once(compliance_user, owner, other_owner):
    keys = [factories.ApiKeyFactory(owner=owner) for _ in range(2)]
    campaign = launched(compliance_user, stages=[{"reviewer": "owner", "fallback": "bob", "duration_days": 7}])
    decisions.record_decision(item_of(campaign, keys[0]), actor=owner, **CONFIRM)
    owner.is_active = False
    owner.save()
    pending = item_of(campaign, keys[1])
    assert pending.reviewer == other_owner
    assert pending.history.first().history_change_reason.startswith("reviewer alice departed")
    assert item_of(campaign, keys[0]).reviewer == owner  # decided items keep who decided them
    # A departure recorded on the owner profile (the HR flag) re-routes too, here to compliance.
    carl = factories.OwnerFactory(username="carl")
    profile = factories.OwnerProfileFactory(user=carl)
    key = factories.ApiKeyFactory(owner=carl)
    campaign = launched(compliance_user, stages=[{"reviewer": "owner", "duration_days": 7}])
    profile.is_active = False
    profile.save()
    assert item_of(campaign, key).reviewer_role == "compliance"


def test_a_departed_owner_s_items_go_to_the_fallback_at_launch(compliance_user, owner):
    profile = factories.OwnerProfileFactory(user=owner)
    profile.is_active = False
    profile.save()
    key = factories.ApiKeyFactory(owner=owner)
    campaign = launched(compliance_user, stages=[])
    item = item_of(campaign, key)
    assert item.reviewer_role == "compliance"
    assert item.history.first().reviewer_role == "compliance"  # the launch's record shows the reviewer assigned


def test_an_owner_whose_account_is_inactive_has_items_go_to_the_fallback_at_launch(compliance_user, owner, other_owner):
    key, kept = factories.ApiKeyFactory(owner=owner), factories.ApiKeyFactory(owner=other_owner)
    owner.is_active = False
    owner.save()
    campaign = launched(compliance_user, stages=[])
    assert item_of(campaign, key).reviewer_role == "compliance"
    assert item_of(campaign, kept).reviewer_id == other_owner.pk


def test_the_person_escalated_to_may_decide(compliance_user, owner):
    boss = factories.OwnerFactory(username="mallory")
    factories.OwnerProfileFactory(user=owner, manager=boss)
    key = factories.ApiKeyFactory(owner=owner)
    campaign = launched(compliance_user, stages=[], escalation_days=3)
    item = item_of(campaign, key)
    with pytest.raises(decisions.NotAllowedToDecide):
        decisions.record_decision(item, actor=boss, **CONFIRM)
    targets = reminders.escalation_targets(campaign, timezone.localdate() + datetime.timedelta(days=3),
                                           actor=compliance_user)
    assert list(targets) == [boss.pk]
    decisions.record_decision(item, actor=boss, **CONFIRM)
    item.refresh_from_db()
    assert (item.status, item.decided_by, item.decisions[0]["as"]) == (ItemStatus.CONFIRMED, boss, "escalation")


def test_items_escalated_to_compliance_may_be_decided_by_any_officer(compliance_user, owner):
    key = factories.ApiKeyFactory(owner=owner)
    campaign = launched(compliance_user, stages=[], escalation_days=3)
    reminders.escalation_targets(campaign, timezone.localdate() + datetime.timedelta(days=4), actor=compliance_user)
    item = item_of(campaign, key)
    assert (item.escalated_to, item.escalated_to_role) == (compliance_user, "compliance")
    officer = factories.ComplianceFactory(username="erin")
    decisions.record_decision(item, actor=officer, decision="release", reason="owner_unknown", justification="Nobody")
    item.refresh_from_db()
    assert (item.status, item.reason) == (ItemStatus.RELEASED, "owner_unknown")


def test_escalation_and_reminders_run_per_stage(compliance_user, owner):
    factories.OwnerProfileFactory(user=owner, manager=factories.OwnerFactory(username="mallory"))
    key = factories.ApiKeyFactory(owner=owner, risk_tier="high")
    stages = [{"reviewer": "owner", "duration_days": 7}, {"reviewer": "manager", "duration_days": 7}]
    campaign = launched(compliance_user, stages=stages, escalation_days=2, reminder_days=[1, 5])
    today = timezone.localdate()
    assert reminders.due_reminder_day(campaign, today + datetime.timedelta(days=5)) == 5
    assert reminders.due_reminder_day(campaign, today + datetime.timedelta(days=8)) == 1001
    item = item_of(campaign, key)
    decisions.record_decision(item, actor=owner, **CONFIRM)
    # Stage 2 started on day 7: its items escalate two days after that, not two days after launch.
    assert reminders.escalation_targets(campaign, today + datetime.timedelta(days=3), actor=compliance_user) == {}
    assert reminders.escalation_targets(campaign, today + datetime.timedelta(days=9), actor=compliance_user)
    item.refresh_from_db()
    assert item.stage == 2 and item.escalated_to_role == "compliance"  # the manager has no manager


def test_the_end_of_a_stage_applies_the_default_to_what_it_never_decided(compliance_user, owner, keys):
    stages = [{"reviewer": "owner", "duration_days": 3},
              {"reviewer": "compliance", "duration_days": 4, "risk_tiers": ["high", "critical"]},
              {"reviewer": "manager", "duration_days": 4, "moves_on": ["confirm"]}]
    campaign = launched(compliance_user, stages=stages, default_action=DefaultAction.SUSPEND)
    high = item_of(campaign, keys["high"])
    decisions.record_decision(high, actor=owner, **CONFIRM)
    assert review_stages.end_due_stages(campaign, actor=compliance_user,
                                        today=timezone.localdate() + datetime.timedelta(days=3)) == {}
    settled = review_stages.end_due_stages(campaign, actor=compliance_user,
                                           today=timezone.localdate() + datetime.timedelta(days=4))
    assert settled[DefaultAction.SUSPEND] == len(keys) - 1
    expired = item_of(campaign, keys["low"])
    assert (expired.status, expired.default_action_applied) == (ItemStatus.EXPIRED, DefaultAction.SUSPEND)
    expired.key.refresh_from_db()
    assert expired.key.status == KeyStatus.SUSPENDED
    high.refresh_from_db()
    assert (high.status, high.stage) == (ItemStatus.PENDING, 2)
    campaign.refresh_from_db()
    assert campaign.stages_ended == 1
    # Stage 2 ends with the high item still waiting for compliance's sign-off: kept (the campaign's default).
    review_stages.end_due_stages(campaign, actor=compliance_user, today=timezone.localdate() + datetime.timedelta(days=8))
    high.refresh_from_db()
    assert (high.status, high.decided_by) == (ItemStatus.CONFIRMED, owner)
    assert "without sign-off" in high.history.first().history_change_reason


@pytest.mark.parametrize("missing", [MissingSignoff.KEEP, MissingSignoff.DEFAULT])
def test_a_missing_sign_off_keeps_the_earlier_decision_or_gets_the_default(compliance_user, owner, keys, missing):
    campaign = launched(compliance_user, missing_signoff=missing, default_action=DefaultAction.KEEP_AND_FLAG)
    high = item_of(campaign, keys["high"])
    decisions.record_decision(high, actor=owner, **CONFIRM)
    result = campaigns.close_campaign(campaign, actor=compliance_user)
    high.refresh_from_db()
    high.key.refresh_from_db()
    if missing == MissingSignoff.KEEP:
        assert result["kept"] == 1
        assert (high.status, high.decided_by, high.justification) == (ItemStatus.CONFIRMED, owner, CONFIRM["justification"])
        assert high.key.next_review_on > timezone.localdate() + datetime.timedelta(days=60)
        assert high.kept_without_signoff
        # The campaign report prints every item kept for want of a sign-off, whatever the sample.
        row = next(r for r in evidence.item_rows(campaign) if r["item_id"] == high.pk)
        assert "no_signoff" in evidence.print_reasons(row, None)
        plan = evidence.plan_report(campaign, evidence.plan_rows(campaign), seed="s")
        assert high.pk in [i for chunk in plan.chunks if chunk["section"] == "in_full" for i in chunk["ids"]]
    else:
        assert "kept" not in result
        assert (high.status, high.default_action_applied) == (ItemStatus.EXPIRED, DefaultAction.KEEP_AND_FLAG)
        assert high.key.unattested
    assert len(high.decisions) == 1


def test_bulk_decides_each_item_and_names_every_refusal(compliance_user, owner, other_owner, django_assert_max_num_queries):
    mine = [factories.ApiKeyFactory(owner=owner) for _ in range(500)]
    theirs = factories.ApiKeyFactory(owner=other_owner)
    campaign = launched(compliance_user, stages=[])
    items = {item.key_id: item for item in campaign.items.all()}
    done_before = items[mine[0].pk]
    decisions.record_decision(done_before, actor=owner, **CONFIRM)
    ids = [items[k.pk].pk for k in mine] + [items[theirs.pk].pk, 10**9]

    results = decisions.bulk_decide(ids, actor=owner, decision="release", reason="unused",
                                    justification="Integration retired.")
    by_item = {r.item: r for r in results}
    assert [r.item for r in results] == ids
    assert sum(r.done for r in results) == 499
    assert by_item[done_before.pk].errors == ["This item was already decided (confirmed)."]
    assert by_item[items[theirs.pk].pk].errors == ["No such item."] == by_item[10**9].errors
    released = campaign.items.filter(status=ItemStatus.RELEASED)
    assert released.count() == 499 and set(released.values_list("reason", flat=True)) == {"unused"}
    # The batch signal counts the items actually decided, not the ids sent.
    assert set(released.values_list("batch_size", flat=True)) == {499}


def test_bulk_refuses_a_submission_that_lacks_what_every_item_needs(compliance_user, owner):
    key = factories.ApiKeyFactory(owner=owner)
    campaign = launched(compliance_user, stages=[])
    item = item_of(campaign, key)
    for decision, missing in (({"decision": "confirm"}, "affirm"),
                              ({"decision": "release", "justification": "x"}, "reason"),
                              ({"decision": "reassign", "justification": "x", "to": "nobody"}, "to")):
        with pytest.raises(campaigns.CampaignError) as refused:
            decisions.bulk_decide([item.pk], actor=owner, **decision)
        assert missing in refused.value.errors
    item.refresh_from_db()
    assert item.status == ItemStatus.PENDING


def test_bulk_reassigns_and_refuses_items_under_an_exception_without_reaffirming(compliance_user, owner, other_owner):
    keys = [factories.ApiKeyFactory(owner=owner) for _ in range(3)]
    campaign = launched(compliance_user, stages=[])
    ids = list(campaign.items.order_by("pk").values_list("pk", flat=True))
    results = decisions.bulk_decide(ids, actor=owner, decision="reassign", to=other_owner.username,
                                    justification="Bob's team runs these.")
    assert all(r.done and r.status == ItemStatus.REASSIGNED for r in results)
    assert len(keys) == 3


def test_scope_by_usage_staleness_rotation_exception_and_a_key_list_filter(compliance_user, owner, other_owner):
    old = timezone.now() - datetime.timedelta(days=200)
    unused = factories.ApiKeyFactory(owner=owner, last_used_at=old)
    used = factories.ApiKeyFactory(owner=owner, last_used_at=timezone.now())
    stale = factories.ApiKeyFactory(owner=owner, stale=True, last_used_at=timezone.now())
    rotate = factories.ApiKeyFactory(owner=other_owner, rotation_required=True, last_used_at=timezone.now())
    excepted = factories.ApiKeyFactory(owner=other_owner, risk_tier="high", last_used_at=timezone.now())
    factories.KeyExceptionFactory(key=excepted, status="approved")

    def scope(**fields):
        campaign = campaigns.create_campaign(actor=compliance_user, name="scoped", **fields)
        return set(campaigns.scope_queryset(campaign))

    assert unused in scope(unused_days=90) and used not in scope(unused_days=90)
    assert scope(stale_only=True) == {stale}
    assert scope(rotation_due_only=True) == {rotate}
    assert scope(under_exception_only=True) == {excepted}
    assert scope(key_filter="owner=bob&risk_tier=high") == {excepted}
    assert used in scope(key_filter="owner=alice")
    with pytest.raises(campaigns.CampaignError) as refused:
        campaigns.create_campaign(actor=compliance_user, name="bad", key_filter="risk_tier=huge&colour=red")
    assert len(refused.value.errors["key_filter"]) == 2


def test_a_schedule_s_stages_and_rules_carry_into_the_campaigns_it_launches(compliance_user, keys):
    from attestations.models import CampaignSchedule

    schedule = CampaignSchedule.objects.create(
        name="Quarterly", cadence_days=90, next_launch_on=timezone.localdate(), stages=OWNER_THEN_COMPLIANCE,
        duration_days=12, missing_signoff=MissingSignoff.DEFAULT, separation_of_duties=False, reminder_every_days=4,
        release_grace_days=0, exception_review_cadence_days=21, unused_days=None)
    campaign = campaigns.launch_due_schedule(schedule, actor=compliance_user)
    assert campaign is not None
    campaign.refresh_from_db()
    assert [s["reviewer"] for s in campaign.stages] == ["owner", "compliance"]
    assert (campaign.missing_signoff, campaign.separation_of_duties, campaign.reminder_every_days,
            campaign.release_grace_days, campaign.exception_review_cadence_days) == ("default", False, 4, 0, 21)
    assert campaign.due_on == timezone.localdate() + datetime.timedelta(days=12)
