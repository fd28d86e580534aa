import datetime
import io

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone
from rest_framework.authtoken.models import Token

from keys.api.urls import router
from keys.choices import Environment, KeyStatus, LifecycleAction, RevocationReason, RiskTier, WorkflowStatus
from keys.models import ApiKey, Customer, LifecycleEvent, Workflow
from keys.services import lifecycle
from tests import factories

from . import client_for, permission_matrix_tests

pytestmark = pytest.mark.django_db

SECRET = "sk_live_4f2aQ9vXfakeSecretForTests000"


@pytest.fixture
def world(owner, other_owner, compliance_user, admin_user, auditor_user, key, other_key):
    return {
        "anon": None, "owner": owner, "other": other_owner, "compliance": compliance_user, "admin": admin_user,
        "auditor": auditor_user,
        "key": key, "other_key": other_key, "exception": factories.KeyExceptionFactory(key=key),
    }


def register_payload(workflow, owner, /, **overrides):
    payload = {
        "label": "Screening export", "workflow": workflow.pk, "owner": owner.username, "secret": SECRET,
        "scopes": ["read:cases"], "risk_tier": RiskTier.HIGH,
        "expires_on": (timezone.localdate() + datetime.timedelta(days=365)).isoformat(),
    }
    payload.update(overrides)
    return {k: v for k, v in payload.items() if v is not None}


def assert_no_secret(response, secret=SECRET):
    assert secret not in response.content.decode(), "the secret was echoed"


# Permission matrix: url name -> method -> role -> status. Refusals of owners' objects are 404s;
# allowed POSTs with an empty body are 400s (validation reached).

MATRIX = {
    "customer-list": {
        "get": {"anon": 403, "owner": 200, "other": 200, "compliance": 200, "admin": 200, "auditor": 200},
        "post": {"anon": 403, "owner": 403, "other": 403, "compliance": 403, "admin": 400, "auditor": 403},
    },
    "customer-detail": {
        "get": {"anon": 403, "owner": 200, "other": 404, "compliance": 200, "admin": 200, "auditor": 200},
        "put": {"anon": 403, "owner": 403, "other": 403, "compliance": 403, "admin": 400, "auditor": 403},
        "patch": {"anon": 403, "owner": 403, "other": 403, "compliance": 403, "admin": 200, "auditor": 403},
    },
    "workflow-list": {
        "get": {"anon": 403, "owner": 200, "other": 200, "compliance": 200, "admin": 200, "auditor": 200},
        "post": {"anon": 403, "owner": 403, "other": 403, "compliance": 403, "admin": 400, "auditor": 403},
    },
    "workflow-detail": {
        "get": {"anon": 403, "owner": 200, "other": 404, "compliance": 200, "admin": 200, "auditor": 200},
        "put": {"anon": 403, "owner": 403, "other": 403, "compliance": 403, "admin": 400, "auditor": 403},
        "patch": {"anon": 403, "owner": 403, "other": 403, "compliance": 403, "admin": 200, "auditor": 403},
    },
    "apikey-list": {
        "get": {"anon": 403, "owner": 200, "other": 200, "compliance": 200, "admin": 200, "auditor": 200},
        "post": {"anon": 403, "owner": 403, "other": 403, "compliance": 403, "admin": 400, "auditor": 403},
    },
    "apikey-detail": {
        "get": {"anon": 403, "owner": 200, "other": 404, "compliance": 200, "admin": 200, "auditor": 200},
    },
    "apikey-history": {
        "get": {"anon": 403, "owner": 200, "other": 404, "compliance": 200, "admin": 200, "auditor": 200},
    },
    "apikey-revoke": {
        "post": {"anon": 403, "owner": 400, "other": 404, "compliance": 403, "admin": 400, "auditor": 403},
    },
    "keyexception-list": {
        "get": {"anon": 403, "owner": 200, "other": 200, "compliance": 200, "admin": 200, "auditor": 200},
    },
    "keyexception-detail": {
        "get": {"anon": 403, "owner": 200, "other": 404, "compliance": 200, "admin": 200, "auditor": 200},
    },
    "usage-list": {
        "post": {"anon": 403, "owner": 403, "other": 403, "compliance": 403, "admin": 400, "auditor": 403},
    },
    "exposure-list": {
        "get": {"anon": 403, "owner": 403, "other": 403, "compliance": 200, "admin": 200, "auditor": 200},
        "post": {"anon": 403, "owner": 400, "other": 400, "compliance": 400, "admin": 400, "auditor": 403},
    },
}


