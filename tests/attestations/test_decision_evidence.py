"""Evidence frozen into each decision, reviewer-quality signals, and both in the campaign report PDF."""

import datetime

import pytest
from django.urls import reverse
from django.utils import timezone

from attestations.choices import Decision
from attestations.services import campaigns, decisions, review_quality
from keys.choices import ExceptionStatus
from keys.services.usage import ingest_usage
from tests import factories
from tests.attestations.evidence_helpers import attached_csv, reader, run_export, text

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media_root")]


@pytest.fixture
def reviewed(owner, other_owner, compliance_user, admin_user):
    """alice owns a used key with an exception, a key she approved herself (self-review) and two to bulk-confirm."""
    used = factories.ApiKeyFactory(owner=owner, label="Nightly export")
    now = timezone.now()
    ingest_usage([
        {"id": "a", "key": used.pk, "at": (now - datetime.timedelta(days=2)).isoformat(), "source": "10.1.1.1"},
        {"id": "b", "key": used.pk, "at": (now - datetime.timedelta(days=2)).isoformat(), "source": "batch-runner"},
        {"id": "c", "key": used.pk, "at": (now - datetime.timedelta(days=60)).isoformat(), "source": "10.1.1.1"},
    ])
    exception = factories.KeyExceptionFactory(key=used, requested_by=other_owner, status=ExceptionStatus.APPROVED)
    own = factories.ApiKeyFactory(owner=owner, label="Self approved", approved_by=owner, steward=owner)
    bulk = [factories.ApiKeyFactory(owner=owner, label=f"Bulk {n}") for n in range(2)]
    campaign = campaigns.create_campaign(actor=compliance_user, name="2026-Q4 quality", require_justification=False)
    campaigns.launch_campaign(campaign, actor=compliance_user)
    return campaign, used, own, bulk, exception


def test_decision_freezes_what_the_reviewer_saw(client, reviewed, owner):
    campaign, used, own, bulk, exception = reviewed
    item = campaign.items.get(key=used)
    client.force_login(owner)
    assert client.get(reverse("attestations:item", args=[item.pk])).status_code == 200
    item.refresh_from_db()
    assert item.shown_at is not None
    decisions.record_decision(item, actor=owner, decision=Decision.CONFIRM, affirm=True, reaffirm_exception=True)
    item.refresh_from_db()
    evidence = item.evidence
    assert evidence["calls_30d"] == 2 and evidence["calls_90d"] == 3
    assert evidence["sources"] == ["10.1.1.1", "batch-runner"]
    assert evidence["last_used_at"].startswith(used.__class__.objects.get(pk=used.pk).last_used_at.date().isoformat())
    assert evidence["open_exceptions"] == [
        {"id": exception.pk, "kind": "transitional", "status": "approved", "due_on": exception.end_date.isoformat()}]
    assert item.batch_size == 1 and item.self_review == []
    # Later usage does not change what was frozen.
    ingest_usage([{"id": "d", "key": used.pk, "at": timezone.now().isoformat(), "source": "new-host"}])
    item.refresh_from_db()
    assert item.evidence == evidence
    page = client.get(reverse("attestations:item", args=[item.pk]))
    assert "What the reviewer saw when deciding" in page.text and "batch-runner" in page.text
    assert f"#{exception.pk} transitional (approved" in page.text


def test_self_review_and_bulk_batches_are_recorded(reviewed, owner, compliance_user):
    campaign, used, own, bulk, _ = reviewed
    own_item = campaign.items.get(key=own)
    decisions.record_decision(own_item, actor=owner, decision=Decision.CONFIRM, affirm=True)
    own_item.refresh_from_db()
    assert own_item.self_review == ["approved_key", "owner_is_steward"]
    done, refused = decisions.bulk_confirm([i.pk for i in campaign.items.filter(key__in=bulk)], actor=owner,
                                           justification="still used", affirm=True)
    assert len(done) == 2 and not refused
    assert set(campaign.items.filter(key__in=bulk).values_list("batch_size", flat=True)) == {2}
    quality = {row["reviewer"]: row for row in review_quality.reviewer_quality(campaign)}["alice"]
    assert quality["decisions"] == 3 and quality["bulk_decisions"] == 2 and quality["largest_batch"] == 2
    assert quality["self_review_decisions"] == 1 and quality["median_seconds_to_decide"] is not None
    assert quality["rapid_decisions"] == 2  # three decisions within a few milliseconds of each other


def test_campaign_page_shows_reviewer_quality(client, reviewed, owner, compliance_user):
    campaign, used, own, bulk, _ = reviewed
    decisions.record_decision(campaign.items.get(key=own), actor=owner, decision=Decision.CONFIRM, affirm=True)
    client.force_login(compliance_user)
    page = client.get(reverse("attestations:campaign", args=[campaign.pk]))
    assert page.status_code == 200
    assert "Reviewer quality" in page.text and "Self-review" in page.text
    assert "revoked at once" not in page.text and "7-day grace window" in page.text


def test_campaign_report_pdf_prints_frozen_evidence_and_reviewer_quality(
        reviewed, owner, compliance_user, django_capture_on_commit_callbacks):
    campaign, used, own, bulk, _ = reviewed
    decisions.record_decision(campaign.items.get(key=used), actor=owner, decision=Decision.CONFIRM, affirm=True,
                              reaffirm_exception=True)
    decisions.record_decision(campaign.items.get(key=own), actor=owner, decision=Decision.CONFIRM, affirm=True)
    decisions.bulk_confirm([i.pk for i in campaign.items.filter(key__in=bulk)], actor=owner, justification="ok",
                           affirm=True)
    export = run_export(django_capture_on_commit_callbacks, actor=compliance_user, kind="campaign", campaign=campaign)
    pdf = reader(export)
    body = " ".join(text(pdf).split())
    assert "Reviewer quality" in body
    assert "Seen: last used" in body and "2 calls in 30 days, 3 in 90" in body and "batch-runner" in body
    assert "Self-review: approved the key; owner is also the steward" in body
    rows = {row["key_label"]: row for row in attached_csv(pdf)}
    assert "2 calls in 30 days" in rows["Nightly export"]["evidence_seen"]
    assert rows["Self approved"]["self_review"] == "approved the key; owner is also the steward"
    quality_row = next(r for r in review_quality.reviewer_quality(campaign) if r["reviewer"] == "alice")
    assert (quality_row["decisions"], quality_row["bulk_decisions"], quality_row["largest_batch"],
            quality_row["self_review_decisions"]) == (4, 2, 2, 1)
    section = body[body.index("Reviewer quality Per person"):]
    table = section[section.index("Self-review alice"):][:120]
    assert table.startswith("Self-review alice 4 ") and " 2 2 1" in table
