"""The data each evidence report is made of: the campaign report, the key dossier and the customer
report, their raw CSV and JSON, the control mapping and the history chain's verification.

Who may request which export lives in ``exports``; rendering (WeasyPrint, merging, signing) in
``evidence_pdf``; the Celery tasks in ``attestations.tasks`` are thin wrappers over them.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from django.db.models import Count, Max, Min, Q, Sum
from django.utils import timezone

from attestations.choices import DefaultAction, ItemStatus
from attestations.models import AttestationItem, Campaign, EvidenceExport, Notification, OwnershipTransfer
from attestations.services import review_quality
from keys.choices import KeyStatus, LifecycleAction
from keys.models import ApiKey, Customer, Exposure, KeyException, LifecycleEvent, RevocationRequest, UsageDaily

Kind = EvidenceExport.Kind
Status = EvidenceExport.Status

CHUNK_SIZE = 500
# Characters that make a spreadsheet treat a cell as a formula (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


# Who may do what ----------------------------------------------------------------------------------


# Raw data: CSV and JSON ---------------------------------------------------------------------------

def neutralise(value) -> str:
    """A CSV cell a spreadsheet will not run as a formula: risky first characters get a leading apostrophe."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def to_csv(columns: list[str], rows: Iterable[dict]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([neutralise(_plain(row.get(c))) for c in columns])
    return out.getvalue()


def _plain(value):
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return "; ".join(str(v) for v in value)
    return value


def to_json(document: dict) -> str:
    return json.dumps(document, indent=1, ensure_ascii=False, default=_plain)


# Control mapping ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Control:
    framework: str
    id: str
    title: str
    note: str = ""


CONTROLS = (
    Control("OWASP Non-Human Identities Top 10 (2025)", "NHI1:2025 (NHI-01)", "Improper Offboarding"),
    Control("OWASP Non-Human Identities Top 10 (2025)", "NHI3:2025 (NHI-03)", "Vulnerable Third-Party NHI"),
    Control("NIST Cybersecurity Framework 2.0", "PR.AA-01",
            "Identities and credentials for authorized users, services, and hardware are managed by the organization"),
    Control("NIST Cybersecurity Framework 1.1", "PR.AC-4",
            "Access permissions and authorizations are managed, incorporating the principles of least privilege "
            "and separation of duties",
            "PR.AC-4 is a CSF 1.1 identifier, kept because auditors still ask for it; CSF 2.0 has no PR.AC category "
            "and moved this outcome to PR.AA-05."),
)

# Which section of each report evidences which control (control id prefix -> sections).
SECTION_CONTROLS = {
    Kind.CAMPAIGN: [
        ("Scope, schedule and totals", ["NHI1:2025", "PR.AA-01"],
         "Every live key in scope was put before an accountable owner on a schedule."),
        ("Decisions per customer and owner", ["NHI3:2025", "PR.AA-01"],
         "Customer-owned (third-party) keys were attested per customer by named people."),
        ("Items: decision, decider, time, justification", ["PR.AA-01", "PR.AC-4"],
         "Each decision names who decided, when and why; only the assigned reviewer or delegate may decide."),
        ("Reminders, escalations and default actions", ["NHI1:2025"],
         "Keys nobody vouched for were suspended, revoked or flagged: no key outlives its owner's attention."),
        ("Resulting key states", ["NHI1:2025", "PR.AA-01"], "The state each key was left in after the campaign."),
        ("History chain verification", ["PR.AA-01"], "The records this report is built from were not altered."),
    ],
    Kind.KEY: [
        ("Registration and approval", ["PR.AA-01", "PR.AC-4"],
         "The key was registered with an owner and purpose and approved by someone else."),
        ("Ownership", ["NHI1:2025", "PR.AA-01"], "Who was accountable for the key at every point in time."),
        ("Attestations", ["NHI1:2025", "PR.AA-01"], "The owner re-confirmed the key's purpose on a schedule."),
        ("Exceptions", ["PR.AC-4"], "Deviations were approved by compliance, never by the owner or requester."),
        ("Usage and exposures", ["NHI3:2025", "NHI1:2025"], "Whether the customer's key was used, and any leak."),
        ("Rotation and revocation", ["NHI1:2025"],
         "Rotation and revocation, with the issuing system's acknowledgement."),
        ("History chain verification", ["PR.AA-01"], "The records this report is built from were not altered."),
    ],
    Kind.CUSTOMER: [
        ("Keys of the customer", ["NHI3:2025", "PR.AA-01"], "Every key the customer's integrations hold, and its owner."),
        ("Lifecycle in the period", ["NHI1:2025", "PR.AC-4"], "Approvals, attestations and revocations in the period."),
        ("History chain verification", ["PR.AA-01"], "The records this report is built from were not altered."),
    ],
}


