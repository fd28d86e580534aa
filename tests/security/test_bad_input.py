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