def matrix_url(name, world):
    key = world["key"]
    obj = {"customer": key.workflow.customer, "workflow": key.workflow, "apikey": key,
           "keyexception": world.get("exception"), "usage": None, "exposure": None}[name.split("-")[0]]
    return reverse(name) if name.endswith("-list") else reverse(name, args=[obj.pk])


def key_still_active(world, name):
    world["key"].refresh_from_db()
    assert world["key"].status == KeyStatus.ACTIVE


test_matrix_covers_every_route, test_permission_matrix = permission_matrix_tests(
    router, MATRIX, matrix_url, unchanged=key_still_active)


# Authentication


def test_token_auth_works(admin_user, key):
    token = Token.objects.create(user=admin_user)
    client = client_for()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    response = client.get(reverse("apikey-detail", args=[key.pk]))
    assert response.status_code == 200
    assert response.json()["owner"] == key.owner.username


def test_bad_token_is_refused(key):
    client = client_for()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    response = client.get(reverse("apikey-list"))
    assert response.status_code in (401, 403)
    assert response.json() == {"detail": "Invalid token."}


def test_anonymous_gets_json_refusal():
    response = client_for().get(reverse("apikey-list"))
    assert response.status_code == 403
    assert "detail" in response.json()


# Keys: list, filters, detail


def test_owner_lists_only_visible_keys(owner, key, other_key):
    steward_of = factories.ApiKeyFactory(steward=owner)
    response = client_for(owner).get(reverse("apikey-list"))
    assert response.status_code == 200
    ids = {row["id"] for row in response.json()["results"]}
    assert ids == {key.pk, steward_of.pk}


def test_compliance_lists_every_key(compliance_user, key, other_key):
    ids = {row["id"] for row in client_for(compliance_user).get(reverse("apikey-list")).json()["results"]}
    assert ids == {key.pk, other_key.pk}


def test_key_representation(owner, key):
    body = client_for(owner).get(reverse("apikey-detail", args=[key.pk])).json()
    assert body["status"] == "active"
    assert body["owner"] == owner.username
    assert body["customer"] == key.workflow.customer_id
    assert body["customer_name"] == key.workflow.customer.name
    assert body["workflow"] == key.workflow_id
    assert body["environment"] == key.workflow.environment
    assert body["prefix"] == key.prefix
    assert "secret" not in body
    assert "fingerprint" not in body
    assert key.fingerprint not in str(body)


def test_key_filters(compliance_user, owner, other_owner):
    staging = factories.ApiKeyFactory(owner=owner, workflow__environment=Environment.STAGING, risk_tier=RiskTier.HIGH)
    suspended = factories.ApiKeyFactory(owner=other_owner, status=KeyStatus.SUSPENDED)
    plain = factories.ApiKeyFactory(owner=other_owner)
    client = client_for(compliance_user)

    def ids(**params):
        response = client.get(reverse("apikey-list"), params)
        assert response.status_code == 200, response.content
        return {row["id"] for row in response.json()["results"]}

    assert ids(status="suspended") == {suspended.pk}
    assert ids(environment="staging") == {staging.pk}
    assert ids(risk_tier="high") == {staging.pk}
    assert ids(owner=other_owner.username) == {suspended.pk, plain.pk}
    assert ids(customer=plain.workflow.customer_id) == {plain.pk}
    assert ids(workflow=staging.workflow_id) == {staging.pk}


def test_bad_filter_value_is_a_json_400(compliance_user, key):
    response = client_for(compliance_user).get(reverse("apikey-list"), {"status": "lost"})
    assert response.status_code == 400
    assert "status" in response.json()


