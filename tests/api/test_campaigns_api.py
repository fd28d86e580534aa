import datetime

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.authtoken.models import Token

from attestations.api.urls import router
from attestations.choices import CampaignStatus, DefaultAction, ItemStatus
from attestations.models import AttestationItem, Campaign
from attestations.services import campaigns, decisions
from keys.choices import Environment, KeyStatus
from tests import factories

from . import client_for, permission_matrix_tests

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(owner, other_owner, compliance_user, admin_user, auditor_user, key, other_key):
    campaign = campaigns.create_campaign(actor=compliance_user, name="2026-Q4", default_action=DefaultAction.SUSPEND)
    campaigns.launch_campaign(campaign, actor=compliance_user)
    return {
        "anon": None, "owner": owner, "other": other_owner, "compliance": compliance_user, "admin": admin_user,
        "auditor": auditor_user,
        "campaign": campaign, "key": key, "other_key": other_key,
        "item": campaign.items.get(key=key), "other_item": campaign.items.get(key=other_key),
    }


def decide_url(item):
    return reverse("attestation-decide", args=[item.pk])


CONFIRM = {"decision": "confirm", "justification": "still feeds the nightly export", "affirm": True}


# Permission matrix: url name -> method -> role -> status. Allowed POSTs with an empty body reach
# validation (400), or are idempotent service calls on the launched campaign (200).

MATRIX = {
    "campaign-list": {
        "get": {"anon": 403, "owner": 403, "other": 403, "compliance": 200, "admin": 200, "auditor": 200},
        "post": {"anon": 403, "owner": 403, "other": 403, "compliance": 400, "admin": 400, "auditor": 403},
    },
    "campaign-detail": {
        "get": {"anon": 403, "owner": 403, "other": 403, "compliance": 200, "admin": 200, "auditor": 200},
    },
    "campaign-launch": {
        "post": {"anon": 403, "owner": 403, "other": 403, "compliance": 200, "admin": 200, "auditor": 403},
    },
    "campaign-close": {
        "post": {"anon": 403, "owner": 403, "other": 403, "compliance": 200, "admin": 200, "auditor": 403},
    },
    "attestation-list": {
        "get": {"anon": 403, "owner": 200, "other": 200, "compliance": 200, "admin": 200, "auditor": 200},
    },
    "attestation-detail": {
        "get": {"anon": 403, "owner": 200, "other": 404, "compliance": 200, "admin": 200, "auditor": 200},
    },
    "attestation-decide": {
        "post": {"anon": 403, "owner": 400, "other": 404, "compliance": 403, "admin": 403, "auditor": 403},
    },
    "attestation-bulk-decide": {
        "post": {"anon": 403, "owner": 400, "other": 400, "compliance": 400, "admin": 400, "auditor": 403},
    },
}
NO_ID = {"attestation-bulk-decide"}


def matrix_url(name, world):
    obj = world["campaign"] if name.startswith("campaign") else world["item"]
    return reverse(name) if name.endswith("-list") or name in NO_ID else reverse(name, args=[obj.pk])


def item_still_pending(world, name):
    world["item"].refresh_from_db()
    if name != "campaign-close":
        assert world["item"].status == ItemStatus.PENDING


test_matrix_covers_every_route, test_permission_matrix = permission_matrix_tests(
    router, MATRIX, matrix_url, unchanged=item_still_pending)


# Campaigns


