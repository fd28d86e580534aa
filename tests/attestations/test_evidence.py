"""Evidence exports: the PDFs' content, attached data, signature, chunking and the chain verdict."""

import datetime
import hashlib
import re

import pytest
from django.core.files.storage import default_storage
from django.db import connection
from django.utils import timezone
from pypdf.generic import StreamObject

from attestations import tasks as evidence_tasks
from attestations.management.commands.make_signing_cert import make_signing_certificate
from attestations.models import EvidenceExport
from attestations.services import evidence, evidence_pdf, exports
from attestations.services.evidence_pdf import part_name
from keys.choices import KeyStatus, RevocationReason
from keys.models import ApiKey, RevocationRequest
from keys.services import lifecycle
from tests import factories
from tests.attestations.evidence_helpers import (
    FORMULA_JUSTIFICATION,
    attached_csv,
    decided_campaign,
    reader,
    run_export,
    text,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media_root")]


@pytest.fixture
def campaign(compliance_user, owner, other_owner):
    return decided_campaign(compliance_user, owner, other_owner)[0]


def export_campaign(capture, actor, campaign) -> EvidenceExport:
    return run_export(capture, actor=actor, kind="campaign", campaign=campaign)


def test_campaign_report_shows_decisions_names_dates_mapping_and_chain(
        campaign, compliance_user, django_capture_on_commit_callbacks):
    export = export_campaign(django_capture_on_commit_callbacks, compliance_user, campaign)
    pdf = reader(export)
    body = text(pdf)
    # Cover and identity on every page, numbered consistently.
    assert "Campaign report" in body and campaign.name in body and f"#{export.pk}" in body
    assert len(pdf.pages) == export.page_count
    for number in range(1, export.page_count + 1):
        assert f"Page {number} of {export.page_count}" in body
    assert body.count(f"Evidence export #{export.pk}") >= export.page_count - 1  # the cover has no running header
    # Decisions, deciders, dates, justification (escaped, not interpreted), default actions and key states.
    for item in campaign.items.select_related("key", "decided_by"):
        assert f"#{item.pk}" in body and item.key.label in body
        if item.decided_at:
            assert item.decided_at.strftime("%Y-%m-%d %H:%M") in body
    assert "alice" in body and "bob" in body and "carol" in body
    assert "Confirmed" in body and "Released" in body and "Expired (no response)" in body
    assert "<b>nightly</b>" in body and "Acme <Bank>" in body
    assert "Suspend the key" in body
    assert campaign.launched_at.strftime("%Y-%m-%d") in body
    # Control mapping, with the CSF 1.1 caveat, and the chain head.
    flat = " ".join(body.split())
    for control in ("NHI1:2025", "Improper Offboarding", "NHI3:2025", "Vulnerable Third-Party NHI", "PR.AA-01", "PR.AC-4",
                    "CC6.1", "CC6.2", "CC6.3", "A.5.15 Access control", "A.5.16 Identity management",
                    "A.5.18 Access rights", "A.8.2 Privileged access rights", "ISO/IEC 27001:2022 Annex A",
                    "AICPA Trust Services Criteria (SOC 2)", "Per section", "Per control"):
        assert control in flat, control
    assert "CSF 1.1 identifier" in body
    assert export.chain_ok is True and len(export.chain_head) == 64
    assert export.chain_head in body.replace("\n", "")
    assert "Chain intact" in body
    # The stored fields describe the stored file.
    export.file.open("rb")
    data = export.file.read()
    export.file.close()
    assert hashlib.sha256(data).hexdigest() == export.sha256 and len(data) == export.size
    seed = export.parameters["sample_seed"]
    assert re.fullmatch(r"[0-9a-f]{16}", seed)
    assert export.parameters == {"kind": "campaign", "campaign": campaign.pk, "subject": campaign.name,
                                 "print_all_items": False, "sample_seed": seed}
    assert export.requested_by == compliance_user and export.progress == 100 and export.finished_at


def test_attached_csv_and_json_match_the_database(campaign, compliance_user, django_capture_on_commit_callbacks):
    export = export_campaign(django_capture_on_commit_callbacks, compliance_user, campaign)
    pdf = reader(export)
    rows = attached_csv(pdf)
    items = list(campaign.items.select_related("key__workflow__customer", "reviewer", "decided_by").order_by("pk"))
    assert [int(r["item_id"]) for r in rows] == [i.pk for i in items]
    for row, item in zip(rows, items, strict=True):
        assert row["status"] == item.status
        assert row["reviewer"] == item.reviewer.username
        assert row["decided_by"] == (item.decided_by.username if item.decided_by else "")
        assert row["decided_at"] == (item.decided_at.isoformat() if item.decided_at else "")
        assert row["key_status_now"] == ApiKey.objects.get(pk=item.key_id).status
        assert row["default_action_applied"] == item.default_action_applied
        if item.justification == FORMULA_JUSTIFICATION:
            assert row["justification"] == "'" + FORMULA_JUSTIFICATION  # neutralised for spreadsheets
    (json_name,) = [n for n in pdf.attachments if n.endswith(".json")]
    assert '"name":"2026-Q4 review"' in pdf.attachments[json_name][0].decode()


def test_csv_neutralises_every_formula_start():
    for risky in ("=1+1", "+1", "-1", "@SUM(A1)"):
        assert evidence.neutralise(risky) == "'" + risky
    assert evidence.neutralise("plain") == "plain"


def test_chunked_rendering_gives_the_same_content_as_single(
        compliance_user, owner, other_owner, monkeypatch, django_capture_on_commit_callbacks):
    campaign = decided_campaign(compliance_user, owner, other_owner, keys_per_owner=4)[0]
    single = export_campaign(django_capture_on_commit_callbacks, compliance_user, campaign)
    monkeypatch.setattr(evidence, "CHUNK_SIZE", 3)
    chunked = export_campaign(django_capture_on_commit_callbacks, compliance_user, campaign)
    # Seven items printed in full (a release, six closed by the default action), then the one confirmation
    # drawn as the sample: a chunk each for the two in one piece, 3 + 3 + 1 and 1 in chunks of 3.
    assert (single.chunks_total, chunked.chunks_total) == (2, 4)
    assert chunked.chunks_done == 4
    single_pdf, chunked_pdf = reader(single), reader(chunked)
    assert attached_csv(single_pdf) == attached_csv(chunked_pdf)
    item_ids = re.compile(r"^#(\d+) ", re.MULTILINE)

    def items_listed(pdf):
        return item_ids.findall(text(pdf).split("Item, key, customer", 1)[1])

    confirmed = list(campaign.items.filter(status="confirmed").values_list("pk", flat=True))
    in_full = list(campaign.items.exclude(status="confirmed").order_by("pk").values_list("pk", flat=True))
    assert items_listed(single_pdf) == items_listed(chunked_pdf) == [str(pk) for pk in in_full + confirmed]
    chunked_text = text(chunked_pdf)
    for number in range(1, chunked.page_count + 1):
        assert f"Page {number} of {chunked.page_count}" in chunked_text
    # Stamping the page numbers leaves every page's content compressed (uncompressed it was 12x the size).
    for page in chunked_pdf.pages:
        contents = page["/Contents"].get_object()
        assert isinstance(contents, StreamObject) and contents.get("/Filter") == "/FlateDecode", contents
    # The parts are cleaned up once merged.
    assert not any(default_storage.exists(part_name(chunked.pk, i)) for i in range(3))


def test_key_dossier_covers_the_whole_life(compliance_user, admin_user, owner, other_owner,
                                            django_capture_on_commit_callbacks):
    key = factories.ApiKeyFactory(owner=owner, label="Payroll export", status=KeyStatus.ACTIVE)
    lifecycle.change_owner(key, actor=admin_user, new_owner=other_owner, reason="team moved")
    lifecycle.change_owner(key, actor=admin_user, new_owner=owner, reason="team moved back")
    lifecycle.revoke_key(key, actor=admin_user, reason_code=RevocationReason.CONTRACT_ENDED, reason="contract ended")
    RevocationRequest.objects.filter(key=key).update(acknowledged_at=timezone.now(), issuer_reference="GW-REV-4711")
    export = run_export(django_capture_on_commit_callbacks, actor=owner, kind="key", key=key)
    body = " ".join(text(reader(export)).split())
    for expected in ("Key dossier", "Payroll export", key.prefix, "Ownership", "team moved back", "bob", "alice",
                     "Revoked", "contract ended", "GW-REV-4711", "Issuer acknowledgement", "NHI1:2025", "PR.AA-01"):
        assert expected in body, expected
    rows = attached_csv(reader(export))
    assert {r["action"] for r in rows} >= {"change_owner", "revoke"}
    assert export.chain_head in body.replace(" ", "")


def test_customer_report_lists_every_key_of_the_customer_in_the_period(
        compliance_user, owner, django_capture_on_commit_callbacks):
    customer = factories.CustomerFactory(name="Globex")
    keys = [factories.ApiKeyFactory(owner=owner, workflow__customer=customer) for _ in range(3)]
    factories.ApiKeyFactory(owner=owner)  # another customer's key
    today = timezone.localdate()
    export = run_export(django_capture_on_commit_callbacks, actor=compliance_user, kind="customer", customer=customer,
                        period_start=today - datetime.timedelta(days=30), period_end=today)
    body = text(reader(export))
    assert "Customer report" in body and "Globex" in body
    rows = attached_csv(reader(export))
    assert sorted(int(r["key_id"]) for r in rows) == sorted(k.pk for k in keys)
    assert export.parameters["period_end"] == today.isoformat()


def test_signed_export_validates_with_pyhanko(campaign, compliance_user, settings, tmp_path,
                                              django_capture_on_commit_callbacks):
    from asn1crypto import x509 as asn1_x509
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko_certvalidator import ValidationContext

    settings.EVIDENCE_SIGNING_PASSWORD = "s3cret-pass"
    bundle = make_signing_certificate(tmp_path / "sign.p12", password="s3cret-pass")
    settings.EVIDENCE_SIGNING_PKCS12 = str(bundle)
    export = export_campaign(django_capture_on_commit_callbacks, compliance_user, campaign)
    assert export.signed
    pem = bundle.with_suffix(".pem").read_bytes()
    from cryptography import x509 as crypto_x509
    from cryptography.hazmat.primitives import serialization

    der = crypto_x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    context = ValidationContext(trust_roots=[asn1_x509.Certificate.load(der)])
    with export.file.open("rb") as f:
        pdf = PdfFileReader(f)
        (signature,) = pdf.embedded_signatures
        status = validate_pdf_signature(signature, context)
    assert status.intact and status.valid and status.trusted, status.pretty_print_details()
    assert status.coverage.name == "ENTIRE_FILE"
    # Signing after merging keeps the attachments and the text.
    signed = reader(export)
    assert len(attached_csv(signed)) == campaign.items.count()
    assert "Campaign report" in text(signed)


def test_tampered_history_row_makes_the_next_pdf_say_the_chain_is_broken(
        campaign, compliance_user, django_capture_on_commit_callbacks):
    before = export_campaign(django_capture_on_commit_callbacks, compliance_user, campaign)
    assert before.chain_ok is True
    record = ApiKey.history.model.objects.order_by("history_id").first()
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {ApiKey.history.model._meta.db_table} SET label = %s WHERE history_id = %s",
                       ["tampered", record.history_id])
    after = export_campaign(django_capture_on_commit_callbacks, compliance_user, campaign)
    assert after.chain_ok is False
    body = text(reader(after))
    assert "Chain BROKEN" in body
    assert f"keys.historicalapikey #{record.history_id}" in body
    assert "Chain intact" not in body


