"""The data each evidence report is made of: the campaign report, the key dossier and the customer
report, their raw CSV and JSON, the control mapping and the history chain's verification.

Who may request which export lives in ``exports``; rendering (WeasyPrint, merging, signing) in
``evidence_pdf``; the Celery tasks in ``attestations.tasks`` are thin wrappers over them.
"""

from __future__ import annotations

import csv
import datetime
import hashlib
import heapq
import io
import json
import secrets
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from functools import cached_property

from django.contrib.auth import get_user_model
from django.db.models import Count, Max, Min, Q, Sum
from django.utils import timezone

from attestations.choices import MAX_STAGES, Decision, DefaultAction, ItemStatus, MissingSignoff, ReasonCode
from attestations.models import AttestationItem, Campaign, EvidenceExport, Notification, OwnershipTransfer
from attestations.services import review_quality
from attestations.services.reminders import STAGE_SEQUENCE
from attestations.stages import stage_window, stages_of
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
    """Compact JSON: half the size of indented JSON (a 100,000-item campaign's is about 70 MB, under the 75 MB
    per stream pypdf decompresses by default), and written by ``json``'s C encoder."""
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"), default=_plain)


# Control mapping ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Control:
    framework: str
    id: str
    title: str
    note: str = ""

    @property
    def ref(self) -> str:
        """The short id the section mapping names (``NHI1:2025`` for ``NHI1:2025 (NHI-01)``)."""
        return self.id.split(" ")[0]


OWASP_NHI = "OWASP Non-Human Identities Top 10 (2025)"
NIST_CSF_2 = "NIST Cybersecurity Framework 2.0"
NIST_CSF_11 = "NIST Cybersecurity Framework 1.1"
SOC2 = "AICPA Trust Services Criteria (SOC 2), 2017, revised points of focus 2022"
ISO27001 = "ISO/IEC 27001:2022 Annex A"

CONTROLS = (
    Control(OWASP_NHI, "NHI1:2025 (NHI-01)", "Improper Offboarding"),
    Control(OWASP_NHI, "NHI3:2025 (NHI-03)", "Vulnerable Third-Party NHI"),
    Control(NIST_CSF_2, "PR.AA-01",
            "Identities and credentials for authorized users, services, and hardware are managed by the organization"),
    Control(NIST_CSF_11, "PR.AC-4",
            "Access permissions and authorizations are managed, incorporating the principles of least privilege "
            "and separation of duties",
            "PR.AC-4 is a CSF 1.1 identifier, kept because auditors still ask for it; CSF 2.0 has no PR.AC category "
            "and moved this outcome to PR.AA-05."),
    Control(SOC2, "CC6.1",
            "The entity implements logical access security software, infrastructure, and architectures over "
            "protected information assets to protect them from security events to meet the entity's objectives."),
    Control(SOC2, "CC6.2",
            "Prior to issuing system credentials and granting system access, the entity registers and authorizes "
            "new internal and external users whose access is administered by the entity. For those users whose "
            "access is administered by the entity, user system credentials are removed when user access is no "
            "longer authorized."),
    Control(SOC2, "CC6.3",
            "The entity authorizes, modifies, or removes access to data, software, functions, and other protected "
            "information assets based on roles, responsibilities, or the system design and changes, giving "
            "consideration to the concepts of least privilege and segregation of duties, to meet the entity's "
            "objectives."),
    Control(ISO27001, "A.5.15", "Access control"),
    Control(ISO27001, "A.5.16", "Identity management"),
    Control(ISO27001, "A.5.18", "Access rights"),
    Control(ISO27001, "A.8.2", "Privileged access rights",
            "An API key grants a customer's systems programmatic access to data; the portal treats every key as "
            "a privileged non-human identity with a named owner."),
)

CHAIN_SECTION = ("History chain verification", ["PR.AA-01"],
                 "The records this report is built from were not altered.")

