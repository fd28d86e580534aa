"""Rendering evidence PDFs: Django templates through WeasyPrint, chunks merged with pypdf, signed with pyHanko.

A campaign report is rendered in parts: each chunk of items is its own WeasyPrint document (memory
stays bounded by the chunk, and chunks run in parallel on several workers); the front matter (cover,
contents, control mapping, chain verification, summary) is rendered last, when the chunks' page
counts are known, and carries the CSV/JSON attachments. Its contents name the page each chunk starts
on, which depends on the front's own length: a measuring task renders the front once while the chunks
render, so the final front is laid out once, at the end. The parts are merged, "Page N of M" is
stamped over every page from one cheap WeasyPrint document of empty pages, and the result is signed.
Key dossiers and customer reports are small and rendered in one pass.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from pathlib import Path

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.template.loader import render_to_string
from pypdf import PdfReader, PdfWriter

from attestations.models import EvidenceExport
from attestations.services import evidence

log = logging.getLogger(__name__)
Kind = EvidenceExport.Kind
PRINT_CSS = Path(settings.BASE_DIR) / "static" / "css" / "evidence.css"
PDF_VARIANT = "pdf/a-3b"


def _weasyprint():
    import weasyprint  # imported lazily: it loads fonts and Pango, which web requests never need

    return weasyprint


def identity(export: EvidenceExport) -> str:
    return f"Evidence export #{export.pk} · {export.get_kind_display()} · {export.parameters.get('subject', '')}"


def base_context(export: EvidenceExport, **extra) -> dict:
    return {"export": export, "identity": identity(export), "generated_at": extra.pop("generated_at", None),
            "controls": evidence.CONTROLS, "by_control": evidence.sections_by_control(export.kind),
            "signing": signing_configured(), **extra}


def _breakdowns(summary: dict) -> list[tuple[str, list[dict]]]:
    statuses = [value for value, _ in summary["statuses"]]
    return [
        (title, [{"name": r["name"], "total": r["total"], "counts": [r[s] for s in statuses]} for r in rows])
        for title, rows in (("Per customer", summary["per_customer"]), ("Per owner", summary["per_owner"]))
    ]


def html_to_pdf(template: str, context: dict, *, attachments=None, variant: str | None = None) -> bytes:
    return write_pdf(layout(template, context), attachments=attachments, variant=variant)


def layout(template: str, context: dict):
    """Lay the template out into pages (WeasyPrint's costly step); ``write_pdf`` turns them into a file."""
    weasyprint = _weasyprint()
    html = render_to_string(template, context)
    return weasyprint.HTML(string=html, base_url=str(settings.BASE_DIR)).render(
        stylesheets=[weasyprint.CSS(filename=str(PRINT_CSS))])


def write_pdf(document, *, attachments=None, variant: str | None = None) -> bytes:
    weasyprint = _weasyprint()
    options = {}
    if variant:
        options["pdf_variant"] = variant
    if attachments:
        options["attachments"] = [
            weasyprint.Attachment(string=content, name=name, description=description, relationship="Data")
            for name, content, description in attachments
        ]
    return document.write_pdf(**options)


def page_count(pdf: bytes) -> int:
    return len(PdfReader(io.BytesIO(pdf)).pages)


# Parts of a chunked campaign report --------------------------------------------------------------

def part_name(export_id: int, index: int) -> str:
    return f"exports/parts/{export_id}/chunk-{index:05d}.pdf"


def plan_name(export_id: int) -> str:
    return f"exports/parts/{export_id}/plan.json"


def _replace(name: str, content: bytes) -> None:
    if default_storage.exists(name):
        default_storage.delete(name)
    default_storage.save(name, ContentFile(content))


def plan_campaign_report(export: EvidenceExport) -> evidence.ReportPlan:
    """Decide which items the report prints and in which chunks, and keep it for the chunk and assembly tasks."""
    campaign = export.campaign
    plan = evidence.plan_report(campaign, evidence.plan_rows(campaign), **evidence.sampling_options(export))
    _replace(plan_name(export.pk), json.dumps(plan.as_dict()).encode())
    return plan


def load_plan(export: EvidenceExport) -> evidence.ReportPlan:
    with default_storage.open(plan_name(export.pk), "rb") as f:
        return evidence.ReportPlan.from_dict(json.loads(f.read()))


def render_campaign_chunk(export: EvidenceExport, plan: evidence.ReportPlan, index: int) -> int:
    """Render one chunk of the printed items to its part file; returns its page count."""
    campaign = export.campaign
    chunk = plan.chunks[index]
    items = evidence.campaign_items(campaign).filter(pk__in=chunk["ids"])
    found = {row["item_id"]: row for row in evidence.item_rows(campaign, items)}
    if len(found) != len(chunk["ids"]):
        raise RuntimeError("The campaign's items changed while the report was rendering; request it again.")
    rows = [{**found[item_id], "printed_as": plan.printed_as(found[item_id])} for item_id in chunk["ids"]]
    pdf = html_to_pdf("evidence/campaign_items.html", base_context(
        export, rows=rows, section=chunk["section"], section_start=chunk["start"] == 0, plan=plan,
        chunk_index=index + 1, chunks_total=export.chunks_total))
    _replace(part_name(export.pk, index), pdf)
    return page_count(pdf)


def front_measure_name(export_id: int) -> str:
    return f"exports/parts/{export_id}/front-pages.txt"


def measure_campaign_front(export: EvidenceExport, plan: evidence.ReportPlan, chain, generated_at) -> int:
    """Lay the front out once with placeholder page numbers and record its length.

    Runs beside the chunks; the length does not depend on the numbers, so the final front, rendered
    when the chunks are done, is then laid out once instead of twice.
    """
    summary = evidence.campaign_summary(export.campaign)
    # Placeholder numbers as wide as the real ones will be (four digits reach 9,999 pages).
    laid_out = _front_layout(export, summary, plan, [999] * len(plan.chunks), chain, generated_at, 3)
    pages = len(laid_out.pages)
    _replace(front_measure_name(export.pk), str(pages).encode())
    return pages


def measured_front_pages(export: EvidenceExport) -> int | None:
    name = front_measure_name(export.pk)
    if not default_storage.exists(name):
        return None
    with default_storage.open(name, "rb") as f:
        value = f.read().decode().strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def part_pages(export: EvidenceExport) -> list[int]:
    pages = []
    for index in range(export.chunks_total):
        with default_storage.open(part_name(export.pk, index), "rb") as f:
            pages.append(len(PdfReader(f).pages))
    return pages


def delete_parts(export: EvidenceExport) -> None:
    for name in [*(part_name(export.pk, index) for index in range(export.chunks_total)),
                 front_measure_name(export.pk), plan_name(export.pk)]:
        if default_storage.exists(name):
            default_storage.delete(name)


def render_campaign_front(export: EvidenceExport, plan: evidence.ReportPlan, part_pages: list[int],
                          chain, generated_at, *, front_pages: int | None = None) -> bytes:
    """Cover, contents, control mapping, chain verification, summary and the sample, with the raw data attached.

    The attached rows must give the plan the chunks printed from (else the campaign changed meanwhile
    and the printed sample would not be the one the CSV redraws). The contents name the page each
    chunk starts on, which depends on the front's own length: laid out with ``front_pages``
    (measured beforehand, or a guess), and again in the rare case it was wrong. Only the final
    layout is written to PDF, with the attachments.
    """
    campaign = export.campaign
    rows = list(evidence.item_rows(campaign))
    again = evidence.plan_report(campaign, rows, seed=plan.seed, sample_size=plan.requested_size,
                                 print_all=plan.print_all, chunk_size=plan.chunk_size)
    if again.as_dict() != plan.as_dict():
        raise RuntimeError("The campaign's items changed while the report was rendering; request it again.")
    summary = evidence.campaign_summary(campaign)
    labels = _front_attachments(campaign)
    document = evidence.campaign_document(campaign, summary, rows, evidence.sampling_document(plan, labels[0][0]))
    del rows  # the document holds its own copy of every row: a campaign's rows are the bulk of this task's memory
    contents = [evidence.to_csv(evidence.ITEM_COLUMNS, document["items"]), evidence.to_json(document)]
    del document
    front_pages = front_pages or 3
    for _ in range(3):
        laid_out = _front_layout(export, summary, plan, part_pages, chain, generated_at, front_pages)
        if len(laid_out.pages) == front_pages:
            break
        front_pages = len(laid_out.pages)
    attachments = [(name, content, description) for (name, description), content in zip(labels, contents, strict=True)]
    return write_pdf(laid_out, attachments=attachments, variant=PDF_VARIANT)


def _front_attachments(campaign) -> list[tuple[str, str]]:
    return [
        (f"campaign-{campaign.pk}-items.csv",
         "Every item of the campaign, one row each (cells starting with = + - @ are prefixed with an apostrophe)"),
        (f"campaign-{campaign.pk}.json", "The campaign, its totals, its sample and every item"),
    ]


def _chunk_label(chunk: dict, plan: evidence.ReportPlan) -> str:
    ids = chunk["ids"]
    if chunk["section"] == "sample":
        return f"Sample draws {chunk['start'] + 1} to {chunk['start'] + len(ids)} of {plan.size}"
    prefix = "Printed in full: items" if chunk["section"] == "in_full" else "Items"
    return f"{prefix} #{ids[0]} to #{ids[-1]}"


def _front_layout(export, summary, plan, part_pages, chain, generated_at, front_pages):
    chunks, page = [], front_pages + 1
    for chunk, pages in zip(plan.chunks, part_pages, strict=True):
        chunks.append({"label": _chunk_label(chunk, plan), "page": page, "pages": pages})
        page += pages
    attachments = _front_attachments(export.campaign)
    return layout("evidence/campaign_front.html", base_context(
        export, campaign=export.campaign, summary=summary, chain=chain, generated_at=generated_at,
        mapping=evidence.control_mapping(Kind.CAMPAIGN), chunks=chunks, breakdowns=_breakdowns(summary),
        front_pages=front_pages, item_count=plan.total, attachments=attachments, plan=plan,
        reasons=[(label, plan.reason_counts[reason]) for reason, label in evidence.PRINT_REASONS.items()],
        sample_rule=evidence.SAMPLE_RULE_TEXT,
        redraw=evidence.redraw_command(attachments[0][0], plan.seed, plan.size),
    ))


def merge_and_number(front: bytes, parts: list, *, footer: str) -> bytes:
    """Front then parts, one document, with "Page N of M" stamped on every page.

    The writer starts as a clone of the front so its attachments, metadata and output intent are kept.
    """
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(front)))
    for part in parts:
        writer.append(PdfReader(part), import_outline=False)
    total = len(writer.pages)
    stamp = PdfReader(io.BytesIO(html_to_pdf("evidence/page_numbers.html", {"pages": range(total), "footer": footer})))
    for page, overlay in zip(writer.pages, stamp.pages, strict=True):
        page.merge_page(overlay)
        page.compress_content_streams()  # merging leaves the page's content uncompressed: 12x the file size
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


