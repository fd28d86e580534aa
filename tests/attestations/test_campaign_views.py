import datetime

import pytest
from django.urls import reverse
from django.utils import timezone

from attestations.choices import CAMPAIGN_TRANSITIONS, CampaignStatus, Decision, DefaultAction, ItemStatus
from attestations.models import Campaign, Notification
from attestations.services import campaigns, decisions
from attestations.tables import percent_decided
from attestations.views.campaigns import CAMPAIGN_ACTIONS
from keys.choices import Environment, KeyStatus, LifecycleAction, RiskTier
from tests import factories

pytestmark = pytest.mark.django_db

ACTION_SLUGS = ["launch", "close", "cancel"]


@pytest.fixture
def draft(compliance_user, key, other_key):
    return campaigns.create_campaign(actor=compliance_user, name="2026-Q4", default_action=DefaultAction.SUSPEND)


@pytest.fixture
def active(draft, compliance_user):
    campaigns.launch_campaign(draft, actor=compliance_user)
    draft.refresh_from_db()
    return draft


def campaign_url(campaign):
    return reverse("attestations:campaign", args=[campaign.pk])


def action_url(campaign, slug):
    return reverse("attestations:campaign-action", args=[campaign.pk, slug])


def every_campaign_url(campaign):
    """Every campaign page, as (method, url). A new action without a test entry fails here."""
    assert sorted(CAMPAIGN_ACTIONS) == sorted(ACTION_SLUGS) == sorted(CAMPAIGN_TRANSITIONS)
    return [
        ("get", reverse("attestations:campaigns")),
        ("get", reverse("attestations:campaign-create")),
        ("post", reverse("attestations:campaign-create")),
        ("get", campaign_url(campaign)),
    ] + [("post", action_url(campaign, slug)) for slug in ACTION_SLUGS]


def valid_form(**overrides):
    data = {
        "name": "Production keys 2026-Q4",
        "duration_days": "14",
        "reminder_days": "3, 7,12",
        "escalation_days": "10",
        "default_action": DefaultAction.REVOKE,
        "require_justification": "on",
        "review_cadence_days": "90",
    }
    data.update(overrides)
    return data


# Permission matrix


def test_anonymous_is_sent_to_login_everywhere(client, draft):
    for method, url in every_campaign_url(draft):
        response = getattr(client, method)(url)
        assert response.status_code == 302, url
        assert response.url.startswith(reverse("login")), url


def test_owner_gets_403_everywhere_and_changes_nothing(client, owner, draft):
    client.force_login(owner)
    for method, url in every_campaign_url(draft):
        assert getattr(client, method)(url, {"reason": "x", "name": "x"}).status_code == 403, url
    draft.refresh_from_db()
    assert draft.status == CampaignStatus.DRAFT
    assert not draft.items.exists()
    assert Campaign.objects.count() == 1


@pytest.mark.parametrize("role", ["compliance_user", "admin_user"])
def test_compliance_and_admin_open_every_page(client, request, role, active):
    client.force_login(request.getfixturevalue(role))
    for url in (reverse("attestations:campaigns"), reverse("attestations:campaign-create"), campaign_url(active)):
        assert client.get(url).status_code == 200, url


def test_nav_link_only_for_compliance_and_admin(client, owner, compliance_user, admin_user):
    link = f'href="{reverse("attestations:campaigns")}"'
    client.force_login(owner)
    assert link not in client.get(reverse("dashboard")).text
    for user in (compliance_user, admin_user):
        client.force_login(user)
        assert link in client.get(reverse("dashboard")).text


def test_unknown_action_is_404(client, compliance_user, draft):
    client.force_login(compliance_user)
    assert client.post(action_url(draft, "delete")).status_code == 404


def test_actions_need_post(client, compliance_user, draft):
    client.force_login(compliance_user)
    for slug in ACTION_SLUGS:
        assert client.get(action_url(draft, slug)).status_code == 405
    draft.refresh_from_db()
    assert draft.status == CampaignStatus.DRAFT


