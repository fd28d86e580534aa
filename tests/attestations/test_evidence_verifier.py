"""``verify-evidence``, the auditors' offline check, run as installed (a subprocess with no Django settings):
it passes a good report of each kind, and fails, naming what is wrong, on altered copies."""

import csv
import hashlib
import io
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pikepdf
import pytest
from django.utils import timezone
from pypdf import PdfReader

from attestations.choices import ItemStatus
from attestations.services import evidence, evidence_signing
from evidence_verifier import statement
from tests import factories
from tests.attestations.evidence_helpers import decided_campaign, run_export
from tests.attestations.evidence_tsa import TimeStampAuthority

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media_root")]

SCRIPT = Path(sys.executable).parent / "verify-evidence"


def verify(*args, cwd) -> subprocess.CompletedProcess:
    assert SCRIPT.exists(), f"{SCRIPT} is missing: `python3 dev.py test` installs the project and its scripts"
    # Nothing of the portal's environment: no settings module, no database, run from elsewhere.
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO", "DATABASE", "EVIDENCE"))}
    return subprocess.run([str(SCRIPT), *map(str, args)], cwd=cwd, env=environment, capture_output=True, text=True,
                          timeout=120)


def failures(result) -> list[str]:
    return [line[len("FAIL  "):] for line in result.stdout.splitlines() if line.startswith("FAIL  ")]


@pytest.fixture
def campaign_report(compliance_user, owner, other_owner, monkeypatch, tmp_path, django_capture_on_commit_callbacks):
    campaign = decided_campaign(compliance_user, owner, other_owner, keys_per_owner=4)[0]
    monkeypatch.setattr(evidence, "CHUNK_SIZE", 3)
    export = run_export(django_capture_on_commit_callbacks, actor=compliance_user, kind="campaign", campaign=campaign)
    assert export.chunks_total == 4  # seven items printed in full in chunks of 3, and the sample of one
    return save(export, tmp_path / "campaign.pdf"), export


@pytest.fixture
def instance_pem(tmp_path):
    path = tmp_path / "evidence-signing.pem"
    path.write_bytes(evidence_signing.signing_certificate().pem)
    return path


def save(export, path: Path) -> Path:
    with export.file.open("rb") as f:
        path.write_bytes(f.read())
    return path


def rewritten(source: Path, target: Path, change) -> Path:
    """A copy of the report changed with pikepdf and saved whole (as an editing tool would)."""
    with pikepdf.open(source) as pdf:
        change(pdf)
        pdf.save(target)
    return target


def test_the_report_prints_what_the_verifier_reads(campaign_report):
    """The printed verification data, read back from the page text, is the file's own."""
    path, export = campaign_report
    printed = statement.read_pdf(PdfReader(path))
    assert printed.found and printed.complete and printed.problems == []
    with pikepdf.open(path) as pdf:
        attached = {name: a.get_file().read_bytes() for name, a in pdf.attachments.items()}
    assert printed.files == {name: hashlib.sha256(data).hexdigest() for name, data in attached.items()}
    name = f"campaign-{export.campaign_id}-items.csv"
    rows = list(csv.DictReader(io.StringIO(attached[name].decode())))
    assert printed.rows_file == name and printed.rows == len(rows) == export.campaign.items.count()
    counts = Counter(row["status"] for row in rows)
    assert printed.statuses == {status.value: counts.get(status.value, 0) for status in ItemStatus}
    assert printed.chain_digest == export.chain_head and printed.chain_seq > 0