def test_owner_cannot_filter_by_a_customer_they_cannot_see(owner, key, other_key):
    response = client_for(owner).get(reverse("apikey-list"), {"customer": other_key.workflow.customer_id})
    assert response.status_code == 400
    assert other_key.workflow.customer.name not in response.content.decode()


def test_key_list_is_paginated_with_constant_queries(compliance_user, owner, django_assert_max_num_queries):
    workflow = factories.WorkflowFactory()
    factories.ApiKeyFactory.create_batch(51, owner=owner, workflow=workflow)
    client = client_for(compliance_user)
    client.get(reverse("apikey-list"))
    with django_assert_max_num_queries(5):
        body = client.get(reverse("apikey-list")).json()
    assert "count" not in body and body["previous"] is None
    assert len(body["results"]) == 50
    assert "?cursor=" in body["next"]
    with django_assert_max_num_queries(5):
        second = client.get(body["next"]).json()
    assert len(second["results"]) == 1 and second["next"] is None and second["previous"]


# Registration


def test_admin_registers_key_with_secret_over_token(admin_user, owner, key):
    token = Token.objects.create(user=admin_user)
    client = client_for()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    response = client.post(reverse("apikey-list"), register_payload(key.workflow, owner, steward=admin_user.username),
                           format="json")
    assert response.status_code == 201, response.content
    assert_no_secret(response)
    body = response.json()
    assert body["status"] == "pending"
    assert body["owner"] == owner.username
    assert body["steward"] == admin_user.username
    assert body["issuing_system"] == key.issuing_system_id
    assert SECRET.startswith(body["prefix"])
    registered = ApiKey.objects.get(pk=body["id"])
    assert registered.risk_tier == RiskTier.HIGH
    event = LifecycleEvent.objects.get(key=registered)
    assert event.action == LifecycleAction.REGISTER
    assert event.actor == admin_user
    assert registered.history.get().history_user == admin_user


def test_secret_is_never_stored(admin_user, owner, key):
    response = client_for(admin_user).post(reverse("apikey-list"), register_payload(key.workflow, owner), format="json")
    assert response.status_code == 201
    dump = io.StringIO()
    call_command("dumpdata", stdout=dump)
    assert SECRET not in dump.getvalue()
    assert SECRET[8:] not in dump.getvalue()


def test_register_by_fingerprint(admin_user, owner, key):
    fingerprint = "ab" * 32
    payload = register_payload(key.workflow, owner, secret=None, fingerprint=fingerprint, prefix="sk_live_x")
    response = client_for(admin_user).post(reverse("apikey-list"), payload, format="json")
    assert response.status_code == 201, response.content
    assert ApiKey.objects.get(pk=response.json()["id"]).fingerprint == fingerprint


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"secret": None}, "secret"),
        ({"secret": "short"}, "secret"),
        ({"secret": SECRET, "fingerprint": "ab" * 32}, "secret"),
        ({"secret": None, "fingerprint": "not-hex"}, "fingerprint"),
        ({"secret": None, "fingerprint": "ab" * 32}, "prefix"),
        ({"prefix": "pk_other"}, "prefix"),
        ({"owner": "nobody"}, "owner"),
        ({"workflow": 999999}, "workflow"),
        ({"label": ""}, "label"),
        ({"risk_tier": "extreme"}, "risk_tier"),
        ({"expires_on": "2000-01-01"}, "expires_on"),
        ({"scopes": "read:cases"}, "scopes"),
    ],
)
def test_register_validation_errors_per_field(admin_user, owner, key, overrides, field):
    response = client_for(admin_user).post(
        reverse("apikey-list"), register_payload(key.workflow, owner, **overrides), format="json"
    )
    assert response.status_code == 400
    assert field in response.json(), response.json()
    assert all(isinstance(message, str) for message in response.json()[field])
    assert_no_secret(response)
    assert not ApiKey.objects.exclude(pk=key.pk).exists()


def test_register_refuses_decommissioned_workflow(admin_user, owner):
    workflow = factories.WorkflowFactory(status=WorkflowStatus.DECOMMISSIONED)
    factories.IssuingSystemFactory()
    response = client_for(admin_user).post(reverse("apikey-list"), register_payload(workflow, owner), format="json")
    assert response.status_code == 400
    assert "decommissioned" in response.json()["workflow"][0]
    assert_no_secret(response)