def test_missing_campaign_is_404(client, compliance_user):
    client.force_login(compliance_user)
    assert client.get(reverse("attestations:campaign", args=[9999])).status_code == 404
    assert client.post(reverse("attestations:campaign-action", args=[9999, "launch"])).status_code == 404


# List


def test_list_shows_progress_and_filters(client, compliance_user, active, owner):
    item = active.items.get(reviewer=owner)
    decisions.record_decision(item, actor=owner, decision=Decision.CONFIRM, justification="still used", affirm=True)
    other = campaigns.create_campaign(actor=compliance_user, name="Staging sweep")
    client.force_login(compliance_user)

    response = client.get(reverse("attestations:campaigns"))
    assert response.status_code == 200
    rows = {row.record.pk: row.record for row in response.context["table"].paginated_rows}
    assert percent_decided(rows[active.pk]) == 50
    assert (rows[active.pk].item_total, rows[active.pk].item_pending) == (2, 1)
    assert percent_decided(rows[other.pk]) == 0
    assert 'value="50"' in response.text

    filtered = client.get(reverse("attestations:campaigns"), {"status": CampaignStatus.DRAFT})
    assert [row.record.pk for row in filtered.context["table"].rows] == [other.pk]
    searched = client.get(reverse("attestations:campaigns"), {"q": "staging"})
    assert [row.record.pk for row in searched.context["table"].rows] == [other.pk]
    assert client.get(reverse("attestations:campaigns"), {"sort": "-progress"}).status_code == 200


def test_list_htmx_returns_only_the_table(client, compliance_user, active):
    client.force_login(compliance_user)
    response = client.get(reverse("attestations:campaigns"), headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert "<html" not in response.text
    assert active.name in response.text


def test_list_query_count_does_not_grow(client, compliance_user, django_assert_max_num_queries):
    owners = [factories.OwnerFactory() for _ in range(3)]
    for n in range(12):
        factories.ApiKeyFactory(owner=owners[n % 3])
    for n in range(8):
        campaign = campaigns.create_campaign(actor=compliance_user, name=f"C{n}")
        if n % 2 == 0:
            campaigns.launch_campaign(campaign, actor=compliance_user)
            campaigns.close_campaign(campaign, actor=compliance_user)
    client.force_login(compliance_user)
    with django_assert_max_num_queries(10):
        assert client.get(reverse("attestations:campaigns")).status_code == 200


# Create


def test_create_makes_a_draft_through_the_service(client, compliance_user, key, other_key):
    customer = key.workflow.customer
    client.force_login(compliance_user)
    response = client.post(reverse("attestations:campaign-create"), valid_form(
        customers=[customer.pk], environments=[Environment.PRODUCTION], risk_tiers=[RiskTier.MEDIUM, RiskTier.HIGH],
        due_for_review_only="on",
    ))
    campaign = Campaign.objects.get()
    assert response.status_code == 302
    assert response.url == campaign_url(campaign)
    assert campaign.status == CampaignStatus.DRAFT
    assert campaign.created_by == compliance_user
    assert list(campaign.customers.all()) == [customer]
    assert campaign.environments == [Environment.PRODUCTION]
    assert sorted(campaign.risk_tiers) == sorted([RiskTier.MEDIUM, RiskTier.HIGH])
    assert campaign.due_for_review_only is True
    assert campaign.reminder_days == [3, 7, 12]
    assert campaign.escalation_days == 10
    assert campaign.default_action == DefaultAction.REVOKE
    assert campaign.history.get().history_user == compliance_user
    assert not campaign.items.exists()
    assert "Created the draft campaign" in client.get(response.url).text


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"name": "   "}, "name"),
        ({"duration_days": "0"}, "duration_days"),
        ({"reminder_days": "3, soon"}, "reminder_days"),
        ({"reminder_days": "3, 20"}, "reminder_days"),
        ({"escalation_days": "30"}, "escalation_days"),
        ({"default_action": "delete"}, "default_action"),
        ({"review_cadence_days": ""}, "review_cadence_days"),
        ({"environments": ["moon"]}, "environments"),
        ({"customers": ["99999"]}, "customers"),
    ],
)
def test_bad_input_shows_field_errors_and_writes_nothing(client, compliance_user, overrides, field):
    client.force_login(compliance_user)
    response = client.post(reverse("attestations:campaign-create"), valid_form(**overrides))
    assert response.status_code == 400
    form = response.context["form"]
    assert field in form.errors
    assert "field-invalid" in response.text
    assert Campaign.objects.count() == 0


