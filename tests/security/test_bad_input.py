"""Bad input to the portal's forms and the API: each refused with a message on the field at fault, and
nothing written. Out-of-range and impossible dates, unknown references, out-of-range numbers."""

import datetime

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from attestations.choices import DefaultAction
from attestations.models import Campaign, EvidenceExport, OwnershipTransfer
from attestations.services import campaigns
from keys.models import KeyException, UsageDaily, UsageEventReceipt

pytestmark = pytest.mark.django_db

PAST = (datetime.date.today() - datetime.timedelta(days=400)).isoformat()
FAR = "9999-12-31"


def _errors(response) -> dict:
    form = response.context["form"]
    return {field: list(messages) for field, messages in form.errors.items()}


@pytest.mark.parametrize(("data", "field"), [
    ({"kind": "transitional", "migration_target": "oauth", "end_date": "2026-02-30"}, "end_date"),
    ({"kind": "transitional", "migration_target": "oauth", "end_date": "99999-01-01"}, "end_date"),
    ({"kind": "transitional", "migration_target": "oauth", "end_date": PAST}, "end_date"),
    ({"kind": "transitional", "migration_target": "oauth", "end_date": FAR}, "end_date"),
    ({"kind": "permanent", "risk_acceptance": "Accepted.", "review_date": PAST}, "review_date"),
    ({"kind": "nonsense"}, "kind"),
])
def test_exception_request_refuses_bad_dates_and_choices(client, owner, key, data, field):
    client.force_login(owner)
    payload = {"business_justification": "The vendor SDK needs a key.", "blast_radius": "medium",
               "replaceability": "with_effort", "compensating_controls": ["secret_manager"], **data}
    response = client.post(reverse("keys:exception-request", args=[key.pk]), payload)
    assert response.status_code == 400
    assert field in _errors(response), _errors(response)
    assert not KeyException.objects.exists()


@pytest.mark.parametrize(("data", "field"), [
    ({"customers": ["999999"]}, "customers"),
    ({"workflows": ["999999"]}, "workflows"),
    ({"duration_days": "-3"}, "duration_days"),
    ({"duration_days": "100000"}, "duration_days"),
    ({"reminder_days": "tomorrow"}, "reminder_days"),
    ({"default_action": "delete_everything"}, "default_action"),
])
def test_campaign_form_refuses_unknown_references_and_out_of_range_numbers(client, compliance_user, key, data, field):
    client.force_login(compliance_user)
    payload = {"name": "2026-Q4", "duration_days": "14", "reminder_days": "3,7", "default_action": "suspend",
               "review_cadence_days": "90", **data}
    response = client.post(reverse("attestations:campaign-create"), payload)
    assert response.status_code == 400
    assert field in _errors(response), _errors(response)
    assert not Campaign.objects.exists()


