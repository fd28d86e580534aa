"""Rendering evidence PDFs: Django templates through WeasyPrint (PDF/A-3b), assembled with pikepdf, signed.

A campaign report is rendered in parts, each a task any worker may run: each chunk of items is its own
WeasyPrint document (memory stays bounded by the chunk, and chunks run in parallel on several workers),
and so is the body of the front matter (control mapping, chain verification, verification data,
summary, the sample), which also builds the CSV/JSON attachments. The parts wait in a storage every
worker shares (``parts_storage``). The assembly is small: it lays out the cover and contents (the
contents name the page each section and chunk starts on, known once the parts are rendered) with the
attachments, appends the parts' pages with pikepdf, so the delivered file keeps the head's PDF/A
identification (XMP), output intent and attachments; "Page N of M" is overlaid on every page from one
cheap WeasyPrint document of empty pages, and the result is signed (``evidence_signing``). Key dossiers
and customer reports are small and rendered in one pass. Every part is PDF/A-3b, so every font of the
delivered file is embedded.

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
from dataclasses import asdict, dataclass
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

def parts_storage():
    """Where a report's parts wait for its assembly: a storage every worker reads and writes, so any worker
    renders any part and any worker assembles them: the exports' storage, local or object storage."""
    return export_storage()


def part_name(export_id: int, index: int) -> str:
    return f"exports/parts/{export_id}/chunk-{index:05d}.pdf"


def plan_name(export_id: int) -> str:
    return f"exports/parts/{export_id}/plan.json"


def body_name(export_id: int) -> str:
    return f"exports/parts/{export_id}/front-body.pdf"


def front_name(export_id: int) -> str:
    """What the front's body task learnt for the assembly: written last, so its presence says the body is whole."""
    return f"exports/parts/{export_id}/front.json"


def attachment_name(export_id: int, index: int) -> str:
    return f"exports/parts/{export_id}/attachment-{index}"


def _replace(name: str, content: bytes) -> None:
    storage = parts_storage()
    if storage.exists(name):
        storage.delete(name)
    storage.save(name, ContentFile(content))


def _read(name: str) -> bytes:
    with parts_storage().open(name, "rb") as f:
        return f.read()


def plan_campaign_report(export: EvidenceExport) -> evidence.ReportPlan:
    """Decide which items the report prints and in which chunks, and keep it for the chunk and assembly tasks."""
    campaign = export.campaign
    plan = evidence.plan_report(campaign, evidence.plan_rows(campaign), **evidence.sampling_options(export))
    _replace(plan_name(export.pk), json.dumps(plan.as_dict()).encode())
    return plan


def plan_exists(export: EvidenceExport) -> bool:
    return parts_storage().exists(plan_name(export.pk))


def load_plan(export: EvidenceExport) -> evidence.ReportPlan:
    return evidence.ReportPlan.from_dict(json.loads(_read(plan_name(export.pk))))


def check_plan(export: EvidenceExport, plan: evidence.ReportPlan, rows=None) -> None:
    """The campaign's items (``rows``, or read again) still give the plan the parts print from; else the report
    would print a sample the attached CSV does not redraw."""
    campaign = export.campaign
    again = evidence.plan_report(campaign, evidence.plan_rows(campaign) if rows is None else rows, seed=plan.seed,
                                 sample_size=plan.requested_size, print_all=plan.print_all, chunk_size=plan.chunk_size)
    if again.as_dict() != plan.as_dict():
        raise RuntimeError("The campaign's items changed while the report was rendering; request it again.")


def part_is_whole(name: str) -> bool:
    """A part file that a PDF reader opens: one a worker finished writing (a killed worker may leave half a file)."""
    storage = parts_storage()
    if not storage.exists(name):
        return False
    try:
        with storage.open(name, "rb") as f, _pikepdf().open(f):
            return True
    except Exception:  # pikepdf raises its own errors for a truncated or empty file
        return False


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


# The front's sections, in the order of the body; the contents name the page each starts on.
FRONT_SECTIONS = [
    ("controls", "Control mapping"), ("chain", "History chain verification"),
    ("verification", "Verifying this report"), ("scope", "Scope, schedule and dates"),
    ("totals", "Totals and resulting key states"), ("breakdown", "Decisions per customer and owner"),
    ("notifications", "Reminders, escalations and default actions"), ("reviewer-quality", "Reviewer quality"),
    ("sampling", "Items printed and the sample"),
]