# Whole documents ----------------------------------------------------------------------------------

def render_key_dossier(export: EvidenceExport, chain, generated_at) -> bytes:
    dossier = evidence.key_dossier(export.key)
    document, key = evidence.dossier_document(dossier), dossier["key"]
    attachments = _data_attachments(f"key-{key.pk}", document, "events", evidence.EVENT_COLUMNS,
                                   "Every lifecycle event of the key", "The key's dossier as data")
    return _render_one_part(export, "evidence/key_dossier.html", Kind.KEY, attachments, chain, generated_at,
                            d=dossier, key=key)


def render_customer_report(export: EvidenceExport, chain, generated_at) -> bytes:
    report = evidence.customer_report(export.customer, export.period_start, export.period_end)
    document, customer = evidence.customer_document(report), report["customer"]
    attachments = _data_attachments(f"customer-{customer.pk}", document, "keys", evidence.CUSTOMER_COLUMNS,
                                   "Every key of the customer", "The customer report as data")
    return _render_one_part(export, "evidence/customer_report.html", Kind.CUSTOMER, attachments, chain, generated_at,
                            r=report, customer=customer)


def _data_attachments(stem: str, document: dict, rows: str, columns, rows_label: str, document_label: str) -> list:
    """A document's data as PDF attachments: its ``rows`` as CSV and the whole document as JSON."""
    return [
        (f"{stem}-{rows}.csv", evidence.to_csv(columns, document[rows]), rows_label),
        (f"{stem}.json", evidence.to_json(document), document_label),
    ]


