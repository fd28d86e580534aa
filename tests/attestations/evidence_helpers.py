"""Shared set-up for the evidence export tests: decided and closed campaigns, and PDF readers."""

import csv
import datetime
import io

from django.db.models import F
from django.utils import timezone
from pypdf import PdfReader

from attestations.choices import Decision, DefaultAction
from attestations.models import AttestationItem, EvidenceExport
from attestations.services import campaigns, decisions, exports, reminders
from keys.choices import RevocationReason
from keys.services import key_exceptions as exceptions
from keys.services import lifecycle
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
    decisions.record_decision(items[own[1].pk], actor=owner, decision=Decision.RELEASE, reason="unused",
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


def sampled_campaign(compliance_user, owner, other_owner, *, confirmed: int = 30, name: str = "2027-Q1 review"):
    """A closed campaign with more confirmed decisions than a sample of 25, and one item of every kind the
    report prints in full: an exception, a release, a reassignment, a revoked key, a decision after the due
    date, one after escalation, and items closed by the default action.

    Returns the campaign and the items by role (``routine``: confirmed on time, under no exception).
    """
    customer = factories.CustomerFactory(name="Initech")
    keys = [factories.ApiKeyFactory(owner=owner, workflow__customer=customer) for _ in range(confirmed + 6)]
    idle = [factories.ApiKeyFactory(owner=other_owner) for _ in range(2)]
    excepted = keys[0]
    exceptions.approve_exception(factories.KeyExceptionFactory(key=excepted, requested_by=owner), actor=compliance_user)
    campaign = campaigns.create_campaign(actor=compliance_user, name=name, default_action=DefaultAction.KEEP_AND_FLAG,
                                         escalation_days=0, release_grace_days=0)
    campaigns.launch_campaign(campaign, actor=compliance_user)
    items = {i.key_id: i for i in campaign.items.all()}
    roles = {"exception": items[keys[0].pk], "released": items[keys[1].pk], "reassigned": items[keys[2].pk],
             "revoked": items[keys[3].pk], "late": items[keys[4].pk], "escalated": items[keys[5].pk],
             "default": [items[k.pk] for k in idle]}
    decisions.record_decision(roles["exception"], actor=owner, decision=Decision.CONFIRM, affirm=True,
                              justification="Vendor SDK until its next release", reaffirm_exception=True)
    decisions.record_decision(roles["released"], actor=owner, decision=Decision.RELEASE, reason="unused", justification="Retired")
    decisions.record_decision(roles["reassigned"], actor=owner, decision=Decision.REASSIGN, to=other_owner,
                              justification="Moved to the payments team")
    routine = [items[k.pk] for k in keys[6:]] + [roles["revoked"], roles["late"]]
    done, refused = decisions.bulk_confirm([i.pk for i in routine], actor=owner, affirm=True,
                                           justification="Still used by the nightly export")
    assert not refused, refused
    lifecycle.revoke_key(roles["revoked"].key, actor=compliance_user, reason_code=RevocationReason.MANUAL,
                         reason="revoked after the review")
    # As if confirmed 30 days later, past the due date.
    AttestationItem.objects.filter(pk=roles["late"].pk).update(
        decided_at=F("decided_at") + datetime.timedelta(days=30))
    campaign.refresh_from_db()
    assert reminders.escalation_targets(campaign, timezone.localdate(), actor=compliance_user)
    decisions.record_decision(roles["escalated"], actor=owner, decision=Decision.CONFIRM, affirm=True,
                              justification="Confirmed once the manager asked")
    campaigns.close_campaign(campaign, actor=compliance_user)
    campaign.refresh_from_db()
    roles["routine"] = [items[k.pk] for k in keys[6:]]
    return campaign, roles
