import datetime
import io

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from attestations.api.urls import router as attestations_router
from contacts import access as contact_access
from keys.api.urls import router as keys_router
from keys.choices import KeyStatus, LifecycleAction, RevocationReason
from keys.models import ApiKey, IntegrationToken, LifecycleEvent, UsageDaily
from keys.services import tokens
from tests import factories
from tests.integration_tokens import make_token, token_client

from . import client_for, routes

pytestmark = pytest.mark.django_db


@pytest.fixture
def systems(db):
    return factories.IssuingSystemFactory(name="System A"), factories.IssuingSystemFactory(name="System B")


@pytest.fixture
def key_a(systems, owner):
    return factories.ApiKeyFactory(issuing_system=systems[0], owner=owner, prefix="sk_a_0001")


@pytest.fixture
def key_b(systems, other_owner):
    return factories.ApiKeyFactory(issuing_system=systems[1], owner=other_owner, prefix="sk_b_0001")


@pytest.fixture
def token_a(systems):
    return make_token(issuing_system=systems[0])


@pytest.fixture
def client_a(token_a):
    return token_client(token_a[1])


def now_iso(minutes_ago=1):
    return (timezone.now() - datetime.timedelta(minutes=minutes_ago)).isoformat()


# Creation and storage


def test_plaintext_is_shown_once_and_only_its_hash_is_stored(token_a):
    token, plaintext = token_a
    assert plaintext.startswith("kpt_") and len(plaintext) > 40
    token.refresh_from_db()
    assert token.token_hash == tokens.hash_token(plaintext)
    assert token.token_prefix == plaintext[:12]
    dump = io.StringIO()
    call_command("dumpdata", stdout=dump)
    assert plaintext not in dump.getvalue()
    assert plaintext[12:] not in dump.getvalue()
    assert token.history.get().history_user.username == "token-issuer"


def test_only_admins_create_and_revoke(systems, owner, compliance_user):
    service = factories.UserFactory(username="svc")
    for actor in (owner, compliance_user):
        with pytest.raises(tokens.TokenError):
            tokens.create_token(actor=actor, name="x", issuing_system=systems[0], acts_as=service)
    token, _ = make_token(issuing_system=systems[0])
    with pytest.raises(tokens.TokenError):
        tokens.revoke_token(token, actor=owner)


def test_token_must_be_scoped_and_act_as_a_plain_account(systems, admin_user, compliance_user):
    service = factories.UserFactory(username="svc")
    with pytest.raises(tokens.TokenError) as refused:
        tokens.create_token(actor=admin_user, name="x", acts_as=service)
    assert "issuing_system" in refused.value.errors
    for privileged in (admin_user, compliance_user):
        with pytest.raises(tokens.TokenError) as refused:
            tokens.create_token(actor=admin_user, name="x", issuing_system=systems[0], acts_as=privileged)
        assert "acts_as" in refused.value.errors


def customer_contact(actor):
    contact, _ = contact_access.invite_contact(actor=actor, customer=factories.CustomerFactory(name="Acme"),
                                               name="Pat Contact", email="pat@acme.test")
    return contact.user


def test_token_may_not_act_as_a_customer_contact(systems, admin_user, compliance_user):
    with pytest.raises(tokens.TokenError) as refused:
        tokens.create_token(actor=admin_user, name="x", issuing_system=systems[0], acts_as=customer_contact(admin_user))
    assert list(refused.value.errors) == ["acts_as"]
    assert not IntegrationToken.objects.exists()


def test_token_form_refuses_a_customer_contact_beside_the_field(admin_user, systems):
    contact = customer_contact(admin_user)
    response = client_for(admin_user).post(reverse("keys:tokens"), {
        "name": "Gateway", "issuing_system": systems[0].pk, "acts_as": contact.username})
    assert response.status_code == 400
    assert "customer contact" in " ".join(response.context["form"].errors["acts_as"])
    assert not IntegrationToken.objects.exists()


# Authentication


def test_revoked_token_is_refused(client_a, token_a, admin_user, key_a):
    assert client_a.get(reverse("apikey-list")).status_code == 200
    tokens.revoke_token(token_a[0], actor=admin_user)
    response = client_a.get(reverse("apikey-list"))
    assert response.status_code in (401, 403)
    assert response.json() == {"detail": "Token revoked."}


