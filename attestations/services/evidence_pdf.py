"""Rendering evidence PDFs: Django templates through WeasyPrint (PDF/A-3b), assembled with pikepdf, signed.

A campaign report is rendered in parts: each chunk of items is its own WeasyPrint document (memory
stays bounded by the chunk, and chunks run in parallel on several workers); the front matter (cover,
contents, control mapping, chain verification, verification data, summary) is rendered last, when the
chunks' page counts are known, and carries the CSV/JSON attachments. Its contents name the page each
chunk starts on, which depends on the front's own length: a measuring task renders the front once
while the chunks render, so the final front is laid out once, at the end. pikepdf appends the parts'
pages to the front, so the delivered file keeps the front's PDF/A identification (XMP), output intent
and attachments; "Page N of M" is overlaid on every page from one cheap WeasyPrint document of empty
pages, and the result is signed (``evidence_signing``). Key dossiers and customer reports are small
and rendered in one pass. Every part is PDF/A-3b, so every font of the delivered file is embedded.

Each report prints the data an auditor needs to check it offline (``evidence/_verification.html``):
the SHA-256 of every attached file, the totals the attached CSV must reproduce and the history chain's
head; ``verify-evidence`` (the ``evidence_verifier`` package) reads them back from the page text.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import logging
from collections import Counter
from pathlib import Path

from django.conf import settings
from django.core.files.base import ContentFile
from django.template.loader import render_to_string
from django.utils import timezone

from attestations.choices import ItemStatus
from attestations.models import EvidenceExport, export_storage
from attestations.services import evidence, evidence_signing
from attestations.stages import stages_of

log = logging.getLogger(__name__)
Kind = EvidenceExport.Kind
PRINT_CSS = Path(settings.BASE_DIR) / "static" / "css" / "evidence.css"
PDF_VARIANT = "pdf/a-3b"


def _weasyprint():
    import weasyprint  # imported lazily: it loads fonts and Pango, which web requests never need

    return weasyprint


def _pikepdf():
    import pikepdf  # imported lazily, like WeasyPrint: only the rendering tasks need it

    return pikepdf


def identity(export: EvidenceExport) -> str:
    return f"Evidence export #{export.pk} · {export.get_kind_display()} · {export.parameters.get('subject', '')}"


def base_context(export: EvidenceExport, **extra) -> dict:
    return {"export": export, "identity": identity(export), "generated_at": extra.pop("generated_at", None),
            "controls": evidence.CONTROLS, "by_control": evidence.sections_by_control(export.kind), **extra}


def _breakdowns(summary: dict) -> list[tuple[str, list[dict]]]:
    statuses = [value for value, _ in summary["statuses"]]
    return [
        (title, [{"name": r["name"], "total": r["total"], "counts": [r[s] for s in statuses]} for r in rows])
        for title, rows in (("Per customer", summary["per_customer"]), ("Per owner", summary["per_owner"]))
    ]


def html_to_pdf(template: str, context: dict, *, attachments=None) -> bytes:
    return write_pdf(layout(template, context), attachments=attachments)


def layout(template: str, context: dict):
    """Lay the template out into pages (WeasyPrint's costly step); ``write_pdf`` turns them into a file."""
    weasyprint = _weasyprint()
    with timezone.override(datetime.UTC):  # evidence states its times in UTC, whatever TIME_ZONE is
        html = render_to_string(template, context)
    return weasyprint.HTML(string=html, base_url=str(settings.BASE_DIR)).render(
        stylesheets=[weasyprint.CSS(filename=str(PRINT_CSS))])


def write_pdf(document, *, attachments=None) -> bytes:
    """A PDF/A-3b file; ``attachments`` are (name, bytes, description), embedded as the report's data."""
    weasyprint = _weasyprint()
    options = {"pdf_variant": PDF_VARIANT}
    if attachments:
        options["attachments"] = [
            weasyprint.Attachment(string=content, name=name, description=description, relationship="Data")
            for name, content, description in attachments
        ]
    return document.write_pdf(**options)


def page_count(pdf: bytes) -> int:
    with _pikepdf().open(io.BytesIO(pdf)) as document:
        return len(document.pages)


# What the report prints so that it can be checked offline -----------------------------------------

def verification_data(attachments: list[tuple[str, bytes, str]], rows: list[dict], *,
                      statuses: list[str] | None = None) -> dict:
    """The SHA-256 of each attachment and the totals of the first one (the CSV): its rows, and its rows per
    ``status`` when ``statuses`` is given (every status listed, zero included; any other found, after)."""
    counts = Counter(str(row["status"]) for row in rows) if statuses is not None else Counter()
    listed = list(statuses or [])
    return {
        "files": [{"name": name, "sha256": hashlib.sha256(content).hexdigest()} for name, content, _ in attachments],
        "rows_file": attachments[0][0],
        "rows": len(rows),
        "statuses": [(status, counts[status]) for status in [*listed, *sorted(set(counts) - set(listed))]],
    }


def _placeholder_verification(names: list[str], statuses: list[str]) -> dict:
    """As long as the real data, for measuring the front before the attachments exist."""
    return {"files": [{"name": name, "sha256": "0" * 64} for name in names], "rows_file": names[0], "rows": 0,
            "statuses": [(status, 0) for status in statuses]}


def _item_statuses() -> list[str]:
    return [status.value for status in ItemStatus]


# Parts of a chunked campaign report --------------------------------------------------------------

def part_name(export_id: int, index: int) -> str:
    return f"exports/parts/{export_id}/chunk-{index:05d}.pdf"


def plan_name(export_id: int) -> str:
    return f"exports/parts/{export_id}/plan.json"


def _replace(name: str, content: bytes) -> None:
    if export_storage().exists(name):
        export_storage().delete(name)
    export_storage().save(name, ContentFile(content))


def plan_campaign_report(export: EvidenceExport) -> evidence.ReportPlan:
    """Decide which items the report prints and in which chunks, and keep it for the chunk and assembly tasks."""
    campaign = export.campaign
    plan = evidence.plan_report(campaign, evidence.plan_rows(campaign), **evidence.sampling_options(export))
    _replace(plan_name(export.pk), json.dumps(plan.as_dict()).encode())
    return plan


def load_plan(export: EvidenceExport) -> evidence.ReportPlan:
    with export_storage().open(plan_name(export.pk), "rb") as f:
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
        chunk_index=index + 1, chunks_total=export.chunks_total, multi_stage=len(stages_of(campaign)) > 1))
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
    summary["stage_tallies"] = evidence.stage_tallies([], len(summary["stages"]))
    # Placeholder numbers as wide as the real ones will be (four digits reach 9,999 pages).
    placeholder = _placeholder_verification([name for name, _ in _front_attachments(export.campaign)],
                                            _item_statuses())
    laid_out = _front_layout(export, summary, plan, [999] * len(plan.chunks), chain, generated_at, 3, placeholder)
    pages = len(laid_out.pages)
    _replace(front_measure_name(export.pk), str(pages).encode())
    return pages


