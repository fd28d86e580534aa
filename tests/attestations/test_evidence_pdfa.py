"""The delivered evidence file is PDF/A-3b, not only its parts: a campaign report of several chunks, a key
dossier and a customer report, each as assembled (before signing) and as delivered (signed)."""

import datetime
import io

import pikepdf
import pytest
from django.utils import timezone

from attestations.choices import ItemStatus
from attestations.services import evidence, evidence_signing
from tests import factories
from tests.attestations.evidence_helpers import decided_campaign, run_export
from tests.attestations.pdfa import assert_pdfa3b

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media_root")]


@pytest.fixture
def unsigned(monkeypatch):
    """The file each export hands to the signer: the assembled, unsigned PDF."""
    seen = []
    real_sign = evidence_signing.sign

    def spy(pdf):
        seen.append(pdf)
        return real_sign(pdf)

    monkeypatch.setattr(evidence_signing, "sign", spy)
    return seen


def delivered(export) -> bytes:
    with export.file.open("rb") as f:
        return f.read()


def export_of(kind, capture, compliance_user, owner, other_owner, monkeypatch):
    if kind == "campaign":
        campaign = decided_campaign(compliance_user, owner, other_owner, keys_per_owner=4)[0]
        monkeypatch.setattr(evidence, "CHUNK_SIZE", 3)
        export = run_export(capture, actor=compliance_user, kind="campaign", campaign=campaign)
        assert export.chunks_total == 4  # seven items printed in full in chunks of 3, and the sample of one
        return export
    if kind == "key":
        return run_export(capture, actor=owner, kind="key", key=factories.ApiKeyFactory(owner=owner))
    customer = factories.CustomerFactory(name="Globex")
    for _ in range(2):
        factories.ApiKeyFactory(owner=owner, workflow__customer=customer)
    today = timezone.localdate()
    return run_export(capture, actor=compliance_user, kind="customer", customer=customer,
                      period_start=today - datetime.timedelta(days=30), period_end=today)


@pytest.mark.parametrize("kind", ["campaign", "key", "customer"])
def test_delivered_file_is_pdfa_3b_signed_and_unsigned(kind, compliance_user, owner, other_owner, monkeypatch, unsigned,
                                                      django_capture_on_commit_callbacks):
    export = export_of(kind, django_capture_on_commit_callbacks, compliance_user, owner, other_owner, monkeypatch)
    (before_signing,) = unsigned
    signed = delivered(export)
    assert signed.startswith(before_signing)  # the signature is an incremental update of the assembled file
    for data in (before_signing, signed):
        report = assert_pdfa3b(data)
        assert report.pages == export.page_count
        assert sorted(report.attachments) == sorted(n for n in report.attachments if n.endswith((".csv", ".json")))
        assert len(report.attachments) == 2
    assert export.signed
    if kind == "campaign":
        # Every page carries the "Page N of M" overlay, and its font is embedded like the rest.
        assert all(fonts for fonts in report.form_fonts_per_page), report.form_fonts_per_page
    with pikepdf.open(io.BytesIO(signed)) as pdf:
        assert pdf.Root.AcroForm.SigFlags == 3  # the PAdES signature field


def test_campaign_report_keeps_the_fronts_identification_and_attachments(
        compliance_user, owner, other_owner, monkeypatch, django_capture_on_commit_callbacks):
    campaign = decided_campaign(compliance_user, owner, other_owner, keys_per_owner=4)[0]
    monkeypatch.setattr(evidence, "CHUNK_SIZE", 3)
    export = run_export(django_capture_on_commit_callbacks, actor=compliance_user, kind="campaign", campaign=campaign)
    with pikepdf.open(io.BytesIO(delivered(export))) as pdf:
        meta = pdf.open_metadata(set_pikepdf_as_editor=False, update_docinfo=False)
        assert meta.get("dc:title") == f"Evidence export #{export.pk} · Campaign report · {campaign.name}"
        assert len(pdf.Root.AF) == 2  # each attachment listed once
        for spec in pdf.Root.AF:
            assert spec.AFRelationship == "/Data"
    csv = assert_pdfa3b(delivered(export)).attachments[f"campaign-{campaign.pk}-items.csv"].decode()
    assert csv.count("\n") == campaign.items.count() + 1
    assert {ItemStatus.CONFIRMED, ItemStatus.RELEASED} <= {line.split(",")[8] for line in csv.splitlines()[1:]}


def test_the_check_catches_what_it_looks_for(compliance_user, owner, django_capture_on_commit_callbacks):
    """The helper itself: a file without PDF/A identification, or with JavaScript, is refused."""
    export = run_export(django_capture_on_commit_callbacks, actor=owner, kind="key",
                        key=factories.ApiKeyFactory(owner=owner))
    good = delivered(export)
    assert_pdfa3b(good)

    def altered(change) -> bytes:
        with pikepdf.open(io.BytesIO(good)) as pdf:
            change(pdf)
            out = io.BytesIO()
            pdf.save(out)
            return out.getvalue()

    def drop_identification(pdf):
        with pdf.open_metadata(set_pikepdf_as_editor=False) as meta:
            del meta["pdfaid:part"]

    def add_javascript(pdf):
        pdf.Root.OpenAction = pikepdf.Dictionary(S=pikepdf.Name.JavaScript, JS=pikepdf.String("app.alert(1)"))

    def drop_output_intent(pdf):
        del pdf.Root.OutputIntents

    def unlist_attachments(pdf):
        del pdf.Root.AF

    for change, message in ((drop_identification, "None"), (add_javascript, "JavaScript"),
                            (drop_output_intent, "output intents"), (unlist_attachments, "/AF")):
        with pytest.raises(AssertionError, match=message):
            assert_pdfa3b(altered(change))
