"""Review stages in the portal: the campaign form's stages and new scope and rule fields, the key list's link to a
campaign, the campaign page's stages, the item page's earlier decisions and the inbox's bulk decisions."""

import datetime
from urllib.parse import quote

import pytest
from django.urls import reverse

from attestations.choices import Decision, DefaultAction, ItemStatus, MissingSignoff, ReasonCode
from attestations.models import AttestationItem, Campaign
from attestations.services import campaigns, decisions
from keys.choices import RiskTier
from tests import factories

pytestmark = pytest.mark.django_db

CREATE = reverse("attestations:campaign-create")
INBOX = reverse("attestations:inbox")


def valid_form(**overrides):
    data = {
        "name": "Two-stage review",
        "duration_days": "14",
        "reminder_days": "3, 7",
        "default_action": DefaultAction.SUSPEND,
        "require_justification": "on",
        "review_cadence_days": "90",
    }
    data.update(overrides)
    return data


TWO_STAGES = {
    "stage1_reviewer": "owner",
    "stage2_reviewer": "compliance",
    "stage2_duration_days": "7",
    "stage2_risk_tiers": [RiskTier.HIGH, RiskTier.CRITICAL],
    "stage2_moves_on": [Decision.CONFIRM],
    "reminder_every_days": "5",
    "release_grace_days": "0",
    "exception_review_cadence_days": "20",
    "missing_signoff": MissingSignoff.DEFAULT,
    "separation_of_duties": "on",
}


def launch_two_stage(actor, **fields):
    campaign = campaigns.create_campaign(
        actor=actor, name="Two stages", stages=[
            {"reviewer": "owner", "duration_days": 14},
            {"reviewer": "compliance", "duration_days": 7, "risk_tiers": ["high", "critical"], "moves_on": ["confirm"]},
        ], **fields)
    campaigns.launch_campaign(campaign, actor=actor)
    campaign.refresh_from_db()
    return campaign


# The campaign form


def test_two_stage_campaign_through_the_form(client, compliance_user, key):
    client.force_login(compliance_user)
    page = client.get(CREATE).text
    assert "<legend>Stage 1</legend>" in page and "No stage 2" in page and "No stage 3" in page
    assert '<label for="id_stage2_fallback_user">' in page

    response = client.post(CREATE, valid_form(**TWO_STAGES, unused_days="30", stale_only="on"))
    assert response.status_code == 302
    campaign = Campaign.objects.get()
    assert campaign.stages == [
        {"reviewer": "owner", "fallback": "compliance", "duration_days": 14, "risk_tiers": [], "moves_on": []},
        {"reviewer": "compliance", "fallback": "compliance", "duration_days": 7,
         "risk_tiers": ["high", "critical"], "moves_on": ["confirm"]},
    ]
    assert campaign.duration_days == 21
    assert (campaign.reminder_every_days, campaign.release_grace_days, campaign.exception_review_cadence_days) == (
        5, 0, 20)
    assert campaign.missing_signoff == MissingSignoff.DEFAULT
    assert campaign.separation_of_duties is True
    assert (campaign.unused_days, campaign.stale_only, campaign.rotation_due_only) == (30, True, False)


def test_single_owner_stage_sends_no_stages(client, compliance_user, key):
    client.force_login(compliance_user)
    client.post(CREATE, valid_form(stage1_reviewer="owner", stage2_reviewer="", stage2_duration_days="7"))
    campaign = Campaign.objects.get()
    assert campaign.stages == []
    assert campaign.duration_days == 14
    assert campaign.separation_of_duties is False  # the box was not ticked


def test_single_stage_of_a_named_user_is_written_down(client, compliance_user, admin_user, key):
    client.force_login(compliance_user)
    response = client.post(CREATE, valid_form(stage1_reviewer="user", stage1_reviewer_user=admin_user.username))
    assert response.status_code == 302
    assert Campaign.objects.get().stages == [{"reviewer": admin_user.username, "fallback": "compliance",
                                              "duration_days": 14, "risk_tiers": [], "moves_on": []}]


def test_unknown_stage_reviewer_is_shown_at_the_stages_and_nothing_is_written(client, compliance_user, key):
    client.force_login(compliance_user)
    response = client.post(CREATE, valid_form(
        **TWO_STAGES | {"stage2_reviewer": "user", "stage2_reviewer_user": "nobody-here"}))
    assert response.status_code == 400
    assert response.context["form"].errors["stages"] == ["Stage 2 reviewer: no user named 'nobody-here'."]
    stages_fieldset = response.text.split('id="campaign-stages"', 1)[1].split("</fieldset>", 1)[0]
    assert "no user named" in stages_fieldset
    assert Campaign.objects.count() == 0