def test_compliance_creates_campaign_with_scope_and_rules(compliance_user, key, other_key):
    payload = {
        "name": "Production keys 2026-Q4", "customers": [key.workflow.customer_id], "workflows": [key.workflow_id],
        "environments": ["production"], "risk_tiers": ["medium", "high"], "due_for_review_only": False,
        "duration_days": 21, "reminder_days": [14, 3, 7], "escalation_days": 18, "default_action": "revoke",
        "require_justification": False, "review_cadence_days": 180,
    }
    response = client_for(compliance_user).post(reverse("campaign-list"), payload, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "draft"
    assert body["created_by"] == compliance_user.username
    assert body["reminder_days"] == [3, 7, 14]
    assert body["progress"]["totals"]["total"] == 0
    campaign = Campaign.objects.get(pk=body["id"])
    assert list(campaign.customers.all()) == [key.workflow.customer]
    assert (campaign.default_action, campaign.duration_days, campaign.review_cadence_days) == ("revoke", 21, 180)
    assert campaign.history.get().history_user == compliance_user


@pytest.mark.parametrize(
    ("payload", "fields"),
    [
        ({}, {"name"}),
        ({"name": "  "}, {"non_field_errors", "name"}),
        ({"name": "x", "environments": ["moon"]}, {"environments"}),
        ({"name": "x", "customers": [999999]}, {"customers"}),
        ({"name": "x", "duration_days": 0}, {"duration_days"}),
        ({"name": "x", "duration_days": 10, "reminder_days": [3, 12]}, {"reminder_days"}),
        ({"name": "x", "escalation_days": 30}, {"escalation_days"}),
        ({"name": "x", "default_action": "shrug"}, {"default_action"}),
    ],
)
def test_campaign_validation_errors_per_field(compliance_user, payload, fields):
    response = client_for(compliance_user).post(reverse("campaign-list"), payload, format="json")
    assert response.status_code == 400
    assert set(response.json()) & fields, response.json()
    assert not Campaign.objects.exists()


def test_campaign_list_and_status_filter(world, compliance_user):
    draft = campaigns.create_campaign(actor=compliance_user, name="Next")
    client = client_for(compliance_user)
    body = client.get(reverse("campaign-list")).json()
    assert {c["id"] for c in body["results"]} == {draft.pk, world["campaign"].pk}
    active = client.get(reverse("campaign-list"), {"status": "active"}).json()["results"]
    assert [(c["id"], c["item_count"], c["pending_count"]) for c in active] == [(world["campaign"].pk, 2, 2)]


def test_campaign_detail_has_progress(world, compliance_user, owner):
    decisions.record_decision(world["item"], actor=owner, **CONFIRM)
    body = client_for(compliance_user).get(reverse("campaign-detail", args=[world["campaign"].pk])).json()
    assert body["status"] == "active"
    totals = body["progress"]["totals"]
    assert (totals["total"], totals["decided"], totals["pending"], totals["percent"]) == (2, 1, 1, 50)
    assert body["progress"]["by_status"] == {"confirmed": 1, "pending": 1}
    assert {row["reviewer"] for row in body["progress"]["per_reviewer"]} == {"alice", "bob"}


def test_launch_and_close_through_the_api(compliance_user, owner, other_owner, key, other_key):
    client = client_for(compliance_user)
    created = client.post(reverse("campaign-list"), {"name": "Q1", "default_action": "suspend"}, format="json").json()
    response = client.post(reverse("campaign-launch", args=[created["id"]]))
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["status"], body["items_created"]) == ("active", 2)
    assert body["progress"]["totals"]["pending"] == 2
    assert body["due_on"] == (timezone.localdate() + datetime.timedelta(days=14)).isoformat()
    again = client.post(reverse("campaign-launch", args=[created["id"]])).json()
    assert again["items_created"] == 0
    assert AttestationItem.objects.count() == 2

    item = AttestationItem.objects.get(key=key)
    assert client_for(owner).post(decide_url(item), CONFIRM, format="json").status_code == 200
    response = client.post(reverse("campaign-close", args=[created["id"]]))
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "closed"
    assert body["default_action_applied"] == {"suspend": 1, "revoke": 0, "keep_and_flag": 0}
    other_key.refresh_from_db()
    assert other_key.status == KeyStatus.SUSPENDED
    again = client.post(reverse("campaign-close", args=[created["id"]])).json()
    assert again["default_action_applied"] == {"suspend": 0, "revoke": 0, "keep_and_flag": 0}