def test_scope_preview_counts_keys_by_the_service_rule(client, compliance_user, key, other_key):
    factories.ApiKeyFactory(owner=key.owner, status=KeyStatus.REVOKED, workflow=key.workflow)
    client.force_login(compliance_user)
    url = reverse("attestations:campaign-create")
    response = client.get(url, {"preview": "1"}, headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert "<strong>2</strong>" in response.text
    narrowed = client.get(url, {"preview": "1", "customers": [key.workflow.customer.pk]}, headers={"HX-Request": "true"})
    assert "<strong>1</strong>" in narrowed.text


# Detail


def test_detail_shows_scope_rules_progress_items_and_notifications(client, compliance_user, active, owner, key):
    Notification.objects.create(campaign=active, kind=Notification.Kind.REMINDER, recipient=owner, sequence=3,
                                item_count=1)
    client.force_login(compliance_user)
    response = client.get(campaign_url(active))
    text = response.text
    assert response.status_code == 200
    assert active.name in text
    totals = response.context["progress"]["totals"]
    assert (totals["total"], totals["pending"], totals["decided"]) == (2, 2, 0)
    assert {row["name"] for row in response.context["per_reviewer"]} == {"alice", "bob"}
    assert reverse("keys:detail", args=[key.pk]) in text
    item = active.items.get(key=key)
    assert reverse("attestations:item", args=[item.pk]) in text
    assert "Reminder" in text and "(day 3)" in text
    assert [panel.action.slug for panel in response.context["action_panels"]] == ["close", "cancel"]


def test_detail_offers_actions_by_transition_table(client, compliance_user, draft):
    client.force_login(compliance_user)
    assert [p.action.slug for p in client.get(campaign_url(draft)).context["action_panels"]] == ["launch", "cancel"]
    campaigns.cancel_campaign(draft, actor=compliance_user, reason="wrong scope")
    response = client.get(campaign_url(draft))
    assert response.context["action_panels"] == []
    assert action_url(draft, "launch") not in response.text


def test_detail_items_filter_by_status_reviewer_customer(client, compliance_user, active, owner, other_owner, key):
    item = active.items.get(reviewer=owner)
    decisions.record_decision(item, actor=owner, decision=Decision.RELEASE, reason="unused", justification="not needed")
    client.force_login(compliance_user)
    url = campaign_url(active)

    def listed(params):
        return [row.record.pk for row in client.get(url, params).context["table"].rows]

    assert listed({"status": ItemStatus.RELEASED}) == [item.pk]
    assert listed({"reviewer": other_owner.username}) == [active.items.get(reviewer=other_owner).pk]
    assert listed({"customer": key.workflow.customer.pk}) == [item.pk]
    assert listed({"reviewer": "99999"}) == []
    partial = client.get(url, {"status": ItemStatus.RELEASED}, headers={"HX-Request": "true", "HX-Target": "campaign-items"})
    assert "<html" not in partial.text and key.label in partial.text


def test_detail_query_count_does_not_grow_with_items(client, compliance_user, django_assert_max_num_queries):
    owners = [factories.OwnerFactory() for _ in range(6)]
    for n in range(60):
        factories.ApiKeyFactory(owner=owners[n % 6])
    campaign = campaigns.create_campaign(actor=compliance_user, name="big")
    campaigns.launch_campaign(campaign, actor=compliance_user)
    for owner in owners:
        Notification.objects.create(campaign=campaign, kind=Notification.Kind.REMINDER, recipient=owner, sequence=3,
                                    item_count=10)
    client.force_login(compliance_user)
    with django_assert_max_num_queries(25):
        assert client.get(campaign_url(campaign)).status_code == 200


# Actions


@pytest.mark.parametrize("role", ["compliance_user", "admin_user"])
def test_launch_close_through_the_page(client, request, role, draft, owner, other_owner, key, other_key):
    user = request.getfixturevalue(role)
    client.force_login(user)
    response = client.post(action_url(draft, "launch"))
    assert response.status_code == 302
    assert response.url == campaign_url(draft)
    draft.refresh_from_db()
    assert draft.status == CampaignStatus.ACTIVE
    assert draft.launched_by == user
    assert draft.items.count() == 2
    assert "Launched 2026-Q4: 2 items" in client.get(response.url).text

    item = draft.items.get(key=key)
    decisions.record_decision(item, actor=owner, decision=Decision.CONFIRM, justification="in use", affirm=True)
    response = client.post(action_url(draft, "close"))
    assert response.status_code == 302
    draft.refresh_from_db()
    assert draft.status == CampaignStatus.CLOSED
    assert draft.closed_by == user
    other_key.refresh_from_db()
    assert other_key.status == KeyStatus.SUSPENDED
    assert other_key.events.filter(action=LifecycleAction.SUSPEND, actor=user).exists()
    key.refresh_from_db()
    assert key.status == KeyStatus.ACTIVE
    assert "1 undecided item" in client.get(response.url).text


def test_cancel_needs_a_reason(client, compliance_user, draft):
    client.force_login(compliance_user)
    response = client.post(action_url(draft, "cancel"), {"reason": "  "})
    assert response.status_code == 400
    assert response.context["refused_action"].slug == "cancel"
    assert [p.action.slug for p in response.context["action_panels"] if p.open] == ["cancel"]
    assert "field-invalid" in response.text
    # The page shown at the step's URL still filters its items at the campaign's.
    assert f'action="{campaign_url(draft)}" class="filter-bar"' in response.text
    draft.refresh_from_db()
    assert draft.status == CampaignStatus.DRAFT

    response = client.post(action_url(draft, "cancel"), {"reason": "Scope was wrong"})
    assert response.status_code == 302
    draft.refresh_from_db()
    assert draft.status == CampaignStatus.CANCELLED
    assert draft.history.first().history_change_reason == "cancelled: Scope was wrong"


def test_launch_of_empty_scope_shows_the_service_message(client, compliance_user):
    campaign = campaigns.create_campaign(actor=compliance_user, name="Nothing", environments=[Environment.STAGING])
    client.force_login(compliance_user)
    response = client.post(action_url(campaign, "launch"))
    assert response.status_code == 400
    assert "No key is in this campaign&#x27;s scope: nothing to attest." in response.text
    assert "Launch was refused" in response.text
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.DRAFT


def test_action_not_allowed_from_status_is_refused_by_the_service(client, compliance_user, draft):
    client.force_login(compliance_user)
    response = client.post(action_url(draft, "close"))
    assert response.status_code == 400
    assert "A draft campaign cannot be closed." in response.text
    draft.refresh_from_db()
    assert draft.status == CampaignStatus.DRAFT


def test_overdue_counts_on_detail(client, compliance_user, active):
    active.due_on = timezone.localdate() - datetime.timedelta(days=1)
    active.save()
    client.force_login(compliance_user)
    response = client.get(campaign_url(active))
    assert response.context["progress"]["totals"]["overdue"] == 2
    assert all(row["overdue"] == row["pending"] for row in response.context["per_customer"])