@pytest.mark.parametrize(("overrides", "field"), [
    ({"stage1_reviewer": "user"}, "stage1_reviewer_user"),
    ({"stage2_reviewer": "manager", "stage2_duration_days": ""}, "stage2_duration_days"),
    ({"stage3_reviewer": "compliance", "stage3_duration_days": "3"}, "stage3_reviewer"),
])
def test_incomplete_stages_are_field_errors(client, compliance_user, overrides, field):
    client.force_login(compliance_user)
    response = client.post(CREATE, valid_form(**overrides))
    assert response.status_code == 400
    assert field in response.context["form"].errors
    assert Campaign.objects.count() == 0


# Key list → campaign


def test_key_list_link_carries_the_filter_and_the_form_prefills_it(client, compliance_user, owner, key):
    high = factories.ApiKeyFactory(owner=owner, risk_tier=RiskTier.HIGH)
    client.force_login(compliance_user)
    response = client.get(reverse("keys:list"), {"risk_tier": "high", "owner": owner.username, "page": "1",
                                                 "sort": "label"})
    query = f"risk_tier=high&owner={owner.username}"
    link = f'{CREATE}?key_filter={quote(query, safe="")}'
    assert f'href="{link}"'.replace("&", "&amp;") in response.text

    form_page = client.get(link)
    assert f'value="{query}"'.replace("&", "&amp;") in form_page.text
    assert "readonly" in form_page.text
    preview = client.get(CREATE, {"preview": "1", "key_filter": query}, headers={"HX-Request": "true"})
    assert "<strong>1</strong>" in preview.text

    client.post(CREATE, valid_form(key_filter=query))
    campaign = Campaign.objects.get()
    assert campaign.key_filter == query
    assert list(campaigns.scope_queryset(campaign)) == [high]


def test_owner_sees_no_campaign_link_on_the_key_list(client, owner, key):
    client.force_login(owner)
    assert "Review these keys in a campaign" not in client.get(reverse("keys:list")).text


# The schedule admin

SCHEDULE = {
    "name": "Quarterly two-stage review", "is_active": "on", "cadence_days": 90, "next_launch_on": "2026-12-01",
    "environments": "[]", "risk_tiers": "[]", "duration_days": 14, "reminder_days": "[3]", "default_action": "suspend",
    "require_justification": "on", "review_cadence_days": 90, "exception_review_cadence_days": 21,
    "reminder_every_days": 4, "release_grace_days": 5, "missing_signoff": "default", "unused_days": 60,
    "stale_only": "on", "key_filter": "risk_tier=high",
}


def test_schedule_admin_saves_rules_and_stages(client, admin_user):
    from attestations.models import CampaignSchedule

    client.force_login(admin_user)
    stages = ('[{"reviewer": "owner", "duration_days": 10}, {"reviewer": "compliance", "duration_days": 5, '
              '"risk_tiers": ["critical"], "moves_on": ["confirm"]}]')
    response = client.post(reverse("admin:attestations_campaignschedule_add"), SCHEDULE | {"stages": stages})
    assert response.status_code == 302, response.content.decode()[:3000]
    schedule = CampaignSchedule.objects.get()
    assert schedule.stages[1] == {"reviewer": "compliance", "fallback": "compliance", "duration_days": 5,
                                  "risk_tiers": ["critical"], "moves_on": ["confirm"]}
    assert schedule.duration_days == 15
    assert (schedule.reminder_every_days, schedule.release_grace_days, schedule.exception_review_cadence_days) == (
        4, 5, 21)
    assert schedule.missing_signoff == "default" and schedule.separation_of_duties is False
    assert (schedule.unused_days, schedule.stale_only, schedule.key_filter) == (60, True, "risk_tier=high")


@pytest.mark.parametrize(("stages", "message"), [
    ('[{"reviewer": "nobody-here", "duration_days": 3}]', "Stage 1 reviewer: no user named"),
    ('[{"reviewer": "owner", "duration_days": 0}]', "its duration is a whole number of days"),
    ('{"reviewer": "owner"}', "Give the stages as a list."),
    ("[{", "Enter a valid JSON."),
])
def test_schedule_admin_refuses_bad_stages_with_a_field_error(client, admin_user, stages, message):
    from attestations.models import CampaignSchedule

    client.force_login(admin_user)
    response = client.post(reverse("admin:attestations_campaignschedule_add"), SCHEDULE | {"stages": stages})
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert any(message in error for error in errors["stages"]), errors
    assert "__all__" not in errors  # said once, beside the field
    assert message in response.content.decode()
    assert not CampaignSchedule.objects.exists()


