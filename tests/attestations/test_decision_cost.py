"""What one decision costs in queries, through the service, the portal (htmx and plain form) and the API,
and that the cheaper evidence read freezes the same facts as reading them one by one."""

import datetime

import pytest
from django.db import connection, connections
from django.db.models import Sum
from django.urls import reverse
from django.utils import timezone
from rest_framework.authtoken.models import Token

from attestations.choices import Decision, ItemStatus
from attestations.services import campaigns, decisions, review_quality
from core import chain
from core.models import ChainHead, ChainLink
from keys.choices import ExceptionStatus, LifecycleAction
from keys.models import KeyException, LifecycleEvent, UsageDaily
from tests import factories
from tests.api import client_for

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
CONFIRM = {"decision": "confirm", "affirm": "on", "justification": "still feeds the nightly export"}
# One decision, committed: the session and user (or the token); the item under its lock with its campaign
# and the decide permission (no visibility check first: a refusal is sorted into 404 or 403 afterwards);
# the key under its lock with its workflow, customer and "registered by the decider"; usage and open
# exceptions; the key's update, history and lifecycle event; the item's update and history; the evidence
# chain: the two history records and the lifecycle event read back (one query per table), the head locked,
# the links inserted, the head moved. PostgreSQL runs the deferred constraint checks before the head lock
# (two SET CONSTRAINTS statements). Both count BEGIN and COMMIT. The API also records the token's use, on
# the access chain in a transaction of its own: the record written and read back, the access head locked,
# its link inserted and the head moved (plus the deferred checks on PostgreSQL).
PORTAL_QUERIES = 21 if connection.vendor == "postgresql" else 19
API_QUERIES = PORTAL_QUERIES + (8 if connection.vendor == "postgresql" else 6)


@pytest.fixture
def items(compliance_user, owner):
    # Both chain heads exist in a migrated database; a flushed test database creates them on first use.
    for chain_id in chain.CHAINS:
        ChainHead.objects.get_or_create(pk=chain_id)
    for _ in range(4):
        factories.ApiKeyFactory(owner=owner)
    campaign = campaigns.create_campaign(actor=compliance_user, name="2026-Q4")
    campaigns.launch_campaign(campaign, actor=compliance_user)
    return list(campaign.items.filter(reviewer=owner).order_by("pk"))


def _decided(item, owner):
    item.refresh_from_db()
    assert item.status == ItemStatus.CONFIRMED and item.decided_by == owner and item.evidence
    assert LifecycleEvent.objects.filter(key=item.key, action=LifecycleAction.ATTEST).count() == 1
    assert item.history.count() == 2 and item.key.history.count() >= 1
    sealed = set(ChainLink.objects.values_list("model_label", "record_id"))
    assert ("attestations.historicalattestationitem", item.history.latest("history_id").history_id) in sealed
    assert ("keys.historicalapikey", item.key.history.latest("history_id").history_id) in sealed


@pytest.mark.django_db(transaction=True)  # the chain is sealed at commit: count it
def test_portal_decision_htmx_and_plain(client, owner, items, django_assert_max_num_queries):
    client.force_login(owner)
    with django_assert_max_num_queries(PORTAL_QUERIES):
        response = client.post(reverse("attestations:decide", args=[items[0].pk]), CONFIRM, **HTMX)
    assert response.status_code == 200
    text = response.content.decode()
    # The row is rendered from the decision's own rows: decided, by whom, with the key's workflow and campaign.
    assert f'id="item-{items[0].pk}"' in text and "Confirmed" in text and "by alice" in text
    assert items[0].key.workflow.customer.name in text and "2026-Q4" in text
    assert 'name="decision"' not in text
    _decided(items[0], owner)
    with django_assert_max_num_queries(PORTAL_QUERIES):
        response = client.post(reverse("attestations:decide", args=[items[1].pk]), CONFIRM)
    assert response.status_code == 302
    _decided(items[1], owner)


@pytest.mark.django_db(transaction=True)
def test_api_decision(owner, items, django_assert_max_num_queries):
    client = client_for()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=owner).key}")
    with django_assert_max_num_queries(API_QUERIES):
        response = client.post(reverse("attestation-decide", args=[items[2].pk]),
                               {"decision": "confirm", "affirm": True, "justification": "x"}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    key = items[2].key
    assert (body["status"], body["decided_by"], body["reviewer"], body["campaign_name"]) == (
        "confirmed", "alice", "alice", "2026-Q4")
    assert (body["key"]["customer"], body["key"]["workflow"], body["key"]["owner"]) == (
        key.workflow.customer.name, key.workflow.name, "alice")
    key.refresh_from_db()
    assert body["key"]["status"] == key.status
    _decided(items[2], owner)


def test_api_release_answers_the_key_as_released(owner, items):
    client = client_for()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=owner).key}")
    response = client.post(reverse("attestation-decide", args=[items[3].pk]),
                           {"decision": "release", "reason": "unused", "justification": "retired"}, format="json")
    assert response.status_code == 200, response.content
    key = items[3].key
    key.refresh_from_db()
    assert response.json()["key"]["status"] == key.status != "active"


def test_refusals_keep_their_order(owner, other_owner, compliance_user, items):
    """403 before 409 before 400, now that the permission and status checks happen inside the decision."""
    def post(user, item, payload):
        client = client_for()
        client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
        return client.post(reverse("attestation-decide", args=[item.pk]), payload, format="json")

    valid = {"decision": "confirm", "affirm": True, "justification": "still used"}
    assert post(compliance_user, items[0], {}).status_code == 403
    assert post(compliance_user, items[0], valid).status_code == 403
    assert post(other_owner, items[0], valid).status_code == 404
    assert post(owner, items[0], valid).status_code == 200
    assert post(owner, items[0], {}).status_code == 409
    assert post(owner, items[0], valid).status_code == 409
    assert post(compliance_user, items[0], valid).status_code == 403
    assert post(owner, items[1], {}).status_code == 400