def test_duplicate_secret_is_refused_without_echo(admin_user, owner, key):
    client = client_for(admin_user)
    assert client.post(reverse("apikey-list"), register_payload(key.workflow, owner), format="json").status_code == 201
    response = client.post(reverse("apikey-list"), register_payload(key.workflow, owner, label="again"), format="json")
    assert response.status_code == 400
    assert response.json() == {"secret": ["A key with this fingerprint is already registered."]}
    assert_no_secret(response)


def test_issuing_system_required_when_several(admin_user, owner, key):
    factories.IssuingSystemFactory(name="Second gateway")
    response = client_for(admin_user).post(reverse("apikey-list"), register_payload(key.workflow, owner), format="json")
    assert response.status_code == 400
    assert "issuing_system" in response.json()
    assert_no_secret(response)
    other = factories.IssuingSystemFactory(name="Second gateway")
    payload = register_payload(key.workflow, owner, issuing_system=other.pk)
    response = client_for(admin_user).post(reverse("apikey-list"), payload, format="json")
    assert response.status_code == 201
    assert response.json()["issuing_system"] == other.pk


@pytest.mark.parametrize("role", ["anon", "owner", "compliance"])
def test_only_admins_register(world, role):
    response = client_for(world[role]).post(
        reverse("apikey-list"), register_payload(world["key"].workflow, world["owner"]), format="json"
    )
    assert response.status_code == 403
    assert_no_secret(response)
    assert ApiKey.objects.count() == 2


@pytest.mark.parametrize("refusal", ["serializer", "service"])
def test_browsable_api_does_not_echo_secret(admin_user, owner, key, refusal):
    client = client_for(admin_user)
    if refusal == "service":
        client.post(reverse("apikey-list"), register_payload(key.workflow, owner), format="json")
    payload = register_payload(key.workflow, owner, label="" if refusal == "serializer" else "again")
    payload["scopes"] = "read:cases"
    response = client.post(reverse("apikey-list"), payload, HTTP_ACCEPT="text/html")
    assert response.status_code == 400
    assert "<form" in response.content.decode()
    assert_no_secret(response)


def test_secret_with_non_json_form_post(admin_user, owner, key):
    payload = register_payload(key.workflow, owner, owner="nobody")
    payload.pop("scopes")
    response = client_for(admin_user).post(reverse("apikey-list"), payload)
    assert response.status_code == 400
    assert_no_secret(response)


# History


def test_history_lists_events_and_records(admin_user, owner, key):
    lifecycle.suspend_key(key, actor=admin_user, reason="investigating")
    client = client_for(owner)
    body = client.get(reverse("apikey-history", args=[key.pk])).json()
    assert body["count"] >= 1
    latest = body["results"][0]
    assert latest["action"] == LifecycleAction.SUSPEND
    assert latest["actor"] == admin_user.username
    assert latest["reason"] == "investigating"
    assert (latest["from_status"], latest["to_status"]) == ("active", "suspended")
    assert latest["source"] == "event+record"


def test_history_shows_changed_fields_with_usernames(admin_user, owner, other_owner, key):
    lifecycle.change_owner(key, actor=admin_user, new_owner=other_owner, reason="moved team")
    body = client_for(admin_user).get(reverse("apikey-history", args=[key.pk])).json()
    entry = body["results"][0]
    assert entry["action"] == LifecycleAction.CHANGE_OWNER
    changes = {change["field"]: change for change in entry["changes"]}
    assert changes["owner"]["old"] == owner.username
    assert changes["owner"]["new"] == other_owner.username
    assert changes["rotation_required"]["new"] is True


# Revocation