def test_a_good_campaign_report_passes(campaign_report, instance_pem, tmp_path):
    path, export = campaign_report
    fingerprint = evidence_signing.signing_certificate().fingerprint
    result = verify(path, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert failures(result) == []
    assert "OK    signature: intact and valid, covers the whole file" in result.stdout
    assert "NOTE  signer not yet trusted: " in result.stdout and fingerprint in result.stdout
    assert "chain head: sequence" in result.stdout and export.chain_head in result.stdout
    assert f"OK    attachment campaign-{export.campaign_id}-items.csv: SHA-256" in result.stdout
    assert f"OK    totals of campaign-{export.campaign_id}-items.csv: 8 rows (pending 0; confirmed 1; released 1; " \
           "reassigned 0; expired 6), as printed" in result.stdout
    assert "NOTE  time-stamp: none" in result.stdout
    trusted = verify(path, "--cert", instance_pem, cwd=tmp_path)
    assert trusted.returncode == 0, trusted.stdout
    assert "OK    signer: the certificate given, " in trusted.stdout and "not yet trusted" not in trusted.stdout
    assert trusted.stderr == ""


@pytest.mark.parametrize("kind", ["key", "customer"])
def test_a_good_dossier_and_customer_report_pass(kind, owner, compliance_user, instance_pem, tmp_path,
                                                  django_capture_on_commit_callbacks):
    if kind == "key":
        key = factories.ApiKeyFactory(owner=owner)
        export = run_export(django_capture_on_commit_callbacks, actor=owner, kind="key", key=key)
        rows_file, rows = f"key-{key.pk}-events.csv", key.events.count()
    else:
        customer = factories.CustomerFactory()
        for _ in range(3):
            factories.ApiKeyFactory(owner=owner, workflow__customer=customer)
        export = run_export(django_capture_on_commit_callbacks, actor=compliance_user, kind="customer",
                            customer=customer, period_end=timezone.localdate())
        rows_file, rows = f"customer-{customer.pk}-keys.csv", 3
    result = verify(save(export, tmp_path / "report.pdf"), "--cert", instance_pem, cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    assert f"OK    totals of {rows_file}: {rows} rows, as printed" in result.stdout


def test_one_byte_changed_in_an_attachment_fails(campaign_report, instance_pem, tmp_path):
    path, export = campaign_report
    name = f"campaign-{export.campaign_id}-items.csv"

    def change_one_byte(pdf):
        stream = pdf.attachments[name].obj.EF.F
        data = stream.read_bytes()
        assert b",expired," in data
        stream.write(data.replace(b",expired,", b",expiree,", 1))  # one byte: an item's status

    result = verify(rewritten(path, tmp_path / "altered.pdf", change_one_byte), "--cert", instance_pem, cwd=tmp_path)
    assert result.returncode == 1
    found = failures(result)
    assert any(f.startswith(f"attachment {name}: SHA-256 is ") and "the report prints" in f for f in found), found
    assert f"totals of {name}: 5 rows with status expired, the report prints 6" in found
    assert f"totals of {name}: 1 row with status expiree, the report prints 0" in found
    assert not any(f.startswith("signer") for f in found), found  # the signer is still the one given
    assert any(f.startswith("signature") for f in found), found
    assert "Result: FAILED" in result.stdout


def first_text_glyph_changed(pdf):
    """Change one glyph of the first text shown on page 1 (the cover's first line)."""
    page = pdf.pages[0]
    instructions = pikepdf.parse_content_stream(page)
    for operands, operator in instructions:
        if operator == pikepdf.Operator("TJ"):
            for item in operands[0]:
                if isinstance(item, pikepdf.String) and len(bytes(item)) >= 2:
                    raw = bytearray(bytes(item))
                    raw[-1] ^= 1
                    operands[0][list(operands[0]).index(item)] = pikepdf.String(bytes(raw))
                    page.Contents = pdf.make_stream(pikepdf.unparse_content_stream(instructions))
                    return
    raise AssertionError("no text found on page 1")


def test_text_changed_on_a_page_fails(campaign_report, instance_pem, tmp_path):
    path, _ = campaign_report
    altered = rewritten(path, tmp_path / "altered.pdf", first_text_glyph_changed)
    assert PdfReader(altered).pages[0].extract_text() != PdfReader(path).pages[0].extract_text()
    result = verify(altered, "--cert", instance_pem, cwd=tmp_path)
    assert result.returncode == 1
    assert any(f.startswith("signature: the signed bytes were changed after signing") for f in failures(result)), \
        result.stdout


def test_text_changed_in_an_update_appended_after_signing_fails(campaign_report, instance_pem, tmp_path):
    """The signed bytes stay intact, but a later revision changes what page 1 shows."""
    from pyhanko.pdf_utils import generic
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

    path, _ = campaign_report
    with path.open("rb") as f:
        writer = IncrementalPdfFileWriter(f, strict=False)
        page = writer.root["/Pages"]["/Kids"][0].get_object()
        stamp = generic.StreamObject(stream_data=b"BT /F1 24 Tf 72 72 Td (Chain intact) Tj ET")
        page["/Contents"] = generic.ArrayObject([*page["/Contents"], writer.add_object(stamp)]) \
            if isinstance(page["/Contents"], generic.ArrayObject) else \
            generic.ArrayObject([page.raw_get("/Contents"), writer.add_object(stamp)])
        writer.update_container(page)
        out = io.BytesIO()
        writer.write(out)
    altered = tmp_path / "appended.pdf"
    altered.write_bytes(out.getvalue())
    result = verify(altered, "--cert", instance_pem, cwd=tmp_path)
    assert result.returncode == 1
    assert "signature: does not cover the whole file (something was added or changed after signing)" in failures(result)


def test_signature_removed_fails(campaign_report, instance_pem, tmp_path):
    path, _ = campaign_report

    def remove_signature(pdf):
        del pdf.Root.AcroForm
        for page in pdf.pages:
            if "/Annots" in page.obj:
                page.obj.Annots = pikepdf.Array([a for a in page.obj.Annots if a.get("/FT") != "/Sig"])

    result = verify(rewritten(path, tmp_path / "unsigned.pdf", remove_signature), "--cert", instance_pem, cwd=tmp_path)
    assert result.returncode == 1
    assert failures(result)[0] == "signature: the file is not signed"
    # The data still matches what is printed: only the signature is missing.
    assert all(f.startswith("signature") for f in failures(result)), failures(result)


def test_the_wrong_certificate_fails(campaign_report, tmp_path):
    path, _ = campaign_report
    _, other = evidence_signing.new_signing_identity("Someone else's evidence signing")
    other_pem = tmp_path / "other.pem"
    other_pem.write_bytes(other.public_bytes(evidence_signing.serialization.Encoding.PEM))
    result = verify(path, "--cert", other_pem, cwd=tmp_path)
    assert result.returncode == 1
    (failure,) = failures(result)
    assert failure == (f"signer: the report was signed by certificate {evidence_signing.signing_certificate().fingerprint}, "
                       f"not by the certificate given ({evidence_signing.fingerprint(other)})")


def test_a_time_stamped_report_shows_its_time_stamp(settings, owner, instance_pem, tmp_path,
                                                     django_capture_on_commit_callbacks):
    authority = TimeStampAuthority()
    try:
        settings.EVIDENCE_TSA_URL = authority.url
        export = run_export(django_capture_on_commit_callbacks, actor=owner, kind="key",
                            key=factories.ApiKeyFactory(owner=owner))
    finally:
        authority.stop()
    tsa_root = tmp_path / "tsa-root.pem"
    tsa_root.write_bytes(authority.ca_pem)
    report = save(export, tmp_path / "stamped.pdf")
    result = verify(report, "--cert", instance_pem, "--tsa-cert", tsa_root, cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    assert "token valid (the authority is the one given)" in result.stdout and "Test TSA" in result.stdout
    other_root = tmp_path / "other-root.pem"
    other_root.write_bytes(instance_pem.read_bytes())
    result = verify(report, "--cert", instance_pem, "--tsa-cert", other_root, cwd=tmp_path)
    assert result.returncode == 1
    assert failures(result) == ["time-stamp: the time-stamp authority is not the one given (--tsa-cert)"]


def test_not_a_pdf_or_no_such_file(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    assert verify(tmp_path / "notes.txt", cwd=tmp_path).returncode == 2
    missing = verify(tmp_path / "missing.pdf", cwd=tmp_path)
    assert missing.returncode == 2 and "missing.pdf" in missing.stderr
