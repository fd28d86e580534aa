"""A reviewer's decisions on campaign items: confirm, release, reassign, delegate, bulk confirm, and the
answer of a key's new owner to a reassignment. Each decision is recorded once under the item's row lock."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import Case, When
from django.utils import timezone

from attestations.choices import (
    MOVABLE_DECISIONS,
    CampaignStatus,
    Decision,
    ItemStatus,
    ReasonCode,
    TransferStatus,
)
from attestations.models import (
    AttestationItem,
    OwnershipTransfer,
    may_decide,
)
from attestations.services import outcomes, review_quality, review_stages
from attestations.services.campaigns import CampaignError, named_user
from core import roles
from core.chain import sealed_atomic
from core.errors import ServiceError
from core.history import attribute_change
from core.jobs import enqueue_on_commit
from keys.models import ApiKey
from keys.services import lifecycle


class NotAllowedToDecide(CampaignError):
    """The actor may not decide the item now (``may_decide``, or separation of duties at a later stage)."""


class AlreadyDecided(CampaignError):
    """The item is no longer pending."""


PAST = {Decision.CONFIRM: "confirmed", Decision.RELEASE: "released", Decision.REASSIGN: "reassigned",
        Decision.DELEGATE: "delegated"}


def can_decide(user, item: AttestationItem) -> bool:
    """The item's reviewer, their delegate, the person it was escalated to (``AttestationItem.objects.decidable_by``)."""
    return AttestationItem.objects.decidable_by(user).filter(pk=item.pk).exists()


def _decision_keys(actor):
    """Keys as a decision reads them: with the workflow and customer the answer shows (the portal's row,
    the API's item) and whether ``actor`` registered the key."""
    return ApiKey.objects.select_related("workflow__customer").annotate(
        registered_by_actor=review_quality.registered_by(actor))


def _locked_item(item_pk: int, actor) -> AttestationItem:
    """The item under its row lock, with its campaign and whether ``actor`` may decide it."""
    return (AttestationItem.objects.select_related("campaign").select_for_update(of=("self",))
            .annotate(actor_may_decide=Case(When(may_decide(actor), then=True), default=False))
            .get(pk=item_pk))


def record_decision(item: AttestationItem, *, actor, decision: str, justification: str = "", affirm: bool = False,
                    to=None, reaffirm_exception: bool = False, reason: str = "", batch_size: int = 1) -> AttestationItem:
    """Apply one reviewer decision, once, at the item's current stage.

    A confirmation or release that the next stage admits (its risk tiers and the decisions that move on) moves
    the item on to that stage's reviewer, still pending; otherwise the decision is final and acts on the key
    (a later stage's confirm signs off, its release overrules an earlier confirm). Every stage's decision is
    kept in ``item.decisions`` with who, when, in what capacity, the reason code, the justification and what
    the reviewer saw (usage, exceptions, recommendation), the size of the submission it came in
    (``batch_size``) and whether the decider was independent of the key.

    Confirming a key that was under an exception at launch also re-affirms the exception's
    justification (``reaffirm_exception``), and the key is next reviewed on the shorter cadence.

    The item row is locked first, so of concurrent submissions exactly one finds it pending; the
    campaign's status is read after the lock, so a decision racing a close is applied before the
    close reaches the item or refused after it.
    """
    justification = (justification or "").strip()
    if decision not in Decision.values:
        raise CampaignError("Choose confirm, release, reassign or delegate.", field="decision")
    with sealed_atomic():
        # The campaign comes with the item; only the item is locked. A close that committed while this
        # waited for the lock has already expired the item (re-read under the lock): refused as decided.
        item = _locked_item(item.pk, actor)
        refused = _refusal(item)
        if refused is None:
            _decide(item, actor=actor, decision=decision, justification=justification, affirm=affirm, to=to,
                    reaffirm_exception=reaffirm_exception, reason=reason or "", batch_size=batch_size)
    if refused is not None:
        # Raised once the transaction, which wrote nothing, has committed: a rollback would also drop the
        # connection's prepared statements (psycopg clears them on every ROLLBACK), and double submissions
        # are common enough for that to cost PostgreSQL a re-plan of every statement of the next decisions.
        raise refused
    return item


def _refusal(item: AttestationItem) -> CampaignError | None:
    if not item.actor_may_decide:
        return NotAllowedToDecide("Only the assigned reviewer or their delegate can decide this item.")
    if item.status != ItemStatus.PENDING:
        return AlreadyDecided(f"This item was already decided ({item.get_status_display().lower()}).")
    if item.campaign.status != CampaignStatus.ACTIVE:
        return CampaignError(f"The campaign is {item.campaign.get_status_display().lower()}: decisions are closed.")
    return None