def test_launch_with_empty_scope_and_close_of_draft_are_400(compliance_user, key):
    draft = campaigns.create_campaign(actor=compliance_user, name="Empty", environments=[Environment.STAGING])
    client = client_for(compliance_user)
    response = client.post(reverse("campaign-launch", args=[draft.pk]))
    assert response.status_code == 400
    assert response.json() == {"non_field_errors": ["No key is in this campaign's scope: nothing to attest."]}
    response = client.post(reverse("campaign-close", args=[draft.pk]))
    assert response.status_code == 400
    assert response.json() == {"non_field_errors": ["A draft campaign cannot be closed."]}
    draft.refresh_from_db()
    assert draft.status == CampaignStatus.DRAFT


def test_owner_cannot_touch_campaigns(world, owner):
    client = client_for(owner)
    assert client.post(reverse("campaign-list"), {"name": "mine"}, format="json").status_code == 403
    assert client.post(reverse("campaign-close", args=[world["campaign"].pk])).status_code == 403
    world["campaign"].refresh_from_db()
    assert world["campaign"].status == CampaignStatus.ACTIVE
    assert Campaign.objects.count() == 1


# Attestation items


def test_owner_lists_own_items_with_key_summary(world, owner):
    body = client_for(owner).get(reverse("attestation-list")).json()
    assert [row["id"] for row in body["results"]] == [world["item"].pk]
    row = body["results"][0]
    key = world["key"]
    assert row["status"] == "pending"
    assert row["campaign"] == world["campaign"].pk
    assert row["campaign_name"] == "2026-Q4"
    assert row["reviewer"] == owner.username
    assert row["recommendation"] == "release_never_used"
    assert row["recommendation_text"].startswith("Never used")
    summary = row["key"]
    assert (summary["label"], summary["prefix"], summary["customer"], summary["workflow"]) == (
        key.label, key.prefix, key.workflow.customer.name, key.workflow.name
    )
    assert (summary["purpose"], summary["environment"], summary["last_used_at"]) == (
        key.workflow.purpose, key.workflow.environment, None
    )


def test_compliance_sees_all_items_and_filters(world, compliance_user, owner, other_owner):
    client = client_for(compliance_user)

    def ids(**params):
        response = client.get(reverse("attestation-list"), params)
        assert response.status_code == 200, response.content
        return {row["id"] for row in response.json()["results"]}

    assert ids() == {world["item"].pk, world["other_item"].pk}
    assert ids(reviewer=other_owner.username) == {world["other_item"].pk}
    decisions.record_decision(world["item"], actor=owner, **CONFIRM)
    assert ids(status="confirmed") == {world["item"].pk}
    assert ids(campaign=world["campaign"].pk) == {world["item"].pk, world["other_item"].pk}
    assert ids(campaign=world["campaign"].pk + 1) == set()


def test_item_list_query_count_does_not_grow(world, owner, django_assert_max_num_queries):
    for _ in range(5):
        factories.ApiKeyFactory(owner=owner)
    campaign = campaigns.create_campaign(actor=world["compliance"], name="more")
    campaigns.launch_campaign(campaign, actor=world["compliance"])
    client = client_for(owner)
    with django_assert_max_num_queries(6):
        body = client.get(reverse("attestation-list")).json()
    assert len(body["results"]) == 6 and body["next"] is None


def test_owner_confirms_over_token_and_second_decision_is_409(world, owner):
    token = Token.objects.create(user=owner)
    client = client_for()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    response = client.post(decide_url(world["item"]), CONFIRM, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["status"], body["decided_by"], body["affirmed"]) == ("confirmed", owner.username, True)
    key = world["key"]
    key.refresh_from_db()
    assert key.next_review_on == timezone.localdate() + datetime.timedelta(days=90)
    again = client.post(decide_url(world["item"]), {"decision": "release", "justification": "changed my mind"},
                        format="json")
    assert again.status_code == 409
    assert again.json() == {"detail": "This item was already decided (confirmed)."}
    key.refresh_from_db()
    assert key.status == KeyStatus.ACTIVE