# Which section of each report evidences which control (control ids as ``Control.ref``, then why).
SECTION_CONTROLS = {
    Kind.CAMPAIGN: [
        ("Scope, schedule and dates", ["NHI1:2025", "PR.AA-01", "CC6.1", "A.5.18", "A.8.2"],
         "Every live key in scope was put before an accountable owner on a schedule, then before each later "
         "review stage's reviewer."),
        ("Totals and resulting key states", ["NHI1:2025", "PR.AA-01", "CC6.2", "A.5.16"],
         "How many keys were decided at each stage, why keys were released (reason codes), and the state each "
         "key was left in after the campaign."),
        ("Decisions per customer and owner", ["NHI3:2025", "PR.AA-01", "A.5.16"],
         "Customer-owned (third-party) keys were attested per customer by named people."),
        ("Reminders, escalations and default actions", ["NHI1:2025", "CC6.2", "A.5.18"],
         "Keys nobody vouched for were suspended, revoked or flagged: no key outlives its owner's attention."),
        ("Reviewer quality", ["PR.AC-4", "CC6.3", "A.5.15"],
         "How long reviewers took, decisions in bulk, and decisions by someone not independent of the key."),
        ("Items printed and the sample", ["PR.AA-01", "PR.AC-4", "CC6.2", "CC6.3", "A.5.15", "A.5.18", "A.8.2"],
         "Every exception, release, reassignment, revocation, late and default decision, and a sample of the "
         "confirmed ones an auditor can redraw, printed item by item after it: who decided, when and why; only "
         "the assigned reviewer or delegate may decide."),
        CHAIN_SECTION,
    ],
    Kind.KEY: [
        ("Registration and approval", ["PR.AA-01", "PR.AC-4", "CC6.2", "A.5.16", "A.8.2"],
         "The key was registered with an owner and purpose and approved by someone else."),
        ("Ownership", ["NHI1:2025", "PR.AA-01", "A.5.16"], "Who was accountable for the key at every point in time."),
        ("Attestations", ["NHI1:2025", "PR.AA-01", "CC6.3", "A.5.18"],
         "The owner re-confirmed the key's purpose on a schedule."),
        ("Exceptions", ["PR.AC-4", "CC6.3", "A.5.15", "A.8.2"],
         "Deviations were approved by compliance, never by the owner or requester."),
        ("Usage and exposures", ["NHI3:2025", "NHI1:2025", "CC6.1"], "Whether the customer's key was used, and any leak."),
        ("Rotation and revocation", ["NHI1:2025", "CC6.2", "A.5.18"],
         "Rotation and revocation, with the issuing system's acknowledgement."),
        CHAIN_SECTION,
    ],
    Kind.CUSTOMER: [
        ("Keys of the customer", ["NHI3:2025", "PR.AA-01", "CC6.1", "A.5.16", "A.8.2"],
         "Every key the customer's integrations hold, and its owner."),
        ("Lifecycle in the period", ["NHI1:2025", "PR.AC-4", "CC6.2", "CC6.3", "A.5.15", "A.5.18"],
         "Approvals, attestations and revocations in the period."),
        CHAIN_SECTION,
    ],
}


def control_mapping(kind: str) -> list[dict]:
    """Per section of the report, the controls it evidences and why."""
    controls = {c.ref: c for c in CONTROLS}
    return [
        {"section": section, "controls": [controls[c] for c in ids], "why": why}
        for section, ids, why in SECTION_CONTROLS[kind]
    ]