def separation_refusal(item: AttestationItem, actor) -> str:
    """Why ``actor`` may not decide ``item`` at its current stage under separation of duties ("" if they may):
    from stage 2 on, not an item they decided at an earlier stage, nor a key they own, steward, registered or
    approved. ``item.key`` carries ``registered_by_actor``."""
    if item.stage < 2 or not item.campaign.separation_of_duties:
        return ""
    key = item.key
    why = []
    if any(entry.get("by_id") == actor.pk for entry in item.decisions):
        why.append("decided it at an earlier stage")
    if key.owner_id == actor.pk:
        why.append("own the key")
    if key.steward_id == actor.pk:
        why.append("steward the key")
    if getattr(key, "registered_by_actor", False):
        why.append("registered the key")
    if key.approved_by_id == actor.pk:
        why.append("approved the key")
    if not why:
        return ""
    return (f"Separation of duties: you {' and '.join(why)}, so another reviewer must decide stage {item.stage} "
            "of this item.")


def input_errors(item: AttestationItem | None, decision: str, *, justification: str, affirm: bool, to,
                 reaffirm_exception: bool, reason: str) -> dict[str, list[str]]:
    """What the submission lacks for ``decision`` (a message per field). Without ``item``, only the rules that
    hold for every item (a bulk submission's fields); with it, also the item's own (its exception, its stage,
    its campaign asking for a justification)."""
    errors: dict[str, list[str]] = {}
    if decision == Decision.CONFIRM:
        if not affirm:
            errors["affirm"] = ["Affirm that the key's purpose, scope and ownership are still right."]
        if item is not None and item.exception_id and not reaffirm_exception:
            errors["reaffirm_exception"] = ["The key is under an exception: re-affirm its justification to confirm it."]
        if item is not None and item.campaign.require_justification and not justification:
            errors["justification"] = ["This campaign asks for a justification."]
    elif decision == Decision.RELEASE:
        if reason not in ReasonCode.values:
            errors["reason"] = ["Choose why the key is released: " + ", ".join(
                f"{code} ({label.lower()})" for code, label in ReasonCode.choices) + "."]
        if not justification:
            errors["justification"] = ["Say why the key is no longer needed."]
    elif decision == Decision.REASSIGN:
        if item is not None and item.stage > 1:
            errors["decision"] = ["A key is reassigned at the first stage; at this stage confirm or release it."]
        if not justification:
            errors["justification"] = ["Say why the key belongs to someone else."]
    if decision in (Decision.REASSIGN, Decision.DELEGATE):
        try:
            named_user(to)
        except CampaignError as refused:
            errors.setdefault("to", []).extend(refused.messages)
    return errors


def _capacity(item: AttestationItem, actor) -> str:
    """In what capacity ``actor`` decides: reviewer, delegate, escalation (the person escalated to) or compliance."""
    if actor.pk == item.reviewer_id and not item.reviewer_role:
        return "reviewer"
    if actor.pk == item.delegate_id:
        return "delegate"
    if item.reviewer_role:
        return item.reviewer_role
    return "escalation"