@pytest.mark.parametrize(("data", "field"), [
    ({"kind": "customer", "customer": "999999"}, "customer"),
    ({"kind": "campaign", "campaign": "999999"}, "campaign"),
    ({"kind": "customer", "period_start": "0000-01-01"}, "period_start"),
    ({"kind": "customer", "period_start": "2026-06-01", "period_end": "2026-01-01"}, "period_end"),
    ({"kind": "customer", "period_end": FAR}, "period_end"),
])
def test_export_form_refuses_unknown_subjects_and_bad_periods(client, compliance_user, key, data, field, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    client.force_login(compliance_user)
    payload = {"customer": str(key.workflow.customer_id), **data}
    response = client.post(reverse("attestations:export-create"), payload)
    assert response.status_code == 400
    errors = _errors(response)
    assert field in errors or "__all__" in errors, errors
    assert not EvidenceExport.objects.exists()


def test_reassign_to_an_unknown_person_is_refused_and_writes_nothing(client, owner, compliance_user, key):
    campaign = campaigns.create_campaign(actor=compliance_user, name="Q4", default_action=DefaultAction.KEEP_AND_FLAG)
    campaigns.launch_campaign(campaign, actor=compliance_user)
    item = campaign.items.get()
    client.force_login(owner)
    response = client.post(reverse("attestations:decide", args=[item.pk]),
                           {"decision": "reassign", "to": "nobody-of-that-name", "justification": "Moved teams."})
    assert response.status_code == 400
    assert "nobody-of-that-name" in response.content.decode()
    item.refresh_from_db()
    assert item.status == "pending" and not OwnershipTransfer.objects.exists()


@pytest.mark.parametrize(("at", "reason"), [
    ("1900-01-01T00:00:00Z", "older than"),
    ("9999-12-31T00:00:00Z", "in the future"),
    ("2026-02-30T10:00:00Z", "ISO-8601"),
    ("yesterday", "ISO-8601"),
])
def test_usage_batch_rejects_out_of_range_times_by_row_and_writes_nothing_for_them(admin_user, key, at, reason):
    client = APIClient()
    client.force_login(admin_user)
    response = client.post(reverse("usage-list"), {"events": [{"id": "bad-1", "key": key.pk, "at": at,
                                                               "source": "10.0.0.1"}]}, format="json")
    body = response.json()
    assert body["accepted"] == 0
    assert [r["index"] for r in body["rejected"]] == [0]
    assert body["rejected"][0]["reason"].startswith("at:") and reason in body["rejected"][0]["reason"]
    assert not UsageDaily.objects.exists() and not UsageEventReceipt.objects.exists()
    key.refresh_from_db()
    assert key.last_used_at is None


BEYOND_64_BITS = [str(2**63), str(-(2**63) - 1), "1" * 23, "-8.5e282"]


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 10**22])
def test_usage_batch_rejects_a_key_id_beyond_64_bits_by_row(admin_user, key, value):
    client = APIClient()
    client.force_login(admin_user)
    response = client.post(reverse("usage-list"), {"events": [
        {"id": "far", "key": value, "at": "2026-11-02T09:15:00Z", "source": "10.0.0.1"},
    ]}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["accepted"] == 0 and [r["index"] for r in body["rejected"]] == [0]
    assert body["rejected"][0]["reason"].startswith("key:"), body
    assert not UsageEventReceipt.objects.exists()


@pytest.mark.parametrize("value", BEYOND_64_BITS)
@pytest.mark.parametrize(("name", "field"), [
    ("attestation-list", "campaign"),
    ("keyexception-list", "customer"),
    ("apikey-list", "unused_days"),
])
def test_api_number_filters_refuse_values_beyond_64_bits(admin_user, key, name, field, value):
    client = APIClient()
    client.force_login(admin_user)
    response = client.get(reverse(name), {field: value})
    assert response.status_code == 400, response.content
    assert list(response.json()) == [field], response.json()


@pytest.mark.parametrize(("name", "body", "field"), [
    ("apikey-list", {"label": "x", "workflow": 2**63, "owner": "alice", "secret": "sk_live_0123456789abcdefghij"},
     "workflow"),
    ("campaign-list", {"name": "far", "customers": [2**63]}, "customers"),
    ("campaign-list", {"name": "far", "workflows": [-(2**63) - 1]}, "workflows"),
    ("campaign-list", {"name": "far", "duration_days": 2**70}, "duration_days"),
    ("export-list", {"kind": "key", "key": 2**63}, "key"),
])
def test_api_bodies_refuse_ids_and_numbers_beyond_64_bits_by_field(admin_user, key, name, body, field):
    client = APIClient()
    client.force_login(admin_user)
    response = client.post(reverse(name), body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json(), response.json()


@pytest.mark.parametrize("field", ["customers", "workflows"])
def test_campaign_form_refuses_ids_beyond_64_bits(client, compliance_user, key, field):
    client.force_login(compliance_user)
    payload = {"name": "2026-Q4", "duration_days": "14", "reminder_days": "3", "default_action": "suspend",
               "review_cadence_days": "90", field: [str(2**63)]}
    response = client.post(reverse("attestations:campaign-create"), payload)
    assert response.status_code == 400
    assert field in _errors(response), _errors(response)
    assert not Campaign.objects.exists()


def test_bulk_confirm_refuses_item_ids_beyond_64_bits(client, owner, key):
    client.force_login(owner)
    response = client.post(reverse("attestations:bulk-confirm"), {"items": [str(2**63)], "affirm": "on"}, follow=True)
    assert response.status_code == 200
    assert "Unknown item." in [str(m) for m in response.context["messages"]]


@pytest.mark.parametrize(("name", "body", "field"), [
    ("apikey-list", {"label": "x", "owner": "al\x00ice", "secret": "sk_live_0123456789abcdefghij"}, "owner"),
    ("apikey-list", {"label": "x", "owner": "alice", "steward": "\x00", "secret": "sk_live_0123456789abcdefghij"},
     "steward"),
    ("customer-list", {"name": "x", "external_id": "y", "contract_status": "active", "account_manager": "\x00"},
     "account_manager"),
])
def test_api_usernames_with_a_nul_character_are_refused_by_field(admin_user, key, name, body, field):
    """PostgreSQL cannot compare text holding a NUL character: such a name is refused before any query."""
    client = APIClient()
    client.force_login(admin_user)
    if name == "apikey-list":
        body = {**body, "workflow": key.workflow_id}
    response = client.post(reverse(name), body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json(), response.json()


@pytest.mark.parametrize(("event", "field"), [
    ({"id": "nul", "key": "sk\x00live"}, "key"),
    ({"id": "nul", "source": "10.0.0.1\x00"}, "source"),
    ({"id": "n\x00l"}, "id"),
])
def test_usage_batch_rejects_text_with_a_nul_character_by_row(admin_user, key, event, field):
    client = APIClient()
    client.force_login(admin_user)
    event = {"key": key.pk, "at": "2026-11-02T09:15:00Z", **event}
    response = client.post(reverse("usage-list"), {"events": [event]}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["accepted"] == 0 and [r["index"] for r in body["rejected"]] == [0]
    assert body["rejected"][0]["reason"].startswith(f"{field}:"), body
    assert not UsageEventReceipt.objects.exists()