def test_chain_not_available_is_said_plainly(campaign, compliance_user, monkeypatch, django_capture_on_commit_callbacks):
    monkeypatch.setattr(evidence, "verify_history_chain", lambda: evidence.ChainResult(available=False, ok=None))
    export = export_campaign(django_capture_on_commit_callbacks, compliance_user, campaign)
    assert export.chain_ok is None and export.chain_head == ""
    assert "Chain not verified" in text(reader(export))


def test_a_failed_render_is_recorded(campaign, compliance_user, monkeypatch, django_capture_on_commit_callbacks):
    def broken(*args, **kwargs):
        raise RuntimeError("fonts missing")

    monkeypatch.setattr(evidence_tasks.evidence_pdf, "render_campaign_chunk", broken)
    with django_capture_on_commit_callbacks(execute=True):
        export = exports.request_export(actor=compliance_user, kind="campaign", campaign=campaign)
    export.refresh_from_db()
    assert export.status == EvidenceExport.Status.FAILED and "fonts missing" in export.error
    assert not export.file


def test_progress_is_recorded_while_rendering(campaign, compliance_user, monkeypatch, django_capture_on_commit_callbacks):
    seen = []
    original = exports.set_progress

    def spy(export_id, percent, note, **fields):
        seen.append(percent)
        original(export_id, percent, note, **fields)

    monkeypatch.setattr(exports, "set_progress", spy)
    export_campaign(django_capture_on_commit_callbacks, compliance_user, campaign)
    assert seen == sorted(seen) and len(seen) >= 4