def _decide(item: AttestationItem, *, actor, decision, justification, affirm, to, reaffirm_exception, reason,
            batch_size):
    campaign = item.campaign
    keys = _decision_keys(actor).select_related("owner__owner_profile__manager")
    if decision in (Decision.CONFIRM, Decision.RELEASE):
        # The key is locked here, after the item, as the lifecycle would lock it: read once.
        keys = keys.select_for_update(of=("self",))
    item.key = keys.get(pk=item.key_id)
    sod = separation_refusal(item, actor)
    if sod:
        raise NotAllowedToDecide(sod)
    errors = input_errors(item, decision, justification=justification, affirm=affirm, to=to,
                          reaffirm_exception=reaffirm_exception, reason=reason)
    if errors:
        raise CampaignError(errors)
    if decision == Decision.DELEGATE:
        _delegate(item, actor=actor, to=to)
        return
    now = timezone.now()
    item.evidence, item.self_review = review_quality.decision_evidence(
        item, actor, registered_key=item.key.registered_by_actor, now=now)
    item.batch_size = max(batch_size, 1)
    entry = {
        "stage": item.stage, "decision": decision, "by": actor.get_username(), "by_id": actor.pk,
        "as": _capacity(item, actor), "at": now.isoformat(),
        "reason": reason if decision == Decision.RELEASE else "", "justification": justification,
        "evidence": item.evidence, "self_review": item.self_review,
    }
    item.decisions = [*item.decisions, entry]
    moved_to = review_stages.next_stage(item, decision) if decision in MOVABLE_DECISIONS else None
    if moved_to is not None:
        stage = item.stage
        note = review_stages.enter(item, moved_to, owner=item.key.owner)
        attribute_change(item, actor, (f"{PAST[decision]} at stage {stage}, on to stage {moved_to.number}"
                                       + (f"; {note}" if note else f" ({moved_to.reviewer_label})"))[:100])
        item.save()
        return
    if decision == Decision.CONFIRM:
        history_reason = outcomes.attest(item, campaign, actor=actor, reason=f"confirmed in campaign {campaign.name}")
        _finish(item, ItemStatus.CONFIRMED, actor, justification, history_reason)
    elif decision == Decision.RELEASE:
        outcomes.release(item, campaign, actor=actor, justification=justification, reason_code=reason)
        item.reason = reason
        _finish(item, ItemStatus.RELEASED, actor, justification, f"released in campaign {campaign.name} ({reason})")
    else:
        _reassign(item, campaign, actor=actor, justification=justification, to=to)


def _finish(item: AttestationItem, status: str, actor, justification: str, reason: str) -> None:
    item.status = status
    item.decided_by = actor
    item.decided_at = timezone.now()
    item.justification = justification
    if item.stage > 1:
        reason = f"{reason} at stage {item.stage}"
    attribute_change(item, actor, reason)
    item.save()


def _reassign(item, campaign, *, actor, justification, to):
    to = named_user(to)
    if to.pk == item.key.owner_id:
        raise CampaignError("This person already owns the key.", field="to")
    if lifecycle.is_contact_of_another_customer(to, item.key.workflow.customer_id):
        raise CampaignError(lifecycle.CONTACT_CUSTODY, field="to")
    if OwnershipTransfer.objects.filter(key=item.key, status=TransferStatus.PENDING).exists():
        raise CampaignError("A transfer of this key is already waiting for acceptance.", field="to")
    item.reassigned_to = to
    transfer = OwnershipTransfer(key=item.key, item=item, from_user_id=item.key.owner_id, to_user=to,
                                 requested_by=actor, reason=justification)
    attribute_change(transfer, actor, f"reassigned in campaign {campaign.name}")
    transfer.save()
    _finish(item, ItemStatus.REASSIGNED, actor, justification, f"reassigned to {to.get_username()}")
    enqueue_on_commit("attestations.tasks.notify_transfer_requested", transfer.pk)


def may_delegate(item: AttestationItem, user) -> bool:
    """The reviewer passes the decision on; for a stage compliance reviews, any compliance officer."""
    return item.reviewer_id == user.pk or (item.reviewer_role == roles.COMPLIANCE and roles.is_compliance(user))


def _delegate(item, *, actor, to):
    to = named_user(to)
    if not may_delegate(item, actor):
        raise CampaignError("Only the assigned reviewer can delegate the decision.")
    if to.pk == actor.pk:
        raise CampaignError("You cannot delegate to yourself.", field="to")
    if lifecycle.is_contact_of_another_customer(to, item.key.workflow.customer_id):
        raise CampaignError("A customer contact may decide only on keys of their own customer.", field="to")
    item.delegate = to
    attribute_change(item, actor, f"decision delegated to {to.get_username()}")
    item.save()


NO_SUCH_ITEM = "No such item."
MAX_BULK_ITEMS = 1000


@dataclass
class BulkResult:
    item: int
    done: bool
    status: str = ""
    errors: list[str] = field(default_factory=list)