def control_mapping(kind: str) -> list[dict]:
    controls = {c.id.split(" ")[0]: c for c in CONTROLS}
    return [
        {"section": section, "controls": [controls[c] for c in ids], "why": why}
        for section, ids, why in SECTION_CONTROLS[kind]
    ]


# Chain verification -------------------------------------------------------------------------------

@dataclass
class ChainResult:
    """What a report prints about the chains: verified since the last intact checkpoint, at which head."""

    available: bool
    ok: bool | None
    head_seq: int = 0
    head_digest: str = ""
    checked: int = 0
    problems: list[str] = field(default_factory=list)
    heads: dict = field(default_factory=dict)
    scope: str = ""
    since: dict | None = None
    erased: int = 0
    purged: int = 0

    @property
    def summary(self) -> str:
        if not self.available:
            return "chain not verified: the history chain is not available in this installation"
        if self.ok:
            return f"chain intact: {self.checked} records verified{' since the last verified head' if self.since else ''}"
        return f"chain BROKEN: {len(self.problems)} problem(s) among {self.checked} records"


def verify_history_chain() -> ChainResult:
    """The chains verified from the last verified head to now (everything, the first time)."""
    from core.chain import verify_since_checkpoint

    result = verify_since_checkpoint()
    return ChainResult(available=True, ok=bool(result.ok), head_seq=result.head_seq, head_digest=result.head_digest,
                       checked=result.checked, problems=[p.message for p in result.problems], heads=result.heads,
                       scope=result.scope, since=result.since, erased=result.erased, purged=result.purged)


# Campaign report ----------------------------------------------------------------------------------

ITEM_COLUMNS = [
    "item_id", "key_id", "key_label", "key_prefix", "customer", "workflow", "reviewer", "delegate", "status",
    "decided_by", "decided_at", "justification", "reassigned_to", "reminders", "escalated_at", "escalated_to",
    "default_action_applied", "exception_id", "key_status_now", "evidence_seen", "self_review",
]


def campaign_items(campaign: Campaign):
    return (
        AttestationItem.objects.filter(campaign=campaign)
        .select_related("key__workflow__customer", "reviewer", "delegate", "decided_by", "reassigned_to", "escalated_to")
        .order_by("pk")
    )


def _reminders_by_recipient(campaign: Campaign) -> dict[int, list[tuple]]:
    sent = defaultdict(list)
    reminders = campaign.notifications.filter(kind=Notification.Kind.REMINDER).order_by("sent_at", "pk")
    for recipient_id, sent_at, sequence in reminders.values_list("recipient_id", "sent_at", "sequence"):
        sent[recipient_id].append((sent_at, sequence))
    return sent


def _username(user) -> str:
    return user.get_username() if user else ""


