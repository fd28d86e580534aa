"""A customer contact may own or steward only keys of their own customer, whichever path names them: key
registration (portal, admin, API, integration token), an owner or steward change, the CSV import, a
reassignment or delegation in a campaign, the acceptance of a transfer, and a succession."""

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from attestations.choices import Decision
from attestations.models import OwnershipTransfer
from attestations.services import campaigns, decisions, successions
from contacts import access
from keys.services import lifecycle, sweeps
from keys.services.importer import KeyImportError, import_keys
from tests import factories
from tests.integration_tokens import make_token, token_client

from .test_import import row, to_csv

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(owner, compliance_user, admin_user):
    """Pat is a contact of Acme; Globex is another customer, with a key alice owns."""
    acme = factories.CustomerFactory(name="Acme", external_id="ACME")
    globex = factories.CustomerFactory(name="Globex", external_id="GLOBEX")
    pat, _ = access.invite_contact(actor=compliance_user, customer=acme, name="Pat Lee", email="pat@acme.test")
    return {
        "pat": pat.user,
        "acme_flow": factories.WorkflowFactory(customer=acme, name="Payouts"),
        "globex_flow": factories.WorkflowFactory(customer=globex, name="Claims"),
        "globex_key": factories.ApiKeyFactory(workflow__customer=globex, owner=owner, label="Globex claims"),
        "system": factories.IssuingSystemFactory(name="Gateway"),
    }


def register(world, workflow, **people):
    return lifecycle.register_key(
        actor=factories.AdminFactory(username="registrar"), workflow=workflow, issuing_system=world["system"],
        label="Contact key", fingerprint=f"{len(people):x}{workflow.pk:x}".ljust(64, "a"), prefix="sk_c_",
        **{"owner": factories.OwnerFactory(username="olivia"), **people},
    )


@pytest.mark.parametrize("role", ["owner", "steward"])
def test_registration_refuses_a_contact_of_another_customer(world, role):
    with pytest.raises(lifecycle.LifecycleError) as refused:
        register(world, world["globex_flow"], **{role: world["pat"]})
    assert list(refused.value.errors) == [role]
    assert "customer contact" in refused.value.errors[role][0]
    key = register(world, world["acme_flow"], **{role: world["pat"]})
    assert getattr(key, role) == world["pat"]


def test_api_registration_refuses_it_per_field_for_admins_and_integrations(world, admin_user):
    payload = {"label": "Claims key", "workflow": world["globex_flow"].pk, "issuing_system": world["system"].pk,
               "owner": world["pat"].username, "fingerprint": "cd" * 32, "prefix": "sk_c_"}
    admin = APIClient()
    admin.force_login(admin_user)
    _, plaintext = make_token(customer=world["globex_flow"].customer)
    for client in (admin, token_client(plaintext)):
        response = client.post(reverse("apikey-list"), payload, format="json")
        assert response.status_code == 400, response.content
        assert list(response.json()) == ["owner"]
        response = client.post(reverse("apikey-list"), {**payload, "owner": admin_user.username,
                                                        "steward": world["pat"].username}, format="json")
        assert response.status_code == 400, response.content
        assert list(response.json()) == ["steward"]


def test_owner_change_refuses_a_contact_of_another_customer(world, admin_user, owner, client):
    key = world["globex_key"]
    with pytest.raises(lifecycle.LifecycleError) as refused:
        lifecycle.change_owner(key, actor=admin_user, new_owner=world["pat"], reason="handover")
    assert list(refused.value.errors) == ["new_owner"]
    client.force_login(admin_user)
    response = client.post(reverse("keys:action", args=[key.pk, "change-owner"]),
                           {"new_owner": world["pat"].username, "reason": "handover"})
    assert response.status_code == 400
    key.refresh_from_db()
    assert key.owner == owner


def test_admin_change_form_refuses_a_contact_as_steward(world, admin_client):
    from .test_admin import change_form_data, url

    key = world["globex_key"]
    page = admin_client.get(url("apikey_change", key.pk))
    response = admin_client.post(url("apikey_change", key.pk), change_form_data(page, steward=world["pat"].pk))
    assert response.status_code == 200
    assert "steward" in response.context["adminform"].form.errors
    key.refresh_from_db()
    assert key.steward is None


@pytest.mark.parametrize("column", ["owner", "steward"])
def test_import_refuses_the_row_naming_a_contact_of_another_customer(world, admin_user, column):
    pat = {column: world["pat"].username}
    rows = [row(customer="ACME", workflow="Payouts"),
            row(customer="GLOBEX", workflow="Claims", **pat),
            row(customer="ACME", workflow="Payouts", **pat)]
    with pytest.raises(KeyImportError) as refused:
        import_keys(to_csv(rows), actor=admin_user, reason="import")
    assert [(r.line, r.field) for r in refused.value.rows] == [(3, column)]
    assert "customer contact" in refused.value.rows[0].message


@pytest.fixture
def globex_item(world, owner, compliance_user):
    campaign = campaigns.create_campaign(actor=compliance_user, name="Q4", customers=[world["globex_flow"].customer])
    campaigns.launch_campaign(campaign, actor=compliance_user)
    return campaign.items.get(key=world["globex_key"])


@pytest.mark.parametrize("decision", [Decision.REASSIGN, Decision.DELEGATE])
def test_campaign_refuses_to_pass_a_key_to_a_contact_of_another_customer(world, owner, globex_item, decision):
    with pytest.raises(campaigns.CampaignError) as refused:
        decisions.record_decision(globex_item, actor=owner, decision=decision, to=world["pat"].username,
                                  justification="Pat runs it now")
    assert list(refused.value.errors) == ["to"]
    assert not OwnershipTransfer.objects.exists()
    globex_item.refresh_from_db()
    assert globex_item.delegate is None and globex_item.reassigned_to is None


def test_a_transfer_to_a_contact_of_another_customer_cannot_be_accepted(world, owner):
    key = world["globex_key"]
    transfer = OwnershipTransfer.objects.create(key=key, from_user=owner, to_user=world["pat"], requested_by=owner,
                                                reason="named before the rule")
    with pytest.raises(campaigns.CampaignError, match="customer contact"):
        decisions.answer_transfer(transfer, actor=world["pat"], accept=True)
    key.refresh_from_db()
    transfer.refresh_from_db()
    assert key.owner == owner and transfer.status == "pending"


def test_succession_refuses_a_contact_of_another_customer(world, owner, admin_user):
    factories.OwnerProfileFactory(user=owner, is_active=False)
    sweeps.sweep_departed_owners()
    with pytest.raises(campaigns.CampaignError) as refused:
        successions.name_successor(world["globex_key"], actor=admin_user, successor=world["pat"])
    assert list(refused.value.errors) == ["successor"]
    assert not OwnershipTransfer.objects.exists()
