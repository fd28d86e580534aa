"""The API contract of review stages, reason codes and bulk decisions (DESIGN.md, "Stages in the API")."""

import pytest
from django.urls import reverse

from attestations.models import AttestationItem, Campaign
from tests import factories

from . import client_for

pytestmark = pytest.mark.django_db

STAGES = [
    {"reviewer": "owner", "duration_days": 10},
    {"reviewer": "compliance", "duration_days": 5, "risk_tiers": ["high", "critical"], "moves_on": ["confirm"]},
]
CONFIRM = {"decision": "confirm", "justification": "Still feeds the nightly export.", "affirm": True}


def create(client, **fields):
    return client.post(reverse("campaign-list"), {"name": "Staged 2026-Q4", **fields}, format="json")


@pytest.fixture
def staged(compliance_user, owner):
    keys = [factories.ApiKeyFactory(owner=owner, risk_tier=tier) for tier in ("low", "high", "critical")]
    client = client_for(compliance_user)
    response = create(client, stages=STAGES)
    assert response.status_code == 201, response.content
    launched = client.post(reverse("campaign-launch", args=[response.json()["id"]]), format="json")
    assert launched.status_code == 200, launched.content
    campaign = Campaign.objects.get(pk=response.json()["id"])
    return campaign, {k.risk_tier: campaign.items.get(key=k) for k in keys}


def test_a_campaign_is_created_with_stages_and_every_rule(compliance_user):
    response = create(client_for(compliance_user), stages=STAGES, missing_signoff="default",
                      separation_of_duties=False, reminder_days=[2], reminder_every_days=3, release_grace_days=0,
                      exception_review_cadence_days=20, unused_days=60, stale_only=True, key_filter="risk_tier=high")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["stages"] == [
        {"reviewer": "owner", "fallback": "compliance", "duration_days": 10, "risk_tiers": [], "moves_on": []},
        {"reviewer": "compliance", "fallback": "compliance", "duration_days": 5, "risk_tiers": ["high", "critical"],
         "moves_on": ["confirm"]},
    ]
    assert body["duration_days"] == 15
    assert {k: body[k] for k in ("missing_signoff", "separation_of_duties", "reminder_every_days",
                                 "release_grace_days", "exception_review_cadence_days", "unused_days", "stale_only",
                                 "key_filter")} == {
        "missing_signoff": "default", "separation_of_duties": False, "reminder_every_days": 3,
        "release_grace_days": 0, "exception_review_cadence_days": 20, "unused_days": 60, "stale_only": True,
        "key_filter": "risk_tier=high"}
    campaign = Campaign.objects.get(pk=body["id"])
    assert (campaign.release_grace_days, campaign.reminder_every_days, campaign.missing_signoff) == (0, 3, "default")


@pytest.mark.parametrize(("stages", "fragment"), [
    ([{"reviewer": "nobody"}], "no user named 'nobody'"),
    ([{"reviewer": "owner"}, {"reviewer": "compliance", "moves_on": ["reassign"]}], None),
    ([{"reviewer": "owner"}] * 4, "at most 3 stages"),
    ([{"reviewer": "owner", "risk_tiers": ["high"]}], "Stage 1 reviews every item"),
])
def test_bad_stages_are_a_400_naming_the_stage(compliance_user, stages, fragment):
    response = create(client_for(compliance_user), stages=stages)
    assert response.status_code == 400
    assert "stages" in response.json(), response.json()
    if fragment:
        assert fragment in str(response.json()["stages"])
    assert not Campaign.objects.exists()