def _evidence_one_by_one(item, actor, now):
    """The evidence as first written: one look-up per fact."""
    key, today = item.key, timezone.localdate(now)
    usage = UsageDaily.objects.filter(key=key, day__gt=today - datetime.timedelta(days=90), day__lte=today)
    sources = {}
    for day_sources in usage.order_by("-day").values_list("sources", flat=True):
        for source in day_sources or []:
            sources.setdefault(source, None)
        if len(sources) >= review_quality.MAX_SOURCES:
            break
    open_exceptions = KeyException.objects.filter(key=key, status__in=[ExceptionStatus.REQUESTED,
                                                                        ExceptionStatus.APPROVED])
    flags = []
    if key.approved_by_id == actor.pk:
        flags.append("approved_key")
    if LifecycleEvent.objects.filter(key=key, action=LifecycleAction.REGISTER, actor=actor).exists():
        flags.append("registered_key")
    if open_exceptions.filter(requested_by=actor).exists():
        flags.append("requested_exception")
    if key.steward_id and key.steward_id == key.owner_id:
        flags.append("owner_is_steward")
    return {
        "calls_30d": usage.filter(day__gt=today - datetime.timedelta(days=30)).aggregate(n=Sum("count"))["n"] or 0,
        "calls_90d": usage.aggregate(n=Sum("count"))["n"] or 0,
        "sources": list(sources)[:review_quality.MAX_SOURCES],
        "open_exceptions": [e.pk for e in open_exceptions.order_by("pk")],
    }, flags


@pytest.mark.parametrize("with_registration", [True, False])
def test_evidence_matches_reading_it_fact_by_fact(owner, other_owner, compliance_user, with_registration):
    key = factories.ApiKeyFactory(owner=owner, approved_by=owner, steward=owner)
    if with_registration:
        LifecycleEvent.objects.create(key=key, action=LifecycleAction.REGISTER, actor=owner, to_status=key.status)
    now = timezone.now()
    today = timezone.localdate(now)
    # 95 days of usage with 30 sources over them: the 30/90-day edges and the 20-source cap are crossed.
    UsageDaily.objects.bulk_create([
        UsageDaily(key=key, day=today - datetime.timedelta(days=n), count=n + 1, first_seen=now, last_seen=now,
                   sources=[f"host-{n % 30}", f"host-{(n + 7) % 30}"])
        for n in range(95)
    ])
    mine = factories.KeyExceptionFactory(key=key, requested_by=owner, status=ExceptionStatus.REQUESTED)
    theirs = factories.KeyExceptionFactory(key=key, requested_by=other_owner, status=ExceptionStatus.APPROVED)
    factories.KeyExceptionFactory(key=key, requested_by=owner, status=ExceptionStatus.REJECTED)
    campaign = campaigns.create_campaign(actor=compliance_user, name="Edges")
    campaigns.launch_campaign(campaign, actor=compliance_user)
    item = campaign.items.get(key=key)
    expected, expected_flags = _evidence_one_by_one(item, owner, now)
    for registered in (None, with_registration):
        evidence, flags = review_quality.decision_evidence(item, owner, registered_key=registered, now=now)
        assert flags == expected_flags
        assert {k: evidence[k] for k in ("calls_30d", "calls_90d", "sources")} == {
            k: expected[k] for k in ("calls_30d", "calls_90d", "sources")}
        assert [e["id"] for e in evidence["open_exceptions"]] == expected["open_exceptions"] == [mine.pk, theirs.pk]
    assert ("registered_key" in expected_flags) is with_registration
    assert "requested_exception" in expected_flags and len(expected["sources"]) == review_quality.MAX_SOURCES

    decisions.record_decision(item, actor=owner, decision=Decision.CONFIRM, affirm=True, reaffirm_exception=True,
                              justification="still used")
    item.refresh_from_db()
    assert item.self_review == expected_flags
    assert item.evidence["calls_90d"] == expected["calls_90d"] and item.evidence["sources"] == expected["sources"]


@pytest.mark.django_db(transaction=True)
def test_a_refused_decision_commits_instead_of_rolling_back(owner, other_owner, items, monkeypatch):
    """psycopg drops a connection's prepared statements on every rollback; a refusal found by the locked
    read wrote nothing, so its transaction commits and the refusal is raised afterwards."""
    decisions.record_decision(items[0], actor=owner, decision=Decision.CONFIRM, affirm=True, justification="x")
    rollbacks = []
    wrapper = connections["default"]
    original = wrapper.rollback  # the chain's commit hook wraps it on the connection
    monkeypatch.setattr(wrapper, "rollback", lambda: (rollbacks.append(1), original())[1])
    with pytest.raises(decisions.AlreadyDecided):
        decisions.record_decision(items[0], actor=owner, decision=Decision.CONFIRM, affirm=True, justification="x")
    with pytest.raises(decisions.NotAllowedToDecide):
        decisions.record_decision(items[1], actor=other_owner, decision=Decision.CONFIRM, affirm=True, justification="x")
    assert rollbacks == [] and connection.get_autocommit() and not connection.in_atomic_block
    assert items[1].history.count() == 1  # nothing written for the refused decision
    # A refusal from the decision itself (a missing affirmation) still rolls back what it began.
    with pytest.raises(campaigns.CampaignError):
        decisions.record_decision(items[1], actor=owner, decision=Decision.CONFIRM, affirm=False, justification="x")
    assert rollbacks == [1]