def item_rows(campaign: Campaign, items=None) -> Iterator[dict]:
    """One plain row per item: what the PDF table and the attached CSV/JSON both show."""
    reminders = _reminders_by_recipient(campaign)
    items = campaign_items(campaign) if items is None else items
    for item in items:
        sent = reminders.get(item.reviewer_id, []) + (reminders.get(item.delegate_id, []) if item.delegate_id else [])
        if item.decided_at:
            sent = [s for s in sent if s[0] <= item.decided_at]
        key = item.key
        yield {
            "item_id": item.pk, "key_id": key.pk, "key_label": key.label, "key_prefix": key.prefix,
            "customer": key.workflow.customer.name, "workflow": key.workflow.name,
            "reviewer": _username(item.reviewer), "delegate": _username(item.delegate),
            "status": item.status, "status_label": item.get_status_display(),
            "decided_by": _username(item.decided_by), "decided_at": item.decided_at,
            "justification": item.justification, "reassigned_to": _username(item.reassigned_to),
            "reminders": [f"day {seq}" for _, seq in sent], "escalated_at": item.escalated_at,
            "escalated_to": _username(item.escalated_to), "default_action_applied": item.default_action_applied,
            "default_action_label": item.get_default_action_applied_display() if item.default_action_applied else "",
            "exception_id": item.exception_id or "", "key_status_now": key.status,
            "key_status_label": key.get_status_display(),
            "evidence_seen": review_quality.evidence_summary(item.evidence),
            "self_review": "; ".join(review_quality.self_review_labels(item.self_review)),
        }


def campaign_chunks(campaign: Campaign, chunk_size: int | None = None) -> list[tuple[int, int]]:
    """(first item pk, last item pk) ranges of ``chunk_size`` items, so each chunk task reads only its own rows."""
    chunk_size = chunk_size or CHUNK_SIZE
    ids = list(AttestationItem.objects.filter(campaign=campaign).order_by("pk").values_list("pk", flat=True))
    return [(ids[i], ids[min(i + chunk_size, len(ids)) - 1]) for i in range(0, len(ids), chunk_size)]


def campaign_summary(campaign: Campaign) -> dict:
    from attestations.services.campaigns import campaign_progress

    items = campaign.items.all()
    statuses = [s.value for s in ItemStatus]
    status_counts = {f"n_{s}": Count("pk", filter=Q(status=s)) for s in statuses}

    def breakdown(field_name: str) -> list[dict]:
        rows = items.values(field_name).annotate(total=Count("pk"), **status_counts).order_by(field_name)
        return [{"name": r[field_name] or "—", "total": r["total"], **{s: r[f"n_{s}"] for s in statuses}}
                for r in rows]

    key_states = Counter(dict(items.values_list("key__status").annotate(n=Count("pk")).order_by()))
    defaults = Counter(dict(items.exclude(default_action_applied="").values_list("default_action_applied")
                            .annotate(n=Count("pk")).order_by()))
    notifications = list(campaign.notifications.select_related("recipient").order_by("sent_at", "pk"))
    return {
        "progress": campaign_progress(campaign),
        "statuses": [(s.value, s.label) for s in ItemStatus],
        "per_customer": breakdown("key__workflow__customer__name"),
        "per_owner": breakdown("reviewer__username"),
        "key_states": [(s.label, key_states.get(s.value, 0)) for s in KeyStatus],
        "default_actions": [(DefaultAction(a).label, n) for a, n in sorted(defaults.items())],
        "notifications": notifications,
        "reviewer_quality": review_quality.reviewer_quality_rows(campaign),
        "scope": {
            "customers": [c.name for c in campaign.customers.order_by("name")],
            "workflows": [str(w) for w in campaign.workflows.select_related("customer").order_by("customer__name", "name")],
            "environments": list(campaign.environments),
            "risk_tiers": list(campaign.risk_tiers),
            "due_for_review_only": campaign.due_for_review_only,
        },
    }


def campaign_document(campaign: Campaign, summary: dict) -> dict:
    """The JSON attached to a campaign report: the campaign, its summary and every item."""
    return {
        "campaign": {
            "id": campaign.pk, "name": campaign.name, "status": campaign.status,
            "schedule": campaign.schedule.name if campaign.schedule else None,
            "created_at": campaign.created_at, "created_by": _username(campaign.created_by),
            "launched_at": campaign.launched_at, "launched_by": _username(campaign.launched_by),
            "due_on": campaign.due_on, "closed_at": campaign.closed_at, "closed_by": _username(campaign.closed_by),
            "default_action": campaign.default_action, "duration_days": campaign.duration_days,
            "reminder_days": campaign.reminder_days, "escalation_days": campaign.escalation_days,
            "scope": summary["scope"],
        },
        "totals": summary["progress"]["totals"],
        "per_customer": summary["per_customer"],
        "per_owner": summary["per_owner"],
        "reviewer_quality": summary.get("reviewer_quality", []),
        "notifications": [
            {"kind": n.kind, "recipient": _username(n.recipient), "sequence": n.sequence, "items": n.item_count,
             "sent_at": n.sent_at}
            for n in summary["notifications"]
        ],
        "items": [{c: row[c] for c in ITEM_COLUMNS} for row in item_rows(campaign)],
    }