def sections_by_control(kind: str) -> list[dict]:
    """The same mapping the other way round: per control, framework by framework, the sections evidencing it."""
    return [
        {"control": control, "sections": [section for section, ids, _why in SECTION_CONTROLS[kind] if control.ref in ids]}
        for control in CONTROLS
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
        if self.ok and self.since:
            before = (self.since.get("heads") or {}).get("evidence", [0])[0]
            return (f"chain intact up to seq {self.head_seq}: verified at seq {before} earlier, and the {self.checked} "
                    f"record{'s' if self.checked != 1 else ''} sealed or changed since checked now")
        if self.ok:
            return f"chain intact: all {self.checked} records verified"
        return f"chain BROKEN: {len(self.problems)} problem(s) among {self.checked} records"


def verify_history_chain() -> ChainResult:
    """The chains verified from the last verified head to now (everything, the first time)."""
    from core.chain import verify_since_checkpoint

    result = verify_since_checkpoint()
    return ChainResult(available=True, ok=bool(result.ok), head_seq=result.head_seq, head_digest=result.head_digest,
                       checked=result.checked, problems=[p.message for p in result.problems], heads=result.heads,
                       scope=result.scope, since=result.since, erased=result.erased, purged=result.purged)


# Campaign report ----------------------------------------------------------------------------------

# Every stage's decision gets the same five columns, for three stages whatever the campaign has, so the header
# of the attached CSV is the same for every campaign.
STAGE_FIELDS = ("decision", "by", "at", "reason", "justification")
STAGE_COLUMNS = [f"stage{n}_{name}" for n in range(1, MAX_STAGES + 1) for name in STAGE_FIELDS]
ITEM_COLUMNS = [
    "item_id", "key_id", "key_label", "key_prefix", "customer", "workflow", "reviewer", "delegate", "status",
    "stage", "reason", "decided_by", "decided_at", "justification", "reassigned_to", "reminders", "escalated_at",
    "escalated_to", "default_action_applied", "kept_without_signoff", "exception_id", "key_status_now",
    "evidence_seen", "self_review", *STAGE_COLUMNS,
]
# The attached JSON gives each item's stage decisions as a list (``decisions``) instead of the CSV's columns.
JSON_ITEM_COLUMNS = [c for c in ITEM_COLUMNS if c not in STAGE_COLUMNS]
# What the attached JSON keeps of each stage decision (the decider's user id is left out).
DECISION_KEYS = ("stage", "decision", "by", "as", "at", "reason", "justification", "evidence_seen", "self_review")
REASON_LABELS = dict(ReasonCode.choices)
DECISION_LABELS = dict(Decision.choices)
CAPACITY_LABELS = {"reviewer": "as reviewer", "delegate": "as delegate", "escalation": "after escalation",
                   "compliance": "as compliance"}


def _utc(value) -> datetime.datetime | None:
    """A decision's time (ISO text as kept in ``AttestationItem.decisions``) in UTC."""
    if not value:
        return None
    at = datetime.datetime.fromisoformat(value) if isinstance(value, str) else value
    if timezone.is_naive(at):
        at = timezone.make_aware(at, datetime.UTC)
    return at.astimezone(datetime.UTC)


def stage_decisions(decisions: list[dict] | None) -> list[dict]:
    """Every stage's decision of an item, oldest first, as the reports print and attach them: the stage, the
    decision, who, when (UTC), in what capacity, the reason code, the justification, and a line of what the
    decider saw (the evidence frozen with the decision) and why they were not independent of the key."""
    rows = []
    for entry in decisions or []:
        decision, reason, capacity = entry.get("decision") or "", entry.get("reason") or "", entry.get("as") or ""
        rows.append({
            "stage": entry.get("stage"), "decision": decision, "decision_label": DECISION_LABELS.get(decision, decision),
            "by": entry.get("by") or "", "as": capacity, "as_label": CAPACITY_LABELS.get(capacity, capacity),
            "at": _utc(entry.get("at")), "reason": reason, "reason_label": REASON_LABELS.get(reason, reason),
            "justification": entry.get("justification") or "",
            "evidence_seen": review_quality.evidence_summary(entry.get("evidence") or {}),
            "self_review": "; ".join(review_quality.self_review_labels(entry.get("self_review"))),
        })
    return rows


def decision_document(stages: list[dict]) -> list[dict]:
    """Each stage's decision as the attached JSON gives it (``DECISION_KEYS``, without the labels)."""
    return [{k: entry[k] for k in DECISION_KEYS} for entry in stages]


def stage_columns(stages: list[dict]) -> dict:
    """The CSV's ``stage<n>_*`` cells: each stage's decision, empty for a stage that did not decide."""
    cells = dict.fromkeys(STAGE_COLUMNS, "")
    for entry in stages:
        if entry["stage"] in range(1, MAX_STAGES + 1):
            cells.update({f"stage{entry['stage']}_{name}": entry[name] for name in STAGE_FIELDS})
    return cells


SIGNOFF_KINDS = ("kept", "default", "awaited")


def missing_signoff(status: str, stage: int, stages: list[dict]) -> tuple[str, str]:
    """An item whose last decision was made at a stage before the one it is at: its later stage's sign-off never
    came and the earlier decision was kept (``kept``) or the default action applied (``default``), or the
    sign-off is still awaited (``awaited``). The kind and a line saying so; ``("", "")`` for any other item."""
    if not stages or not stages[-1]["stage"] or stages[-1]["stage"] >= stage:
        return "", ""
    last = stages[-1]
    earlier = f"the stage {last['stage']} {last['decision']} by {last['by'] or 'unknown'}"
    if status in (ItemStatus.CONFIRMED, ItemStatus.RELEASED):
        return "kept", f"kept without stage {stage} sign-off: {earlier} stands"
    if status == ItemStatus.EXPIRED:
        return "default", f"default action without stage {stage} sign-off of {earlier}"
    if status == ItemStatus.PENDING:
        return "awaited", f"awaiting stage {stage} sign-off of {earlier}"
    return "", ""


def campaign_items(campaign: Campaign):
    return AttestationItem.objects.filter(campaign=campaign).order_by("pk")


def _reminders_by_recipient(campaign: Campaign) -> dict[int, list[tuple]]:
    sent = defaultdict(list)
    reminders = campaign.notifications.filter(kind=Notification.Kind.REMINDER).order_by("sent_at", "pk")
    for recipient_id, sent_at, sequence in reminders.values_list("recipient_id", "sent_at", "sequence"):
        sent[recipient_id].append((sent_at, sequence))
    return sent


def _username(user) -> str:
    return user.get_username() if user else ""


def _item_fields() -> dict[str, str]:
    """What ``item_rows`` reads of an item and its key, workflow, customer and people, as ``values()`` lookups:
    plain values rather than six model instances per item, since a report reads every item of a campaign."""
    name = get_user_model().USERNAME_FIELD
    return {
        "item_id": "pk", "key_id": "key_id", "key_label": "key__label", "key_prefix": "key__prefix",
        "customer": "key__workflow__customer__name", "workflow": "key__workflow__name",
        "reviewer_id": "reviewer_id", "reviewer": f"reviewer__{name}", "delegate_id": "delegate_id",
        "delegate": f"delegate__{name}", "status": "status", "decided_by": f"decided_by__{name}",
        "decided_at": "decided_at", "justification": "justification", "reassigned_to": f"reassigned_to__{name}",
        "escalated_at": "escalated_at", "escalated_to": f"escalated_to__{name}",
        "default_action_applied": "default_action_applied", "exception_id": "exception_id",
        "key_status_now": "key__status", "evidence": "evidence", "self_review": "self_review",
        "stage": "stage", "reason": "reason", "decisions": "decisions", "kept_without_signoff": "kept_without_signoff",
    }


def reminder_label(sequence: int) -> str:
    """A reminder by its sequence number: the day of the campaign, or of a later stage."""
    stage, day = divmod(sequence, STAGE_SEQUENCE)
    return f"stage {stage + 1} day {day}" if stage else f"day {day}"


def item_rows(campaign: Campaign, items=None) -> Iterator[dict]:
    """One plain row per item: what the PDF table and the attached CSV/JSON both show.

    ``items``: a queryset of the campaign's items (default: all of them, by id)."""
    reminders = _reminders_by_recipient(campaign)
    items = campaign_items(campaign) if items is None else items
    fields = _item_fields()
    names = list(fields)
    item_labels, action_labels, key_labels = (dict(c.choices) for c in (ItemStatus, DefaultAction, KeyStatus))
    for values in items.values_list(*fields.values()).iterator(chunk_size=2000):
        item = dict(zip(names, values, strict=True))
        sent = reminders.get(item["reviewer_id"], []) + (reminders.get(item["delegate_id"], []) if item["delegate_id"] else [])
        decided_at, status, action, key_status = (item["decided_at"], item["status"], item["default_action_applied"],
                                                  item["key_status_now"])
        if decided_at:
            sent = [s for s in sent if s[0] <= decided_at]
        stages = stage_decisions(item["decisions"])
        yield {
            "item_id": item["item_id"], "key_id": item["key_id"], "key_label": item["key_label"],
            "key_prefix": item["key_prefix"], "customer": item["customer"], "workflow": item["workflow"],
            "reviewer": item["reviewer"] or "", "delegate": item["delegate"] or "",
            "status": status, "status_label": item_labels.get(status, status),
            "decided_by": item["decided_by"] or "", "decided_at": decided_at,
            "justification": item["justification"], "reassigned_to": item["reassigned_to"] or "",
            "reminders": [reminder_label(seq) for _, seq in sent], "escalated_at": item["escalated_at"],
            "escalated_to": item["escalated_to"] or "", "default_action_applied": action,
            "kept_without_signoff": item["kept_without_signoff"],
            "default_action_label": action_labels.get(action, action) if action else "",
            "exception_id": item["exception_id"] or "", "key_status_now": key_status,
            "key_status_label": key_labels.get(key_status, key_status),
            "evidence_seen": review_quality.evidence_summary(item["evidence"]),
            "self_review": "; ".join(review_quality.self_review_labels(item["self_review"])),
            "stage": item["stage"], "reason": item["reason"], "reason_label": REASON_LABELS.get(item["reason"], item["reason"]),
            "stage_decisions": stages,
            **dict(zip(("signoff", "signoff_note"), missing_signoff(status, item["stage"], stages), strict=True)),
            **stage_columns(stages),
        }


# What a campaign report prints: the items an auditor must see, and a sample of the rest -------------

# Sample size by the number of confirmed decisions (the population): up to 250 -> 25, up to 2,500 -> 40,
# more -> 60; all of them when there are fewer. An export may ask for another size, within these bounds.
SAMPLE_SIZE_RULE = ((250, 25), (2_500, 40))
SAMPLE_SIZE_ABOVE = 60
SAMPLE_SIZE_MIN, SAMPLE_SIZE_MAX = 1, 1_000
SAMPLE_RULE_TEXT = "25 up to 250 confirmed decisions, 40 up to 2,500, 60 above; all of them when there are fewer"

# Why an item is printed in full, in the order the reasons are listed.
PRINT_REASONS = {
    "exception": "under an exception",
    "released": "released",
    "reassigned": "reassigned",
    "revoked": "key revoked",
    "late": "decided late",
    "default": "default action",
    "no_signoff": "kept without a later stage's sign-off",
}
DECIDED = frozenset({ItemStatus.CONFIRMED, ItemStatus.RELEASED, ItemStatus.REASSIGNED})
# The fields that decide whether an item is printed, under the names of the attached CSV's columns.
PLAN_FIELDS = {"item_id": "pk", "status": "status", "exception_id": "exception_id", "decided_at": "decided_at",
               "escalated_at": "escalated_at", "default_action_applied": "default_action_applied",
               "key_status_now": "key__status", "kept_without_signoff": "kept_without_signoff"}


def new_sample_seed() -> str:
    """A random seed for one export's sample, printed in the report so anyone can redraw it."""
    return secrets.token_hex(8)


def sample_size_for(population: int, requested: int | None = None) -> int:
    """How many confirmed decisions the sample holds: ``requested``, or 25 / 40 / 60 by the population;
    never more than there are."""
    if requested is None:
        requested = next((size for limit, size in SAMPLE_SIZE_RULE if population <= limit), SAMPLE_SIZE_ABOVE)
    return min(requested, population)


def sample_digest(seed: str, item_id) -> str:
    """What the sample is ranked by: the SHA-256 of ``"<seed>:<item_id>"``, in lowercase hexadecimal."""
    return hashlib.sha256(f"{seed}:{item_id}".encode()).hexdigest()


def draw_sample(seed: str, item_ids: Iterable[int], size: int) -> list[int]:
    """The first ``size`` item ids ranked by ``sample_digest`` ascending: the printed procedure, in code."""
    return heapq.nsmallest(size, item_ids, key=lambda item_id: sample_digest(seed, item_id))


def redraw_command(csv_name: str, seed: str, size: int) -> str:
    """A command an auditor can run on the attached CSV alone (Python 3, standard library only)."""
    return ("python3 -c \"import csv,hashlib,sys; f,s,n=sys.argv[1:]; "
            "ids=[r['item_id'] for r in csv.DictReader(open(f,newline='',encoding='utf-8')) if r['status']=='confirmed']; "
            "print(*sorted(ids,key=lambda i:hashlib.sha256((s+':'+i).encode()).hexdigest())[:int(n)])\" "
            f"{csv_name} {seed} {size}")


def late_after(campaign: Campaign) -> datetime.datetime | None:
    """A decision at or after this instant was late: the start of the day after the due date, in the
    portal's time zone. No due date: only escalated items are late."""
    if not campaign.due_on:
        return None
    return timezone.make_aware(datetime.datetime.combine(campaign.due_on + datetime.timedelta(days=1), datetime.time.min))


def print_reasons(row: dict, late_from: datetime.datetime | None) -> list[str]:
    """Why the report prints this item in full (keys of ``PRINT_REASONS``); none for a routine confirmation.

    Reads only columns of the attached CSV, so an auditor can check that every such item is printed:
    an exception, a release or a reassignment, a key revoked now, a decision made late (after the due
    date, or after escalation to the manager) and an item closed by the default action.
    """
    status = row["status"]
    reasons = []
    if row["exception_id"]:
        reasons.append("exception")
    if status == ItemStatus.RELEASED:
        reasons.append("released")
    if status == ItemStatus.REASSIGNED:
        reasons.append("reassigned")
    if row["key_status_now"] == KeyStatus.REVOKED:
        reasons.append("revoked")
    decided_at = row["decided_at"]
    if status in DECIDED and (row["escalated_at"] or (late_from and decided_at and decided_at >= late_from)):
        reasons.append("late")
    if row["default_action_applied"] or status == ItemStatus.EXPIRED:
        reasons.append("default")
    if row.get("kept_without_signoff") in (True, "true", "True"):
        reasons.append("no_signoff")
    return reasons


def plan_rows(campaign: Campaign) -> Iterator[dict]:
    """Every item of the campaign by id, with only the fields ``plan_report`` reads."""
    names, fields = list(PLAN_FIELDS), list(PLAN_FIELDS.values())
    items = AttestationItem.objects.filter(campaign=campaign).order_by("pk").values_list(*fields)
    for values in items.iterator(chunk_size=5000):
        yield dict(zip(names, values, strict=True))


@dataclass(frozen=True)
class ReportPlan:
    """Which items a campaign report prints, in which chunks, and the sample drawn for it.

    Built once when the export starts (the chunks print from it) and again from the rows attached to
    the report, which must give the same plan: the printed sample is then what the CSV redraws.
    """

    seed: str
    print_all: bool
    requested_size: int | None
    late_after: datetime.datetime | None
    total: int
    population: int
    size: int
    sample: list[int]
    reason_counts: dict[str, int]
    printed_in_full: int
    chunk_size: int
    chunks: list[dict]

    @property
    def printed(self) -> int:
        """How many items are printed (one printed in full and drawn for the sample is printed in both places)."""
        return len({item_id for chunk in self.chunks for item_id in chunk["ids"]})

    @cached_property
    def draws(self) -> dict[int, int]:
        """Item id -> its 1-based place in the sample."""
        return {item_id: n for n, item_id in enumerate(self.sample, start=1)}

    def printed_as(self, row: dict) -> str:
        """How the item table marks a row: its sample draw, and why it is printed in full."""
        labels = [PRINT_REASONS[r] for r in print_reasons(row, self.late_after)]
        draw = self.draws.get(row["item_id"])
        if draw:
            labels.insert(0, f"sample draw {draw} of {self.size}")
        return "; ".join(labels)

    def as_dict(self) -> dict:
        return {**asdict(self), "late_after": self.late_after.isoformat() if self.late_after else None}

    @classmethod
    def from_dict(cls, data: dict) -> ReportPlan:
        late = data["late_after"]
        return cls(**{**data, "late_after": datetime.datetime.fromisoformat(late) if late else None})


def sampling_options(export: EvidenceExport) -> dict:
    """The export's sampling parameters; an export from before sampling draws with its id as the seed."""
    parameters = export.parameters or {}
    return {"seed": parameters.get("sample_seed") or f"export-{export.pk}",
            "sample_size": parameters.get("sample_size"), "print_all": bool(parameters.get("print_all_items"))}


def plan_report(campaign: Campaign, rows: Iterable[dict], *, seed: str, sample_size: int | None = None,
                print_all: bool = False, chunk_size: int | None = None) -> ReportPlan:
    """What the report prints: every item with a ``print_reasons``, then the sample of confirmed decisions
    (``draw_sample``) in draw order; or, with ``print_all``, every item by id. Chunks never mix the two."""
    chunk_size = chunk_size or CHUNK_SIZE
    late_from = late_after(campaign)
    every, in_full, confirmed, counts = [], [], [], Counter()
    for row in rows:
        item_id = int(row["item_id"])
        every.append(item_id)
        reasons = print_reasons(row, late_from)
        if reasons:
            in_full.append(item_id)
            counts.update(reasons)
        if row["status"] == ItemStatus.CONFIRMED:
            confirmed.append(item_id)
    size = sample_size_for(len(confirmed), sample_size)
    sample = draw_sample(seed, confirmed, size)
    sections = [("all", every)] if print_all else [("in_full", in_full), ("sample", sample)]
    chunks = [{"section": name, "start": start, "ids": ids[start:start + chunk_size]}
              for name, ids in sections for start in range(0, len(ids), chunk_size)]
    return ReportPlan(seed=seed, print_all=print_all, requested_size=sample_size, late_after=late_from,
                      total=len(every), population=len(confirmed), size=size, sample=sample,
                      reason_counts={r: counts[r] for r in PRINT_REASONS}, printed_in_full=len(in_full),
                      chunk_size=chunk_size, chunks=chunks)


def sampling_document(plan: ReportPlan, csv_name: str) -> dict:
    """The sample and the rule for printing in full, as the attached JSON states them."""
    return {
        "seed": plan.seed, "population": plan.population, "size": plan.size, "requested_size": plan.requested_size,
        "rule": SAMPLE_RULE_TEXT,
        "procedure": (f"Keep the rows of {csv_name} whose status is confirmed; rank them by the SHA-256 of "
                      f"'<seed>:<item_id>' in lowercase hexadecimal, ascending; take the first {plan.size}."),
        "sample": plan.sample, "print_all_items": plan.print_all,
        "late_after": plan.late_after, "printed_in_full_counts": plan.reason_counts,
    }


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
        "stages": [{"number": s.number, "describe": s.describe(), "reviewer": s.reviewer_label,
                    "fallback": s.fallback_label, "window": stage_window(campaign, s.number)}
                   for s in stages_of(campaign)],
        "missing_signoff": MissingSignoff(campaign.missing_signoff).label,
        "separation_of_duties": campaign.separation_of_duties,
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


def stage_tallies(rows: Iterable[dict], stage_count: int) -> dict:
    """From the item rows (what the attached CSV holds): per stage, its decisions of each kind; per reason code,
    the items released in the end and the releases decided at each stage; and the items whose later stage's
    sign-off never came (kept, or given the default action) or is awaited. Zeros of the same shape without rows."""
    numbers = range(1, stage_count + 1)
    decided = {n: Counter() for n in numbers}
    released_at = {n: Counter() for n in numbers}
    final, signoff = Counter(), Counter()
    for row in rows:
        for entry in row["stage_decisions"]:
            if entry["stage"] in decided:
                decided[entry["stage"]][entry["decision"]] += 1
                if entry["decision"] == Decision.RELEASE:
                    released_at[entry["stage"]][entry["reason"]] += 1
        if row["status"] == ItemStatus.RELEASED:
            final[row["reason"]] += 1
        if row["signoff"]:
            signoff[row["signoff"]] += 1
    codes = [*ReasonCode.values, *sorted({c for c in final if c not in ReasonCode.values}
                                         | {c for n in numbers for c in released_at[n] if c not in ReasonCode.values})]
    kinds = [Decision.CONFIRM, Decision.RELEASE, Decision.REASSIGN]
    return {
        "per_stage": [{"stage": n, "counts": [decided[n][k] for k in kinds], "total": sum(decided[n].values())}
                      for n in numbers],
        "decisions": [DECISION_LABELS[k] for k in kinds],
        "releases_by_reason": [{"reason": code, "label": REASON_LABELS.get(code) or "no reason code recorded",
                                "released": final[code], "per_stage": [released_at[n][code] for n in numbers]}
                               for code in codes],
        "released": sum(final.values()),
        "signoff": {kind: signoff[kind] for kind in SIGNOFF_KINDS},
    }


def stage_tallies_document(tallies: dict) -> dict:
    """``stage_tallies`` as the attached JSON states them, by code rather than by label."""
    kinds = [Decision.CONFIRM.value, Decision.RELEASE.value, Decision.REASSIGN.value]
    return {
        "decisions_per_stage": [{"stage": row["stage"], **dict(zip(kinds, row["counts"], strict=True))}
                                for row in tallies["per_stage"]],
        "releases_by_reason": [{"reason": row["reason"], "released": row["released"],
                                "per_stage": row["per_stage"]} for row in tallies["releases_by_reason"]],
        "missing_signoff": tallies["signoff"],
    }


def campaign_document(campaign: Campaign, summary: dict, rows: Iterable[dict] | None = None,
                      sampling: dict | None = None) -> dict:
    """The JSON attached to a campaign report: the campaign, its summary, how its sample was drawn and every
    item (``rows``: the campaign's ``item_rows``, when the caller has them already)."""
    rows = list(item_rows(campaign)) if rows is None else rows
    tallies = summary.get("stage_tallies") or stage_tallies(rows, len(summary["stages"]))
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
            "stages": [{**asdict(stage), "description": stage.describe(),
                        "window": stage_window(campaign, stage.number)} for stage in stages_of(campaign)],
            "stages_ended": campaign.stages_ended, "missing_signoff": campaign.missing_signoff,
            "separation_of_duties": campaign.separation_of_duties,
        },
        "totals": summary["progress"]["totals"],
        "stage_tallies": stage_tallies_document(tallies),
        "per_customer": summary["per_customer"],
        "per_owner": summary["per_owner"],
        "reviewer_quality": summary.get("reviewer_quality", []),
        "notifications": [
            {"kind": n.kind, "recipient": _username(n.recipient), "sequence": n.sequence, "items": n.item_count,
             "sent_at": n.sent_at}
            for n in summary["notifications"]
        ],
        **({"sampling": sampling} if sampling is not None else {}),
        "items": [{**{c: row[c] for c in JSON_ITEM_COLUMNS}, "decisions": decision_document(row["stage_decisions"])}
                  for row in rows],
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
        "attestations": [
            {"item": item, "reason_label": REASON_LABELS.get(item.reason, item.reason), "stages": stages,
             "signoff_note": missing_signoff(item.status, item.stage, stages)[1]}
            for item in AttestationItem.objects.filter(key=key).select_related(
                "campaign", "reviewer", "delegate", "decided_by", "escalated_to").order_by("campaign__created_at", "pk")
            for stages in [stage_decisions(item.decisions)]
        ],
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
            {"campaign": a["item"].campaign.name, "status": a["item"].status, "stage": a["item"].stage,
             "reason": a["item"].reason, "reviewer": _username(a["item"].reviewer),
             "decided_by": _username(a["item"].decided_by), "decided_at": a["item"].decided_at,
             "justification": a["item"].justification, "default_action_applied": a["item"].default_action_applied,
             "decisions": decision_document(a["stages"])}
            for a in dossier["attestations"]
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