def measured_front_pages(export: EvidenceExport) -> int | None:
    name = front_measure_name(export.pk)
    if not export_storage().exists(name):
        return None
    with export_storage().open(name, "rb") as f:
        value = f.read().decode().strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def part_pages(export: EvidenceExport) -> list[int]:
    pikepdf = _pikepdf()
    pages = []
    for index in range(export.chunks_total):
        with export_storage().open(part_name(export.pk, index), "rb") as f, pikepdf.open(f) as part:
            pages.append(len(part.pages))
    return pages


def delete_parts(export: EvidenceExport) -> None:
    for name in [*(part_name(export.pk, index) for index in range(export.chunks_total)),
                 front_measure_name(export.pk), plan_name(export.pk)]:
        if export_storage().exists(name):
            export_storage().delete(name)


def render_campaign_front(export: EvidenceExport, plan: evidence.ReportPlan, part_pages: list[int],
                          chain, generated_at, *, front_pages: int | None = None) -> bytes:
    """Cover, contents, control mapping, chain verification, verification data, summary and the sample, with
    the raw data attached.

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
    summary["stage_tallies"] = evidence.stage_tallies(rows, len(summary["stages"]))
    labels = _front_attachments(campaign)
    # The CSV comes from the rows (it has each stage's columns; the document gives the stages as a list).
    items_csv = evidence.to_csv(evidence.ITEM_COLUMNS, rows).encode()
    document = evidence.campaign_document(campaign, summary, rows, evidence.sampling_document(plan, labels[0][0]))
    del rows  # the document holds its own copy of every row: a campaign's rows are the bulk of this task's memory
    contents = [items_csv, evidence.to_json(document).encode()]
    attachments = [(name, content, description) for (name, description), content in zip(labels, contents, strict=True)]
    verification = verification_data(attachments, document["items"], statuses=_item_statuses())
    del document, contents
    front_pages = front_pages or 3
    for _ in range(3):
        laid_out = _front_layout(export, summary, plan, part_pages, chain, generated_at, front_pages, verification)
        if len(laid_out.pages) == front_pages:
            break
        front_pages = len(laid_out.pages)
    return write_pdf(laid_out, attachments=attachments)


def _front_attachments(campaign) -> list[tuple[str, str]]:
    return [
        (f"campaign-{campaign.pk}-items.csv",
         "Every item of the campaign, one row each (cells starting with = + - @ are prefixed with an apostrophe)"),
        (f"campaign-{campaign.pk}.json",
         "The campaign, its stages, its totals, its sample and every item with each stage's decision"),
    ]


def _chunk_label(chunk: dict, plan: evidence.ReportPlan) -> str:
    ids = chunk["ids"]
    if chunk["section"] == "sample":
        return f"Sample draws {chunk['start'] + 1} to {chunk['start'] + len(ids)} of {plan.size}"
    prefix = "Printed in full: items" if chunk["section"] == "in_full" else "Items"
    return f"{prefix} #{ids[0]} to #{ids[-1]}"


def _front_layout(export, summary, plan, part_pages, chain, generated_at, front_pages, verification):
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
        redraw=evidence.redraw_command(attachments[0][0], plan.seed, plan.size), verification=verification,
    ))


def merge_and_number(front: bytes, parts: list, *, footer: str) -> bytes:
    """Front then parts, one PDF/A-3b document, with "Page N of M" overlaid on every page.

    The parts' pages are appended to the front, so the front's XMP identification, output intent and
    attachments are the document's. The page numbers come from one WeasyPrint document of empty pages
    (PDF/A-3b too, its font embedded), each page overlaid as a form XObject on the page of its number.
    """
    return assemble(front, parts, number_pages=True, footer=footer)


def assemble(front: bytes, parts=(), *, number_pages: bool = False, footer: str = "") -> bytes:
    pikepdf = _pikepdf()
    sources = []
    try:
        with pikepdf.open(io.BytesIO(front)) as document:
            for part in parts:
                sources.append(pikepdf.open(part))
                document.pages.extend(sources[-1].pages)
            if number_pages:
                stamp = pikepdf.open(io.BytesIO(html_to_pdf(
                    "evidence/page_numbers.html", {"pages": range(len(document.pages)), "footer": footer})))
                sources.append(stamp)
                for page, overlay in zip(document.pages, stamp.pages, strict=True):
                    page.add_overlay(overlay)
            _tidy_for_signing(document)
            out = io.BytesIO()
            document.save(out, compress_streams=True, object_stream_mode=pikepdf.ObjectStreamMode.generate)
    finally:
        for source in sources:
            source.close()
    return out.getvalue()


def _tidy_for_signing(document) -> None:
    """List each attachment once in the catalog's /AF (WeasyPrint lists them twice), and leave the producer
    to the XMP metadata: the signer rewrites the XMP producer, and the information dictionary must not
    then contradict it (PDF/A keeps the two in agreement)."""
    pikepdf = _pikepdf()
    if "/AF" in document.Root:
        seen, unique = set(), []
        for filespec in document.Root.AF:
            if not filespec.is_indirect or filespec.objgen not in seen:
                seen.add(filespec.objgen)
                unique.append(filespec)
        document.Root.AF = pikepdf.Array(unique)
    for name in ("/Producer", "/ModDate"):
        if name in document.docinfo:
            del document.docinfo[name]


# Whole documents ----------------------------------------------------------------------------------

def render_key_dossier(export: EvidenceExport, chain, generated_at) -> bytes:
    dossier = evidence.key_dossier(export.key)
    document, key = evidence.dossier_document(dossier), dossier["key"]
    attachments = _data_attachments(f"key-{key.pk}", document, "events", evidence.EVENT_COLUMNS,
                                   "Every lifecycle event of the key", "The key's dossier as data")
    return _render_one_part(export, "evidence/key_dossier.html", Kind.KEY, attachments,
                            verification_data(attachments, document["events"]), chain, generated_at, d=dossier, key=key)


def render_customer_report(export: EvidenceExport, chain, generated_at) -> bytes:
    report = evidence.customer_report(export.customer, export.period_start, export.period_end)
    document, customer = evidence.customer_document(report), report["customer"]
    attachments = _data_attachments(f"customer-{customer.pk}", document, "keys", evidence.CUSTOMER_COLUMNS,
                                   "Every key of the customer", "The customer report as data")
    return _render_one_part(export, "evidence/customer_report.html", Kind.CUSTOMER, attachments,
                            verification_data(attachments, document["keys"]), chain, generated_at,
                            r=report, customer=customer)


def _data_attachments(stem: str, document: dict, rows: str, columns, rows_label: str, document_label: str) -> list:
    """A document's data as PDF attachments: its ``rows`` as CSV and the whole document as JSON."""
    return [
        (f"{stem}-{rows}.csv", evidence.to_csv(columns, document[rows]).encode(), rows_label),
        (f"{stem}.json", evidence.to_json(document).encode(), document_label),
    ]


def _render_one_part(export: EvidenceExport, template: str, kind: str, attachments: list, verification: dict, chain,
                     generated_at, **subject) -> bytes:
    """A document rendered in one part (a key dossier, a customer report), its data attached."""
    return assemble(html_to_pdf(template, base_context(
        export, chain=chain, generated_at=generated_at, mapping=evidence.control_mapping(kind),
        attachments=[(name, description) for name, _, description in attachments], verification=verification,
        **subject,
    ), attachments=attachments))


# Signing and storing ------------------------------------------------------------------------------

def store(export: EvidenceExport, pdf: bytes) -> dict:
    """Sign, save the file and return the fields that describe it."""
    pdf = evidence_signing.sign(pdf)
    name = f"evidence-{export.pk}-{export.kind}.pdf"
    if export.file:
        export.file.delete(save=False)
    export.file.save(name, ContentFile(pdf), save=False)
    return {"file": export.file.name, "sha256": hashlib.sha256(pdf).hexdigest(), "size": len(pdf),
            "page_count": page_count(pdf), "signed": True}