def test_items_carry_their_stage_and_every_stage_s_decision(staged, owner, compliance_user):
    campaign, items = staged
    owner_client, officer = client_for(owner), client_for(compliance_user)
    response = owner_client.post(reverse("attestation-decide", args=[items["high"].pk]), CONFIRM, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["status"], body["stage"], body["reviewer_role"]) == ("pending", 2, "compliance")
    assert [(d["stage"], d["decision"], d["by"], d["capacity"], d["reason"]) for d in body["decisions"]] == [
        (1, "confirm", owner.username, "reviewer", "")]
    assert "by_id" not in body["decisions"][0]
    assert body["decisions"][0]["evidence"]["key_status"] == "active"
    # attestations/ lists what the caller may decide now: the owner no longer, compliance now.
    assert items["high"].pk not in [i["id"] for i in owner_client.get(reverse("attestation-list")).json()["results"]]
    listed = officer.get(reverse("attestation-list"), {"campaign": campaign.pk, "status": "pending"}).json()["results"]
    assert items["high"].pk in [i["id"] for i in listed]
    # Compliance overrules through the same endpoint and body.
    response = officer.post(reverse("attestation-decide", args=[items["high"].pk]),
                            {"decision": "release", "reason": "security", "justification": "Too wide."}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["status"], body["reason"]) == ("released", "security")
    assert [(d["stage"], d["decision"], d["by"], d["reason"]) for d in body["decisions"]] == [
        (1, "confirm", owner.username, ""), (2, "release", compliance_user.username, "security")]


def test_a_release_without_a_reason_code_is_a_400(staged, owner):
    _, items = staged
    response = client_for(owner).post(reverse("attestation-decide", args=[items["low"].pk]),
                                      {"decision": "release", "justification": "Not needed."}, format="json")
    assert response.status_code == 400
    assert "reason" in response.json()
    response = client_for(owner).post(reverse("attestation-decide", args=[items["low"].pk]),
                                      {"decision": "release", "reason": "bored", "justification": "x"}, format="json")
    assert response.status_code == 400 and "reason" in response.json()


def test_separation_of_duties_is_a_403_with_why(compliance_user, owner):
    key = factories.ApiKeyFactory(owner=owner, risk_tier="high", approved_by=compliance_user)
    campaign_id = create(client_for(compliance_user), stages=STAGES).json()["id"]
    client_for(compliance_user).post(reverse("campaign-launch", args=[campaign_id]), format="json")
    item = AttestationItem.objects.get(key=key)
    client_for(owner).post(reverse("attestation-decide", args=[item.pk]), CONFIRM, format="json")
    response = client_for(compliance_user).post(reverse("attestation-decide", args=[item.pk]), CONFIRM, format="json")
    assert response.status_code == 403
    assert "Separation of duties: you approved the key" in response.json()["detail"]


def test_bulk_decide_answers_a_result_per_item(staged, owner, other_owner):
    campaign, items = staged
    theirs = factories.ApiKeyFactory(owner=other_owner)
    client_for(owner).post(reverse("attestation-decide", args=[items["low"].pk]), CONFIRM, format="json")
    ids = [items["low"].pk, items["high"].pk, items["critical"].pk, 999999, theirs.pk]
    response = client_for(owner).post(reverse("attestation-bulk-decide"), {
        "items": ids, "decision": "release", "reason": "contract_ended", "justification": "Contract ended in May.",
    }, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["done"], body["refused"]) == (2, 3)
    results = {r["item"]: r for r in body["results"]}
    assert [r["item"] for r in body["results"]] == ids
    assert results[items["low"].pk] == {"item": items["low"].pk, "result": "refused", "status": "confirmed",
                                        "errors": ["This item was already decided (confirmed)."]}
    assert results[items["high"].pk]["result"] == "done" and results[items["high"].pk]["status"] == "released"
    assert results[999999]["errors"] == ["No such item."]
    assert AttestationItem.objects.filter(campaign=campaign, reason="contract_ended").count() == 2


@pytest.mark.parametrize(("payload", "field"), [
    ({"decision": "release", "justification": "x"}, "reason"),
    ({"decision": "confirm", "justification": "x"}, "affirm"),
    ({"decision": "reassign", "justification": "x", "to": "nobody"}, "to"),
    ({"items": None, "decision": "confirm", "affirm": True}, "items"),
    ({"items": [], "decision": "confirm", "affirm": True}, "items"),
])
def test_bulk_decide_refuses_what_every_item_lacks_with_a_400(staged, owner, payload, field):
    _, items = staged
    body = {k: v for k, v in {"items": [items["low"].pk], **payload}.items() if v is not None}
    response = client_for(owner).post(reverse("attestation-bulk-decide"), body, format="json")
    assert response.status_code == 400
    assert field in response.json(), response.json()
    assert not AttestationItem.objects.exclude(status="pending").exists()