def test_make_signing_cert_command(tmp_path, settings):
    from django.core.management import call_command

    settings.EVIDENCE_SIGNING_PASSWORD = ""
    out = tmp_path / "demo.p12"
    call_command("make_signing_cert", "--out", str(out))
    assert out.exists() and out.with_suffix(".pem").read_text().startswith("-----BEGIN CERTIFICATE-----")


def test_contents_name_the_page_each_section_and_chunk_starts_on(
        compliance_user, owner, other_owner, monkeypatch, django_capture_on_commit_callbacks):
    campaign = decided_campaign(compliance_user, owner, other_owner, keys_per_owner=30)[0]
    monkeypatch.setattr(evidence, "CHUNK_SIZE", 20)
    layouts = []
    real_layout = evidence_pdf.layout

    def counting_layout(template, context):
        layouts.append(template)
        return real_layout(template, context)

    monkeypatch.setattr(evidence_pdf, "layout", counting_layout)
    export = export_campaign(django_capture_on_commit_callbacks, compliance_user, campaign)
    # 59 items printed in full (a release and 58 defaults) in chunks of 20, then the sample of one.
    assert export.chunks_total == 4
    # The front's body is laid out once, beside the chunks; the assembly lays out only the cover and contents,
    # once when its guess of their length holds.
    assert layouts.count("evidence/campaign_front_body.html") == 1
    assert layouts.count("evidence/campaign_front.html") == 1
    pdf = reader(export)
    contents = text_of_page(pdf, 1) + text_of_page(pdf, 2)
    starts = re.findall(r"Printed in full: items #(\d+) to #(\d+) +(\d+)", contents)
    assert len(starts) == 3
    (sample_page,) = re.findall(r"Sample draws 1 to 1 of 1 +(\d+)", contents)
    (confirmed,) = campaign.items.filter(status="confirmed").values_list("pk", flat=True)
    starts.append((str(confirmed), None, sample_page))
    for first, _last, page in starts:
        assert re.search(rf"^\s*#{first} ", text_of_page(pdf, int(page) - 1), re.MULTILINE), (first, page)
        assert not re.search(rf"^\s*#{first} ", text_of_page(pdf, int(page) - 2), re.MULTILINE)
    # Each section of the front's body starts on the page the contents name.
    for _anchor, title in evidence_pdf.FRONT_SECTIONS:
        (page,) = re.findall(rf"^\s*{re.escape(title)} +(\d+)\s*$", contents, re.MULTILINE)
        heading = re.compile(rf"^\s*{re.escape(title)}\s*$", re.MULTILINE)
        assert heading.search(text_of_page(pdf, int(page) - 1)), (title, page)
        assert not any(heading.search(text_of_page(pdf, n)) for n in range(2, int(page) - 1)), (title, page)
    assert not default_storage.exists(evidence_pdf.front_name(export.pk))
    assert not default_storage.exists(evidence_pdf.body_name(export.pk))