# Key dossier --------------------------------------------------------------------------------------

def key_dossier(key: ApiKey) -> dict:
    """Everything known about one key's life, oldest first."""
    key = ApiKey.objects.select_related(
        "workflow__customer", "issuing_system", "owner", "steward", "approved_by"
    ).get(pk=key.pk)
    events = list(LifecycleEvent.objects.filter(key=key).select_related("actor").order_by("at", "pk"))
    usage = UsageDaily.objects.filter(key=key).aggregate(
        days=Count("pk"), calls=Sum("count"), first=Min("first_seen"), last=Max("last_seen"))
    recent_usage = list(UsageDaily.objects.filter(key=key).order_by("-day")[:30])
    revocation = (RevocationRequest.objects.filter(key=key).select_related("issuing_system", "requested_by", "confirmed_by")
                  .prefetch_related("attempt_log").first())
    owner_history = []
    last_owner = None
    for record in key.history.order_by("history_date", "history_id").select_related("owner", "history_user"):
        if record.owner_id != last_owner:
            owner_history.append({"owner": _username(record.owner), "since": record.history_date,
                                  "by": _username(record.history_user), "reason": record.history_change_reason or ""})
            last_owner = record.owner_id
    return {
        "key": key,
        "registration": [e for e in events if e.action in (LifecycleAction.REGISTER, LifecycleAction.IMPORT)],
        "approval": [e for e in events if e.action == LifecycleAction.APPROVE],
        "owner_history": owner_history,
        "transfers": list(OwnershipTransfer.objects.filter(key=key).select_related("from_user", "to_user", "requested_by")
                          .order_by("requested_at", "pk")),
        "attestations": list(AttestationItem.objects.filter(key=key).select_related(
            "campaign", "reviewer", "delegate", "decided_by", "escalated_to").order_by("campaign__created_at", "pk")),
        "exceptions": list(KeyException.objects.filter(key=key).select_related("requested_by", "decided_by")
                           .order_by("requested_at", "pk")),
        "usage": usage,
        "recent_usage": recent_usage,
        "exposures": list(Exposure.objects.filter(key=key).select_related("reported_by").order_by("reported_at", "pk")),
        "rotations": [e for e in events if e.action in (LifecycleAction.ROTATE, LifecycleAction.FLAG_ROTATION)],
        "revocation": revocation,
        "events": events,
    }


EVENT_COLUMNS = ["event_id", "at", "action", "from_status", "to_status", "actor", "reason"]


def event_rows(events) -> list[dict]:
    return [
        {"event_id": e.pk, "at": e.at, "action": e.action, "from_status": e.from_status, "to_status": e.to_status,
         "actor": _username(e.actor), "reason": e.reason}
        for e in events
    ]