def test_unknown_integration_token_is_refused(key_a):
    response = token_client("kpt_" + "x" * 43).get(reverse("apikey-list"))
    assert response.status_code in (401, 403)
    assert response.json() == {"detail": "Invalid token."}


def test_inactive_service_account_is_refused(client_a, token_a, key_a):
    service = token_a[0].acts_as
    service.is_active = False
    service.save()
    assert client_a.get(reverse("apikey-list")).status_code in (401, 403)


def test_last_use_is_recorded_at_most_once_a_minute(client_a, token_a, key_a):
    token = token_a[0]
    client_a.get(reverse("apikey-list"))
    token.refresh_from_db()
    first = token.last_used_at
    assert first is not None and token.last_used_from == "127.0.0.1"
    client_a.get(reverse("apikey-list"))
    token.refresh_from_db()
    assert token.last_used_at == first
    IntegrationToken.objects.filter(pk=token.pk).update(last_used_at=first - datetime.timedelta(minutes=2))
    client_a.get(reverse("apikey-list"))
    token.refresh_from_db()
    assert token.last_used_at > first
    assert token.history.count() == 1, "use is telemetry, not history"


# Scope


def test_token_sees_only_keys_of_its_issuing_system(client_a, key_a, key_b):
    body = client_a.get(reverse("apikey-list")).json()
    assert [row["id"] for row in body["results"]] == [key_a.pk]
    assert client_a.get(reverse("apikey-detail", args=[key_a.pk])).status_code == 200
    assert client_a.get(reverse("apikey-detail", args=[key_b.pk])).status_code == 404
    assert client_a.get(reverse("apikey-history", args=[key_b.pk])).status_code == 404


def test_customer_token_sees_only_its_customers_keys(key_a, key_b):
    _, plaintext = make_token(customer=key_b.workflow.customer, name="CRM")
    client = token_client(plaintext)
    assert [row["id"] for row in client.get(reverse("apikey-list")).json()["results"]] == [key_b.pk]
    customers = client.get(reverse("customer-list")).json()["results"]
    assert [row["id"] for row in customers] == [key_b.workflow.customer_id]
    workflows = client.get(reverse("workflow-list")).json()["results"]
    assert [row["id"] for row in workflows] == [key_b.workflow_id]


def test_token_revokes_only_keys_in_scope(client_a, token_a, key_a, key_b):
    payload = {"reason_code": RevocationReason.MANUAL, "reason": "Decommissioned at the gateway"}
    assert client_a.post(reverse("apikey-revoke", args=[key_b.pk]), payload, format="json").status_code == 404
    key_b.refresh_from_db()
    assert key_b.status == KeyStatus.ACTIVE
    response = client_a.post(reverse("apikey-revoke", args=[key_a.pk]), payload, format="json")
    assert response.status_code == 200, response.content
    event = LifecycleEvent.objects.get(key=key_a, action=LifecycleAction.REVOKE)
    assert event.actor == token_a[0].acts_as


def test_token_reports_usage_only_for_keys_in_scope(client_a, key_a, key_b):
    events = [{"id": "e1", "key": key_a.pk, "at": now_iso(), "source": "gw"},
              {"id": "e2", "key": key_b.pk, "at": now_iso(), "source": "gw"},
              {"id": "e3", "key": key_b.prefix, "at": now_iso(), "source": "gw"}]
    body = client_a.post(reverse("usage-list"), {"events": events}, format="json").json()
    assert body["accepted"] == 1
    assert [(row["index"], row["reason"]) for row in body["rejected"]] == [(1, "key: no such key."),
                                                                          (2, "key: no such key.")]
    assert not UsageDaily.objects.filter(key=key_b).exists()


def test_token_registers_keys_in_scope_only(client_a, token_a, key_a, key_b, owner, systems):
    payload = {"label": "New gateway key", "workflow": key_b.workflow_id, "owner": owner.username,
               "fingerprint": "cd" * 32, "prefix": "sk_a_new"}
    response = client_a.post(reverse("apikey-list"), payload, format="json")
    assert response.status_code == 201, response.content
    created = ApiKey.objects.get(pk=response.json()["id"])
    assert created.issuing_system == systems[0]
    assert created.events.get().actor == token_a[0].acts_as
    refused = client_a.post(reverse("apikey-list"), {**payload, "fingerprint": "ce" * 32,
                                                     "issuing_system": systems[1].pk}, format="json")
    assert refused.status_code == 400
    assert "workflow" in refused.json()