def test_a_part_rendered_twice_changes_nothing(
        compliance_user, owner, other_owner, monkeypatch, django_capture_on_commit_callbacks):
    """acks_late redelivers a task whose worker died before acknowledging it: every part task may run twice, in
    any order, and the export is still assembled once, from whole parts."""
    campaign = decided_campaign(compliance_user, owner, other_owner, keys_per_owner=4)[0]
    monkeypatch.setattr(evidence, "CHUNK_SIZE", 3)
    rendered, assembled = [], []
    real_chunk, real_assemble = evidence_pdf.render_campaign_chunk, evidence_tasks.assemble_export.run
    monkeypatch.setattr(evidence_pdf, "render_campaign_chunk",
                        lambda export, plan, index: rendered.append(index) or real_chunk(export, plan, index))
    monkeypatch.setattr(evidence_tasks.assemble_export, "run",
                        lambda export_id: assembled.append(export_id) or real_assemble(export_id))
    # The workers get every part task twice, the front's body last, and the first chunk's file is cut short
    # as by a worker killed while writing it: it is rendered again, once.
    real_group = evidence_tasks.group

    def delivered_twice(signatures):
        front, *chunks = signatures
        return real_group([*chunks, *chunks, front, front])

    monkeypatch.setattr(evidence_tasks, "group", delivered_twice)
    real_replace = evidence_pdf._replace

    def cut_short(name, content):
        real_replace(name, content[:100] if name.endswith("chunk-00000.pdf") and 0 not in rendered[1:] else content)

    monkeypatch.setattr(evidence_pdf, "_replace", cut_short)
    # The start itself is delivered again while its parts render: it sends them again, and re-plans nothing.
    real_front, started_again = evidence_tasks.render_export_front.run, []

    def front_after_a_second_start(export_id):
        if not started_again:
            started_again.append(export_id)
            evidence_tasks.render_export.run(export_id)
        real_front(export_id)

    monkeypatch.setattr(evidence_tasks.render_export_front, "run", front_after_a_second_start)
    export = export_campaign(django_capture_on_commit_callbacks, compliance_user, campaign)
    assert export.chunks_total == 4 and export.chunks_done == 4
    assert sorted(rendered) == [0, 0, 1, 2, 3]
    assert assembled == [export.pk] and started_again == [export.pk]
    assert export.history.filter(status=EvidenceExport.Status.DONE).count() == 1
    pdf = reader(export)
    assert len(attached_csv(pdf)) == campaign.items.count()
    for number in range(1, export.page_count + 1):
        assert f"Page {number} of {export.page_count}" in text(pdf)