def bulk_decide(item_ids, *, actor, decision: str, justification: str = "", reason: str = "", affirm: bool = False,
                to=None, reaffirm_exception: bool = False) -> list[BulkResult]:
    """One decision on several items under one justification and reason code; each item goes through
    ``record_decision`` and is done or refused on its own, with the reason.

    What the submission lacks for every item (the affirmation, the reason code, a justification, the person
    named) refuses it whole, before anything is written. Each item is then checked as its decision would check
    it (who may decide, still pending, campaign active, stage, separation of duties, its exception), and the
    items that pass are decided with ``batch_size`` their number: the batch signal counts only items actually
    decided. An item the actor may not see is refused as one that does not exist, so the answer tells no one
    which ids exist."""
    justification = (justification or "").strip()
    item_ids = list(dict.fromkeys(item_ids))
    if not item_ids:
        raise CampaignError("Select the items to decide.", field="items")
    if len(item_ids) > MAX_BULK_ITEMS:
        raise CampaignError(f"Decide at most {MAX_BULK_ITEMS} items at once.", field="items")
    if decision not in Decision.values:
        raise CampaignError("Choose confirm, release, reassign or delegate.", field="decision")
    errors = input_errors(None, decision, justification=justification, affirm=affirm, to=to,
                          reaffirm_exception=reaffirm_exception, reason=reason)
    if errors:
        raise CampaignError(errors)
    results: dict[int, BulkResult] = {pk: BulkResult(pk, False, errors=[NO_SUCH_ITEM]) for pk in item_ids}
    visible = (AttestationItem.objects.visible_to(actor).filter(pk__in=item_ids).select_related("campaign")
               .annotate(actor_may_decide=Case(When(may_decide(actor), then=True), default=False)))
    keys = {key.pk: key for key in _decision_keys(actor).filter(pk__in=visible.values("key_id"))}
    candidates = []
    for item in visible.order_by("pk"):
        item.key = keys[item.key_id]
        refused = _refusal(item)
        problems = refused.messages if refused is not None else []
        if not problems:
            sod = separation_refusal(item, actor)
            problems = [sod] if sod else [message for messages in input_errors(
                item, decision, justification=justification, affirm=affirm, to=to,
                reaffirm_exception=reaffirm_exception, reason=reason).values() for message in messages]
        results[item.pk] = BulkResult(item.pk, False, item.status, problems)
        if not problems:
            candidates.append(item)
    for item in candidates:
        try:
            decided = record_decision(item, actor=actor, decision=decision, justification=justification,
                                      affirm=affirm, to=to, reaffirm_exception=reaffirm_exception, reason=reason,
                                      batch_size=len(candidates))
            results[item.pk] = BulkResult(item.pk, True, decided.status)
        except ServiceError as exc:
            results[item.pk] = BulkResult(item.pk, False, item.status, exc.messages)
    return [results[pk] for pk in item_ids]


def bulk_confirm(item_ids, *, actor, justification: str, affirm: bool) -> tuple[list[int], dict[int, list[str]]]:
    """Confirm several items under one justification (``bulk_decide``): the ids done, and the refused with why."""
    results = bulk_decide(item_ids, actor=actor, decision=Decision.CONFIRM, justification=justification, affirm=affirm)
    return [r.item for r in results if r.done], {r.item: r.errors for r in results if not r.done}


@sealed_atomic
def answer_transfer(transfer: OwnershipTransfer, *, actor, accept: bool) -> OwnershipTransfer:
    """The named new owner accepts (ownership moves, rotation required) or declines."""
    transfer = OwnershipTransfer.objects.select_for_update().get(pk=transfer.pk)
    if transfer.to_user_id != actor.pk:
        raise CampaignError("Only the person named can answer this transfer.")
    if transfer.status != TransferStatus.PENDING:
        raise CampaignError(f"This transfer is already {transfer.get_status_display().lower()}.")
    if accept and transfer.deadline and transfer.deadline < timezone.now():
        raise CampaignError("The time to accept this key has passed: its default action applies.")
    transfer.status = TransferStatus.ACCEPTED if accept else TransferStatus.DECLINED
    transfer.answered_at = timezone.now()
    attribute_change(transfer, actor, "accepted" if accept else "declined")
    transfer.save()
    if accept:
        try:
            lifecycle.change_owner(transfer.key, actor=actor, new_owner=actor, reason=(
                f"accepted ownership from {transfer.from_user.get_username()}: {transfer.reason}"))
        except lifecycle.LifecycleError as refused:  # e.g. a customer contact named for another customer's key
            raise CampaignError(" ".join(refused.messages)) from None
    return transfer


def mark_shown(user, item_ids) -> int:
    """Record when a reviewer first had pending items in front of them (decision time starts there).

    Telemetry like a key's last use: a plain UPDATE without history records.
    """
    if not user.is_authenticated:
        return 0
    return (
        AttestationItem.objects.decidable_by(user)
        .filter(pk__in=list(item_ids), status=ItemStatus.PENDING, shown_at__isnull=True)
        .update(shown_at=timezone.now())
    )