def dossier_document(dossier: dict) -> dict:
    key = dossier["key"]
    revocation = dossier["revocation"]
    return {
        "key": {
            "id": key.pk, "label": key.label, "prefix": key.prefix, "fingerprint": key.fingerprint,
            "customer": key.workflow.customer.name, "workflow": key.workflow.name, "status": key.status,
            "owner": _username(key.owner), "steward": _username(key.steward), "approved_by": _username(key.approved_by),
            "approved_at": key.approved_at, "issued_on": key.issued_on, "expires_on": key.expires_on,
            "last_rotated_at": key.last_rotated_at, "revocation_reason": key.revocation_reason,
            "revocation_state": key.revocation_state,
        },
        "owners": dossier["owner_history"],
        "attestations": [
            {"campaign": i.campaign.name, "status": i.status, "reviewer": _username(i.reviewer),
             "decided_by": _username(i.decided_by), "decided_at": i.decided_at, "justification": i.justification,
             "default_action_applied": i.default_action_applied}
            for i in dossier["attestations"]
        ],
        "exceptions": [
            {"id": e.pk, "kind": e.kind, "status": e.status, "requested_by": _username(e.requested_by),
             "decided_by": _username(e.decided_by), "decided_at": e.decided_at, "justification": e.business_justification}
            for e in dossier["exceptions"]
        ],
        "usage": dossier["usage"],
        "exposures": [{"location": x.location, "reported_at": x.reported_at, "source": x.source} for x in dossier["exposures"]],
        "revocation": None if revocation is None else {
            "status": revocation.status, "reason": revocation.reason, "requested_at": revocation.requested_at,
            "requested_by": _username(revocation.requested_by), "acknowledged_at": revocation.acknowledged_at,
            "issuer_reference": revocation.issuer_reference, "confirmed_by": _username(revocation.confirmed_by),
            "confirmed_at": revocation.confirmed_at,
            "attempts": [{"number": a.number, "at": a.at, "status_code": a.status_code, "succeeded": a.succeeded,
                          "error": a.error} for a in revocation.attempt_log.all()],
        },
        "events": event_rows(dossier["events"]),
    }


# Customer report ----------------------------------------------------------------------------------

CUSTOMER_COLUMNS = [
    "key_id", "key_label", "key_prefix", "workflow", "environment", "owner", "status", "issued_on", "expires_on",
    "approved_by", "last_attested_at", "last_used_at", "events_in_period", "attestations_in_period",
    "revocation_status",
]


def _in_period(field_name: str, start, end) -> Q:
    q = Q()
    if start:
        q &= Q(**{f"{field_name}__date__gte": start})
    if end:
        q &= Q(**{f"{field_name}__date__lte": end})
    return q


def customer_report(customer: Customer, start: datetime.date | None, end: datetime.date | None) -> dict:
    """Every key of the customer's workflows, with what happened to it in the period."""
    keys = (
        ApiKey.objects.filter(workflow__customer=customer)
        .select_related("workflow", "owner", "approved_by")
        .annotate(
            events_in_period=Count("events", filter=_in_period("events__at", start, end), distinct=True),
            attestations_in_period=Count(
                "attestation_items",
                filter=_in_period("attestation_items__decided_at", start, end) & ~Q(attestation_items__status=ItemStatus.PENDING),
                distinct=True),
        )
        .order_by("workflow__name", "label", "pk")
    )
    revocations = dict(RevocationRequest.objects.filter(key__workflow__customer=customer).values_list("key_id", "status"))
    rows = [
        {"key_id": k.pk, "key_label": k.label, "key_prefix": k.prefix, "workflow": k.workflow.name,
         "environment": k.workflow.environment, "owner": _username(k.owner), "status": k.status,
         "status_label": k.get_status_display(), "issued_on": k.issued_on, "expires_on": k.expires_on,
         "approved_by": _username(k.approved_by), "last_attested_at": k.last_attested_at,
         "last_used_at": k.last_used_at, "events_in_period": k.events_in_period,
         "attestations_in_period": k.attestations_in_period, "revocation_status": revocations.get(k.pk, "")}
        for k in keys
    ]
    events = list(
        LifecycleEvent.objects.filter(key__workflow__customer=customer).filter(_in_period("at", start, end))
        .select_related("actor", "key").order_by("at", "pk")
    )
    return {
        "customer": customer,
        "rows": rows,
        "events": events,
        "status_counts": sorted(Counter(r["status"] for r in rows).items()),
        "period_start": start,
        "period_end": end,
    }


def customer_document(report: dict) -> dict:
    customer = report["customer"]
    return {
        "customer": {"id": customer.pk, "name": customer.name, "external_id": customer.external_id,
                     "contract_status": customer.contract_status, "contract_end": customer.contract_end},
        "period_start": report["period_start"], "period_end": report["period_end"],
        "keys": [{c: row[c] for c in CUSTOMER_COLUMNS} for row in report["rows"]],
        "events": [dict(row, key_id=e.key_id) for row, e in zip(event_rows(report["events"]), report["events"], strict=True)],
    }


def generated_at() -> datetime.datetime:
    return timezone.now()