def text_of_page(pdf, index: int) -> str:
    return pdf.pages[index].extract_text(extraction_mode="layout")


NEW_CONTROLS = {
    "CC6.1": "The entity implements logical access security software, infrastructure, and architectures over "
             "protected information assets to protect them from security events to meet the entity's objectives.",
    "CC6.2": "Prior to issuing system credentials and granting system access, the entity registers and authorizes new "
             "internal and external users whose access is administered by the entity.",
    "CC6.3": "The entity authorizes, modifies, or removes access to data, software, functions, and other protected "
             "information assets based on roles, responsibilities, or the system design and changes",
    "A.5.15": "Access control",
    "A.5.16": "Identity management",
    "A.5.18": "Access rights",
    "A.8.2": "Privileged access rights",
}


@pytest.mark.parametrize("kind", list(EvidenceExport.Kind))
def test_control_mapping_reads_both_ways_and_every_control_names_its_sections(kind):
    controls = {c.id: c for c in evidence.CONTROLS}
    for control_id, title in NEW_CONTROLS.items():
        assert controls[control_id].title.startswith(title), control_id
    assert {c.framework for c in evidence.CONTROLS} >= {
        "AICPA Trust Services Criteria (SOC 2), 2017, revised points of focus 2022", "ISO/IEC 27001:2022 Annex A",
        "OWASP Non-Human Identities Top 10 (2025)", "NIST Cybersecurity Framework 2.0"}
    per_section = evidence.control_mapping(kind)
    per_control = evidence.sections_by_control(kind)
    assert [entry["control"] for entry in per_control] == list(evidence.CONTROLS)
    for entry in per_control:
        # Every control, the new ones included, is evidenced by at least one section of each kind of report...
        assert entry["sections"], (kind, entry["control"].id)
        # ...and the two readings agree.
        for section in entry["sections"]:
            (row,) = [r for r in per_section if r["section"] == section]
            assert entry["control"] in row["controls"]
    for row in per_section:
        for control in row["controls"]:
            assert row["section"] in next(e["sections"] for e in per_control if e["control"] == control)


def test_dossier_and_customer_report_print_the_new_controls_with_their_sections(
        compliance_user, owner, django_capture_on_commit_callbacks):
    key = factories.ApiKeyFactory(owner=owner)
    dossier = run_export(django_capture_on_commit_callbacks, actor=compliance_user, kind="key", key=key)
    customer = run_export(django_capture_on_commit_callbacks, actor=compliance_user, kind="customer",
                          customer=key.workflow.customer)
    for export, section in ((dossier, "Registration and approval"), (customer, "Keys of the customer")):
        flat = " ".join(text(reader(export)).split())
        for control_id, title in NEW_CONTROLS.items():
            assert f"{control_id} {title}" in flat, (export.kind, control_id)
        assert "Privileged access rights" in flat and section in flat