def _render_one_part(export: EvidenceExport, template: str, kind: str, attachments: list, chain, generated_at,
                     **subject) -> bytes:
    """A document rendered in one part (a key dossier, a customer report), its data attached."""
    return html_to_pdf(template, base_context(
        export, chain=chain, generated_at=generated_at, mapping=evidence.control_mapping(kind),
        attachments=[(name, description) for name, _, description in attachments], **subject,
    ), attachments=attachments, variant=PDF_VARIANT)


# Signing and storing ------------------------------------------------------------------------------

def signing_configured() -> bool:
    return bool(getattr(settings, "EVIDENCE_SIGNING_PKCS12", ""))


def sign(pdf: bytes) -> bytes:
    """A PAdES signature over the whole file with the configured PKCS#12 certificate."""
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import fields, signers

    password = settings.EVIDENCE_SIGNING_PASSWORD
    signer = signers.SimpleSigner.load_pkcs12(
        settings.EVIDENCE_SIGNING_PKCS12, passphrase=password.encode() if password else None)
    if signer is None:
        raise RuntimeError("The evidence signing certificate could not be loaded (path or password wrong).")
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf), strict=False)
    metadata = signers.PdfSignatureMetadata(
        field_name="EvidenceSignature", md_algorithm="sha256", subfilter=fields.SigSeedSubFilter.PADES,
        reason="Audit evidence export", location=settings.SITE_URL,
    )
    out = signers.sign_pdf(writer, metadata, signer=signer)
    return out.getvalue()


def store(export: EvidenceExport, pdf: bytes) -> dict:
    """Sign when configured, save the file and return the fields that describe it."""
    signed = False
    if signing_configured():
        pdf = sign(pdf)
        signed = True
    name = f"evidence-{export.pk}-{export.kind}.pdf"
    if export.file:
        export.file.delete(save=False)
    export.file.save(name, ContentFile(pdf), save=False)
    return {"file": export.file.name, "sha256": hashlib.sha256(pdf).hexdigest(), "size": len(pdf),
            "page_count": page_count(pdf), "signed": signed}
