"""Shared set-up for the evidence export tests: a decided and closed campaign, and PDF readers."""

import csv
import io

from pypdf import PdfReader

from attestations.choices import Decision, DefaultAction
from attestations.models import EvidenceExport
from attestations.services import campaigns, decisions, exports
from tests import factories

FORMULA_JUSTIFICATION = "=HYPERLINK(\"http://evil.test\") still used <b>nightly</b>"


def decided_campaign(compliance_user, owner, other_owner, *, keys_per_owner: int = 2, name: str = "2026-Q4 review"):
    """A closed campaign: the owner confirmed one key and released another, the other owner did nothing."""
    customer = factories.CustomerFactory(name="Acme <Bank>")
    own = [factories.ApiKeyFactory(owner=owner, workflow__customer=customer) for _ in range(keys_per_owner)]
    others = [factories.ApiKeyFactory(owner=other_owner) for _ in range(keys_per_owner)]
    campaign = campaigns.create_campaign(actor=compliance_user, name=name, default_action=DefaultAction.SUSPEND)
    campaigns.launch_campaign(campaign, actor=compliance_user)
    items = {i.key_id: i for i in campaign.items.all()}
    decisions.record_decision(items[own[0].pk], actor=owner, decision=Decision.CONFIRM,
                              justification=FORMULA_JUSTIFICATION, affirm=True)
    decisions.record_decision(items[own[1].pk], actor=owner, decision=Decision.RELEASE,
                              justification="Integration retired in October")
    campaigns.close_campaign(campaign, actor=compliance_user)
    campaign.refresh_from_db()
    return campaign, own, others


def run_export(capture, **kwargs) -> EvidenceExport:
    with capture(execute=True):
        export = exports.request_export(**kwargs)
    export.refresh_from_db()
    assert export.status == EvidenceExport.Status.DONE, export.error
    return export


def reader(export: EvidenceExport) -> PdfReader:
    export.file.open("rb")
    try:
        return PdfReader(io.BytesIO(export.file.read()))
    finally:
        export.file.close()


def text(pdf: PdfReader) -> str:
    return "\n".join(page.extract_text() or "" for page in pdf.pages)


def attached_csv(pdf: PdfReader, suffix: str = ".csv") -> list[dict]:
    (name,) = [n for n in pdf.attachments if n.endswith(suffix)]
    return list(csv.DictReader(io.StringIO(pdf.attachments[name][0].decode())))
