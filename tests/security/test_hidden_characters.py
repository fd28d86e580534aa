"""Names and labels refuse Unicode direction controls and zero-width characters, which make a name read
differently from what it is (``invoice\u202efdp.exe`` shows as ``invoiceexe.pdf``). One validator in the
core sits on the models' fields; every path that writes them refuses per field: model forms (the Django
admin), API serializers, the portal's forms through the services, and the CSV import per row."""

import pytest
from django.apps import apps
from django.urls import reverse
from rest_framework.test import APIClient

from attestations.models import Campaign
from contacts.models import CustomerContact
from keys.models import ApiKey, Customer, IntegrationToken, IssuingSystem, Workflow
from tests import factories

pytestmark = pytest.mark.django_db

SPOOFED = "invoice\u202efdp.exe"
HIDDEN = ["\u202e", "\u202a", "\u2066", "\u2069", "\u200e", "\u200f", "\u061c", "\u200b", "\u200c", "\u200d", "\u2060",
          "\ufeff"]
# Every human-entered name or label: (app label, model, field).
NAME_FIELDS = [
    ("keys", "customer", "name"), ("keys", "customer", "external_id"), ("keys", "workflow", "name"),
    ("keys", "issuingsystem", "name"), ("keys", "ownerprofile", "department"), ("keys", "apikey", "label"),
    ("keys", "integrationtoken", "name"), ("attestations", "campaignschedule", "name"),
    ("attestations", "campaign", "name"), ("contacts", "customercontact", "name"),
]


def client_for(user):
    client = APIClient()
    client.force_login(user)
    return client


@pytest.mark.parametrize("character", HIDDEN, ids=lambda c: f"U+{ord(c):04X}")
def test_the_validator_refuses_direction_controls_and_zero_width_characters(character):
    from django.core.exceptions import ValidationError

    from core.validators import refuse_hidden_characters

    with pytest.raises(ValidationError) as refused:
        refuse_hidden_characters(f"Nightly{character}export")
    message = refused.value.messages[0]
    assert f"U+{ord(character):04X}" in message and character not in message


@pytest.mark.parametrize("name", ["Zürich Rück", "東京 export", "Ελλάδα", "شركة النقل", "O'Brien & Sons – CRM (prod)"])
def test_ordinary_names_in_any_script_pass(name):
    from core.validators import refuse_hidden_characters

    refuse_hidden_characters(name)


@pytest.mark.parametrize(("app_label", "model", "field"), NAME_FIELDS, ids=lambda v: v)
def test_every_name_and_label_field_refuses_them(app_label, model, field):
    from django.core.exceptions import ValidationError

    model_field = apps.get_model(app_label, model)._meta.get_field(field)
    with pytest.raises(ValidationError):
        model_field.run_validators(SPOOFED)


def test_api_refuses_them_per_field(admin_user, owner):
    client = client_for(admin_user)
    response = client.post(reverse("customer-list"), {"name": SPOOFED, "external_id": "ACME\u200b1"}, format="json")
    assert response.status_code == 400
    assert set(response.json()) == {"name", "external_id"}
    customer = factories.CustomerFactory()
    response = client.post(reverse("workflow-list"), {
        "customer": customer.pk, "name": SPOOFED, "purpose": "Exports", "data_scope": "cases",
        "environment": "production", "business_owner": owner.username}, format="json")
    assert response.status_code == 400 and list(response.json()) == ["name"]
    response = client.post(reverse("apikey-list"), {
        "label": SPOOFED, "workflow": factories.WorkflowFactory().pk, "issuing_system": factories.IssuingSystemFactory().pk,
        "owner": owner.username, "fingerprint": "ab" * 32, "prefix": "sk_x_"}, format="json")
    assert response.status_code == 400 and list(response.json()) == ["label"]
    assert not Workflow.objects.filter(name=SPOOFED).exists() and not ApiKey.objects.exists()
    assert not Customer.objects.filter(name=SPOOFED).exists()


def test_admin_forms_refuse_them_per_field(admin_user):
    client = client_for(admin_user)
    response = client.post(reverse("admin:keys_issuingsystem_add"), {"name": SPOOFED, "kind": "manual"})
    assert response.status_code == 200
    assert "name" in response.context["adminform"].form.errors
    response = client.post(reverse("admin:keys_customer_add"), {
        "name": SPOOFED, "external_id": "ACME-1", "contract_status": "active"})
    assert response.status_code == 200
    assert "name" in response.context["adminform"].form.errors
    assert not IssuingSystem.objects.exists() and not Customer.objects.exists()


def test_portal_forms_refuse_them_beside_the_field(admin_user, compliance_user, owner):
    from tests.keys.test_key_views import register_data

    admin = client_for(admin_user)
    response = admin.post(reverse("keys:register"), register_data(label=SPOOFED))
    assert response.status_code == 400 and "label" in response.context["form"].errors
    response = admin.post(reverse("keys:tokens"), {"name": SPOOFED, "issuing_system": factories.IssuingSystemFactory().pk,
                                                  "acts_as": factories.UserFactory(username="svc").username})
    assert response.status_code == 400 and "name" in response.context["form"].errors
    compliance = client_for(compliance_user)
    response = compliance.post(reverse("contacts:invite"), {"customer": factories.CustomerFactory().pk,
                                                            "name": "Pat\u200dLee", "email": "pat@acme.test"})
    assert response.status_code == 400 and "name" in response.context["form"].errors
    response = compliance.post(reverse("attestations:campaign-create"), {
        "name": f"2026-Q4 {SPOOFED}", "duration_days": "14", "reminder_days": "3", "escalation_days": "10",
        "default_action": "revoke", "review_cadence_days": "90"})
    assert response.status_code == 400 and "name" in response.context["form"].errors
    assert not ApiKey.objects.exists() and not IntegrationToken.objects.exists()
    assert not CustomerContact.objects.exists() and not Campaign.objects.exists()


def test_import_refuses_the_row_beside_its_label(admin_user, owner, other_owner):
    from keys.services.importer import KeyImportError, import_keys
    from tests.keys.test_import import row, to_csv

    customer = factories.CustomerFactory(external_id="CUST-0001", name="Acme")
    factories.WorkflowFactory(customer=customer, name="Screening export")
    factories.IssuingSystemFactory(name="Gateway")
    with pytest.raises(KeyImportError) as refused:
        import_keys(to_csv([row(), row(label=SPOOFED)]), actor=admin_user, reason="import")
    assert [(r.line, r.field) for r in refused.value.rows] == [(3, "label")]
    assert "U+202E" in refused.value.rows[0].message
    assert not ApiKey.objects.exists()