def test_schedule_admin_takes_an_empty_stages_box_as_no_stages(client, admin_user):
    from attestations.models import CampaignSchedule

    client.force_login(admin_user)
    response = client.post(reverse("admin:attestations_campaignschedule_add"), SCHEDULE | {"stages": ""})
    assert response.status_code == 302
    assert CampaignSchedule.objects.get().stages == []


# The campaign page, the item page and the inbox


@pytest.fixture
def two_stage(compliance_user, owner):
    factories.ApiKeyFactory(owner=owner, risk_tier=RiskTier.HIGH, label="Billing export")
    factories.ApiKeyFactory(owner=owner, risk_tier=RiskTier.LOW, label="Status page")
    return launch_two_stage(compliance_user)


def test_campaign_page_shows_stages_windows_and_pending_per_stage(client, compliance_user, owner, two_stage):
    high = two_stage.items.get(key__risk_tier=RiskTier.HIGH)
    decisions.record_decision(high, actor=owner, decision=Decision.CONFIRM, justification="in use", affirm=True)
    client.force_login(compliance_user)
    response = client.get(reverse("attestations:campaign", args=[two_stage.pk]))
    assert response.status_code == 200
    rows = response.context["stages"]
    assert [(row["stage"].number, row["pending"]) for row in rows] == [(1, 1), (2, 1)]
    assert rows[1]["window"][1] - rows[0]["window"][0] == datetime.timedelta(days=21)
    assert "Stage 2: Compliance, 7 day(s), high, critical keys; confirms of stage 1 move on" in response.text
    at_stage_2 = client.get(reverse("attestations:campaign", args=[two_stage.pk]), {"stage": "2"})
    assert [row.record.pk for row in at_stage_2.context["table"].rows] == [high.pk]


def test_item_page_shows_earlier_decisions_to_the_later_stage(client, compliance_user, owner, two_stage):
    item = two_stage.items.get(key__risk_tier=RiskTier.HIGH)
    decisions.record_decision(item, actor=owner, decision=Decision.CONFIRM, justification="nightly billing export",
                              affirm=True)
    client.force_login(compliance_user)
    response = client.get(reverse("attestations:item", args=[item.pk]))
    text = response.text
    assert "Stage 2 of 2" in text
    trail = text.split('id="earlier-decisions"', 1)[1].split("</section>", 1)[0]
    assert "Stage 1: Confirm</strong> by alice" in trail and "as reviewer" in trail
    assert "nightly billing export" in trail and "They saw: last used" in trail
    offered = [panel.action.slug for panel in response.context["row"].panels]
    assert "reassign" not in offered and "confirm" in offered and "delegate" in offered
    inbox = client.get(INBOX)
    assert "Decided so far" in inbox.text and "Stage 2 of 2" in inbox.text


def test_inbox_bulk_release_with_a_reason_names_the_refused_item(client, owner, compliance_user):
    keys = [factories.ApiKeyFactory(owner=owner, label=f"Key {n}") for n in range(3)]
    campaign = campaigns.create_campaign(actor=compliance_user, name="Sweep", release_grace_days=0)
    campaigns.launch_campaign(campaign, actor=compliance_user)
    items = list(campaign.items.order_by("pk"))
    decisions.record_decision(items[0], actor=owner, decision=Decision.CONFIRM, justification="ok", affirm=True)
    client.force_login(owner)
    assert 'action="' + reverse("attestations:bulk-decide") + '"' in client.get(INBOX).text

    response = client.post(reverse("attestations:bulk-decide"), {
        "items": [i.pk for i in items], "decision": "release", "reason": ReasonCode.REPLACED,
        "justification": "moved to the new gateway"}, follow=True)
    messages = [str(m) for m in response.context["messages"]]
    assert messages[0] == "Released 2 items."
    assert messages[1].startswith(f"{keys[0].label} ({keys[0].prefix}…) was not released: This item was already decided")
    released = AttestationItem.objects.filter(pk__in=[items[1].pk, items[2].pk])
    assert set(released.values_list("status", "reason")) == {(ItemStatus.RELEASED, ReasonCode.REPLACED)}
    assert all(i.decisions[-1]["reason"] == ReasonCode.REPLACED for i in released)


def test_inbox_bulk_release_without_a_reason_is_refused_whole(client, owner, compliance_user):
    factories.ApiKeyFactory(owner=owner)
    campaign = campaigns.create_campaign(actor=compliance_user, name="Sweep")
    campaigns.launch_campaign(campaign, actor=compliance_user)
    client.force_login(owner)
    response = client.post(reverse("attestations:bulk-decide"), {
        "items": list(campaign.items.values_list("pk", flat=True)), "decision": "release",
        "justification": "gone"}, follow=True)
    assert any("Choose why the key is released" in str(m) for m in response.context["messages"])
    assert not AttestationItem.objects.exclude(status=ItemStatus.PENDING).exists()