def test_release_suspends_the_key_for_its_grace_window(world, owner):
    response = client_for(owner).post(decide_url(world["item"]),
                                      {"decision": "release", "reason": "unused", "justification": "unused"},
                                      format="json")
    assert response.status_code == 200
    assert response.json()["status"] == "released"
    world["key"].refresh_from_db()
    assert world["key"].status == KeyStatus.SUSPENDED and world["key"].releases.get().status == "watching"


def test_reassign_names_the_new_owner(world, owner, other_owner):
    response = client_for(owner).post(
        decide_url(world["item"]), {"decision": "reassign", "justification": "bob's team runs it", "to": "bob"},
        format="json",
    )
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["reassigned_to"]) == ("reassigned", other_owner.username)


def test_delegate_lets_the_delegate_decide(world, owner, other_owner):
    response = client_for(owner).post(decide_url(world["item"]), {"decision": "delegate", "to": "bob"}, format="json")
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["delegate"]) == ("pending", "bob")
    bob = client_for(other_owner)
    assert world["item"].pk in {row["id"] for row in bob.get(reverse("attestation-list")).json()["results"]}
    assert bob.post(decide_url(world["item"]), CONFIRM, format="json").status_code == 200


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "decision"),
        ({"decision": "ignore"}, "decision"),
        ({"decision": "confirm", "justification": "yes"}, "affirm"),
        ({"decision": "confirm", "affirm": True}, "justification"),
        ({"decision": "release"}, "justification"),
        ({"decision": "reassign", "justification": "not mine", "to": "nobody"}, "to"),
        ({"decision": "reassign", "justification": "not mine"}, "to"),
        ({"decision": "delegate", "to": "alice"}, "to"),
        ({"decision": "confirm", "affirm": "perhaps", "justification": "x"}, "affirm"),
    ],
)
def test_decision_validation_errors_per_field(world, owner, payload, field):
    response = client_for(owner).post(decide_url(world["item"]), payload, format="json")
    assert response.status_code == 400
    assert field in response.json(), response.json()
    world["item"].refresh_from_db()
    assert world["item"].status == ItemStatus.PENDING


def test_non_reviewer_can_neither_see_nor_decide(world, other_owner):
    client = client_for(other_owner)
    assert world["item"].pk not in {row["id"] for row in client.get(reverse("attestation-list")).json()["results"]}
    assert client.get(reverse("attestation-detail", args=[world["item"].pk])).status_code == 404
    for payload in (CONFIRM, {"decision": "release", "justification": "mine now"}):
        response = client.post(decide_url(world["item"]), payload, format="json")
        assert response.status_code == 404
    world["item"].refresh_from_db()
    assert world["item"].status == ItemStatus.PENDING
    world["key"].refresh_from_db()
    assert world["key"].status == KeyStatus.ACTIVE


def test_compliance_sees_but_cannot_decide(world, compliance_user):
    client = client_for(compliance_user)
    assert client.get(reverse("attestation-detail", args=[world["item"].pk])).status_code == 200
    response = client.post(decide_url(world["item"]), CONFIRM, format="json")
    assert response.status_code == 403
    assert response.json() == {"detail": "Only the assigned reviewer or their delegate can decide this item."}
    world["item"].refresh_from_db()
    assert world["item"].status == ItemStatus.PENDING


def test_item_expired_at_close_is_409(world, owner, compliance_user):
    campaigns.close_campaign(world["campaign"], actor=compliance_user)
    response = client_for(owner).post(decide_url(world["item"]), CONFIRM, format="json")
    assert response.status_code == 409
    assert "expired" in response.json()["detail"]


def test_decision_on_cancelled_campaign_is_400(world, owner, compliance_user):
    campaigns.cancel_campaign(world["campaign"], actor=compliance_user, reason="wrong scope")
    response = client_for(owner).post(decide_url(world["item"]), CONFIRM, format="json")
    assert response.status_code == 400
    assert response.json() == {"non_field_errors": ["The campaign is cancelled: decisions are closed."]}