def test_admin_revokes_and_second_revoke_is_400(admin_user, key):
    client = client_for(admin_user)
    url = reverse("apikey-revoke", args=[key.pk])
    response = client.post(url, {"reason_code": RevocationReason.MANUAL, "reason": "customer asked"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "revoked"
    assert response.json()["revocation_reason"] == "manual"
    key.refresh_from_db()
    assert key.status == KeyStatus.REVOKED
    assert key.events.get(action=LifecycleAction.REVOKE).actor == admin_user
    again = client.post(url, {"reason_code": RevocationReason.MANUAL}, format="json")
    assert again.status_code == 400
    assert again.json() == {"non_field_errors": ["A revoked key cannot be revoked."]}


def test_owner_revokes_own_key(owner, key):
    response = client_for(owner).post(
        reverse("apikey-revoke", args=[key.pk]), {"reason_code": RevocationReason.RELEASED}, format="json"
    )
    assert response.status_code == 200
    key.refresh_from_db()
    assert key.status == KeyStatus.REVOKED
    assert key.events.get(action=LifecycleAction.REVOKE).reason == "Released by owner"


def test_revoke_validation(admin_user, key):
    response = client_for(admin_user).post(reverse("apikey-revoke", args=[key.pk]), {"reason_code": "bored"}, format="json")
    assert response.status_code == 400
    assert "reason_code" in response.json()
    key.refresh_from_db()
    assert key.status == KeyStatus.ACTIVE


# Customers and workflows


def test_owner_sees_only_customers_and_workflows_of_their_keys(owner, key, other_key):
    client = client_for(owner)
    customers = client.get(reverse("customer-list")).json()["results"]
    assert [c["id"] for c in customers] == [key.workflow.customer_id]
    workflows = client.get(reverse("workflow-list")).json()["results"]
    assert [w["id"] for w in workflows] == [key.workflow_id]
    assert workflows[0]["business_owner"] == key.workflow.business_owner.username


def test_admin_creates_and_updates_customer(admin_user, owner):
    client = client_for(admin_user)
    response = client.post(reverse("customer-list"), {"name": "Acme", "external_id": "ACME-1",
                                                      "account_manager": owner.username}, format="json")
    assert response.status_code == 201, response.content
    customer = Customer.objects.get(pk=response.json()["id"])
    assert customer.account_manager == owner
    assert customer.history.get().history_user == admin_user
    response = client.patch(reverse("customer-detail", args=[customer.pk]),
                            {"contract_status": "ending", "contract_end": "2027-01-31"}, format="json")
    assert response.status_code == 200
    customer.refresh_from_db()
    assert customer.contract_status == "ending"
    latest = customer.history.first()
    assert (latest.history_user, latest.history_change_reason) == (admin_user, "changed through the API")


def test_customer_validation(admin_user, key):
    response = client_for(admin_user).post(
        reverse("customer-list"), {"name": key.workflow.customer.name, "external_id": "X", "contract_status": "maybe"},
        format="json",
    )
    assert response.status_code == 400
    assert set(response.json()) == {"name", "contract_status"}


def test_admin_creates_workflow_and_filters(admin_user, owner, key):
    client = client_for(admin_user)
    payload = {
        "customer": key.workflow.customer_id, "name": "Staging sync", "purpose": "Testing", "data_scope": "none",
        "environment": "staging", "business_owner": owner.username,
    }
    response = client.post(reverse("workflow-list"), payload, format="json")
    assert response.status_code == 201, response.content
    created = Workflow.objects.get(pk=response.json()["id"])
    assert created.business_owner == owner
    ids = {w["id"] for w in client.get(reverse("workflow-list"), {"environment": "staging"}).json()["results"]}
    assert ids == {created.pk}
    ids = {w["id"] for w in client.get(reverse("workflow-list"), {"customer": key.workflow.customer_id}).json()["results"]}
    assert ids == {created.pk, key.workflow_id}
    assert client.get(reverse("workflow-list"), {"status": "decommissioned"}).json()["results"] == []
    unknown = client.post(reverse("workflow-list"), {**payload, "business_owner": "nobody"}, format="json")
    assert unknown.status_code == 400
    assert set(unknown.json()) == {"business_owner"}
    duplicate = client.post(reverse("workflow-list"), payload, format="json")
    assert duplicate.status_code == 400
    assert set(duplicate.json()) == {"non_field_errors"}