def render_campaign_front_body(export: EvidenceExport, plan: evidence.ReportPlan, chain, generated_at) -> int:
    """The front matter after the contents (control mapping, chain verification, verification data, summary,
    the sample) as a part of its own, and the raw data the report attaches; returns its page count.

    Runs beside the chunks, so the assembly lays out only the cover and contents. The attached rows must give
    the plan the chunks print from (else the campaign changed meanwhile and the printed sample would not be
    the one the CSV redraws). What the assembly needs (the chain's verdict, the time, the page each section
    starts on, the attachments' names) is written last, in one small file.
    """
    campaign = export.campaign
    rows = list(evidence.item_rows(campaign))
    check_plan(export, plan, rows)
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
    del document
    laid_out = layout("evidence/campaign_front_body.html", base_context(
        export, campaign=campaign, summary=summary, chain=chain, generated_at=generated_at,
        mapping=evidence.control_mapping(Kind.CAMPAIGN), breakdowns=_breakdowns(summary), item_count=plan.total,
        attachments=labels, plan=plan,
        reasons=[(label, plan.reason_counts[reason]) for reason, label in evidence.PRINT_REASONS.items()],
        sample_rule=evidence.SAMPLE_RULE_TEXT,
        redraw=evidence.redraw_command(labels[0][0], plan.seed, plan.size), verification=verification,
    ))
    starts = {}
    for number, page in enumerate(laid_out.pages, start=1):
        for anchor in page.anchors:
            starts.setdefault(anchor, number)
    _replace(body_name(export.pk), write_pdf(laid_out))
    for index, content in enumerate(contents):
        _replace(attachment_name(export.pk, index), content)
    _replace(front_name(export.pk), json.dumps({
        "pages": len(laid_out.pages), "starts": starts, "generated_at": generated_at.isoformat(),
        "chain": asdict(chain), "attachments": labels,
    }).encode())
    return len(laid_out.pages)


def front_body_done(export_id: int) -> bool:
    return parts_storage().exists(front_name(export_id))


def part_pages(export: EvidenceExport) -> list[int]:
    pikepdf = _pikepdf()
    pages = []
    for index in range(export.chunks_total):
        with parts_storage().open(part_name(export.pk, index), "rb") as f, pikepdf.open(f) as part:
            pages.append(len(part.pages))
    return pages


def delete_parts(export: EvidenceExport) -> None:
    storage = parts_storage()
    for name in [*(part_name(export.pk, index) for index in range(export.chunks_total)), body_name(export.pk),
                 *(attachment_name(export.pk, index) for index in range(2)), front_name(export.pk),
                 plan_name(export.pk)]:
        if storage.exists(name):
            storage.delete(name)


@dataclass(frozen=True)
class Front:
    """What the front's body task left for the assembly."""

    pages: int
    starts: dict[str, int]
    generated_at: datetime.datetime
    chain: evidence.ChainResult
    attachments: list[tuple[str, str]]


def load_front(export: EvidenceExport) -> Front:
    data = json.loads(_read(front_name(export.pk)))
    return Front(pages=data["pages"], starts=data["starts"],
                 generated_at=datetime.datetime.fromisoformat(data["generated_at"]),
                 chain=evidence.ChainResult(**data["chain"]),
                 attachments=[(name, description) for name, description in data["attachments"]])


def render_campaign_head(export: EvidenceExport, plan: evidence.ReportPlan, front: Front,
                         part_pages: list[int]) -> bytes:
    """The cover and the contents, with the raw data attached: the only part laid out at the assembly.

    The contents name the page each section and chunk starts on, which depends on the head's own length:
    laid out with a guess (cover and one page of contents), and again in the rare case it was wrong.
    """
    head_pages, laid_out = 2, None
    for _ in range(3):
        sections = [{"label": label, "page": head_pages + front.starts[anchor]}
                    for anchor, label in FRONT_SECTIONS if anchor in front.starts]
        chunks, page = [], head_pages + front.pages + 1
        for chunk, pages in zip(plan.chunks, part_pages, strict=True):
            chunks.append({"label": _chunk_label(chunk, plan), "page": page, "pages": pages})
            page += pages
        laid_out = layout("evidence/campaign_front.html", base_context(
            export, campaign=export.campaign, chain=front.chain, generated_at=front.generated_at,
            sections=sections, chunks=chunks, item_count=plan.total, attachments=front.attachments, plan=plan))
        if len(laid_out.pages) == head_pages:
            break
        head_pages = len(laid_out.pages)
    attachments = [(name, _read(attachment_name(export.pk, index)), description)
                   for index, (name, description) in enumerate(front.attachments)]
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