def test_token_reads_exposures_of_its_scope_only(client_a, key_a, key_b, admin_user):
    from keys.services.exposures import report_exposure

    report_exposure(reporter=admin_user, source="portal", fingerprint=key_a.fingerprint, location="a")
    report_exposure(reporter=admin_user, source="portal", fingerprint=key_b.fingerprint, location="b")
    rows = client_a.get(reverse("exposure-list")).json()["results"]
    assert [row["key"] for row in rows] == [key_a.pk]


# Which endpoints a token may use: every route of every router has an entry, so a new one must decide.

ALLOWED = {
    ("customer-list", "get"): 200, ("customer-detail", "get"): 200,
    ("workflow-list", "get"): 200, ("workflow-detail", "get"): 200,
    ("apikey-list", "get"): 200, ("apikey-list", "post"): 400, ("apikey-detail", "get"): 200,
    ("apikey-history", "get"): 200, ("apikey-revoke", "post"): 400,
    ("usage-list", "post"): 400, ("exposure-list", "get"): 200, ("exposure-list", "post"): 400,
}


def all_routes():
    return sorted(routes(keys_router) | routes(attestations_router))


@pytest.mark.parametrize(("name", "method"), all_routes())
def test_token_route_matrix(client_a, key_a, name, method):
    no_id = name.endswith("-list") or name.endswith("bulk-decide")
    kwargs = {} if no_id else {"args": [key_a.pk if name.startswith("apikey") else
                                        key_a.workflow_id if name.startswith("workflow") else
                                        key_a.workflow.customer_id if name.startswith("customer")
                                        else 1]}
    response = getattr(client_a, method)(reverse(name, **kwargs), {}, format="json")
    expected = ALLOWED.get((name, method), 403)
    assert response.status_code == expected, f"{method} {name}: {response.status_code} {response.content[:200]!r}"
    if expected == 403:
        assert response.json() == {"detail": "Integration tokens may not use this endpoint."}


def test_personal_drf_tokens_still_work(admin_user, key_a):
    from rest_framework.authtoken.models import Token

    token = Token.objects.create(user=admin_user)
    assert token_client(token.key).get(reverse("apikey-detail", args=[key_a.pk])).status_code == 200


# Portal page


def test_token_page_is_for_admins_only(owner, compliance_user):
    assert client_for(owner).get(reverse("keys:tokens")).status_code == 403
    assert client_for(compliance_user).get(reverse("keys:tokens")).status_code == 403
    assert client_for().get(reverse("keys:tokens")).status_code == 302


def test_admin_creates_token_seeing_it_once_then_revokes_it(admin_user, systems):
    service = factories.UserFactory(username="svc-portal")
    client = client_for(admin_user)
    response = client.post(reverse("keys:tokens"), {"name": "Gateway", "issuing_system": systems[0].pk,
                                                    "acts_as": service.username})
    assert response.status_code == 201
    token = IntegrationToken.objects.get()
    html = response.content.decode()
    plaintext = html.split('class="token-plaintext">')[1].split("<")[0]
    assert tokens.hash_token(plaintext) == token.token_hash
    assert "no-store" in response["Cache-Control"]
    later = client.get(reverse("keys:tokens")).content.decode()
    assert plaintext not in later and token.token_prefix in later
    assert token_client(plaintext).get(reverse("apikey-list")).status_code == 200
    assert client.post(reverse("keys:token-revoke", args=[token.pk])).status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert token_client(plaintext).get(reverse("apikey-list")).status_code in (401, 403)


def test_token_form_reports_service_errors(admin_user):
    service = factories.UserFactory(username="svc-portal")
    response = client_for(admin_user).post(reverse("keys:tokens"), {"name": "Unscoped", "acts_as": service.username})
    assert response.status_code == 400
    assert "Scope the token" in response.content.decode()
    assert not IntegrationToken.objects.exists()


def test_admin_site_shows_tokens_read_only(admin_user, token_a):
    client = client_for(admin_user)
    assert client.get(reverse("admin:keys_integrationtoken_changelist")).status_code == 200
    page = client.get(reverse("admin:keys_integrationtoken_change", args=[token_a[0].pk]))
    assert page.status_code == 200
    assert token_a[1] not in page.content.decode()
    assert client.get(reverse("admin:keys_integrationtoken_add")).status_code == 403
