"""A reviewer's decisions on campaign items: confirm, release, reassign, delegate, bulk confirm, and the
answer of a key's new owner to a reassignment. Each decision is recorded once under the item's row lock."""

from __future__ import annotations

import datetime

from django.db.models import Case, When
from django.utils import timezone

from attestations.choices import (
    CampaignStatus,
    Decision,
    ItemStatus,
    TransferStatus,
)
from attestations.models import (
    AttestationItem,
    OwnershipTransfer,
    may_decide,
)
from attestations.services import review_quality
from attestations.services.campaigns import CampaignError, named_user
from core.chain import sealed_atomic
from core.errors import ServiceError
from core.history import attribute_change
from core.jobs import enqueue_on_commit
from keys.models import ApiKey
from keys.services import lifecycle, releases


class NotAllowedToDecide(CampaignError):
    """The actor is neither the item's reviewer nor its delegate (``may_decide``)."""


class AlreadyDecided(CampaignError):
    """The item is no longer pending."""


def can_decide(user, item: AttestationItem) -> bool:
    """The assigned reviewer and their delegate (``AttestationItem.objects.decidable_by``)."""
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
                    to=None, reaffirm_exception: bool = False, batch_size: int = 1) -> AttestationItem:
    """Apply one reviewer decision, once.

    The decision freezes into the item what the reviewer saw (usage, exceptions, recommendation), the
    size of the submission it came in (``batch_size``) and whether the decider was independent of the key.

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
                    reaffirm_exception=reaffirm_exception, batch_size=batch_size)
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


def _decide(item: AttestationItem, *, actor, decision, justification, affirm, to, reaffirm_exception, batch_size):
    campaign = item.campaign
    if decision in (Decision.CONFIRM, Decision.RELEASE):
        # The key is locked here, after the item, as the lifecycle would lock it: read once.
        item.key = _decision_keys(actor).select_for_update(of=("self",)).get(pk=item.key_id)
    elif decision == Decision.REASSIGN:
        item.key = _decision_keys(actor).get(pk=item.key_id)
    if decision != Decision.DELEGATE:
        item.evidence, item.self_review = review_quality.decision_evidence(
            item, actor, registered_key=item.key.registered_by_actor)
        item.batch_size = max(batch_size, 1)
    handler = {
        Decision.CONFIRM: _confirm,
        Decision.RELEASE: _release,
        Decision.REASSIGN: _reassign,
        Decision.DELEGATE: _delegate,
    }[decision]
    handler(item, campaign, actor=actor, justification=justification, affirm=affirm, to=to,
            reaffirm_exception=reaffirm_exception)


def _finish(item: AttestationItem, status: str, actor, justification: str, reason: str) -> None:
    item.status = status
    item.decided_by = actor
    item.decided_at = timezone.now()
    item.justification = justification
    attribute_change(item, actor, reason)
    item.save()


def _confirm(item, campaign, *, actor, justification, affirm, to, reaffirm_exception=False):
    errors = {}
    if not affirm:
        errors["affirm"] = ["Affirm that the key's purpose, scope and ownership are still right."]
    if item.exception_id and not reaffirm_exception:
        errors["reaffirm_exception"] = ["The key is under an exception: re-affirm its justification to confirm it."]
    if campaign.require_justification and not justification:
        errors["justification"] = ["This campaign asks for a justification."]
    if errors:
        raise CampaignError(errors)
    item.affirmed = True
    reason = f"confirmed in campaign {campaign.name}"
    cadence = campaign.review_cadence_days
    if item.exception_id:
        item.exception_reaffirmed = True
        reason += " (exception re-affirmed)"
        cadence = campaign.exception_review_cadence_days
    next_review = timezone.localdate() + datetime.timedelta(days=cadence)
    item.key = lifecycle.record_attestation(item.key, actor=actor, reason=reason, next_review_on=next_review, locked=True)
    _finish(item, ItemStatus.CONFIRMED, actor, justification, reason)


def _release(item, campaign, *, actor, justification, affirm, to, reaffirm_exception=False):
    if not justification:
        raise CampaignError("Say why the key is no longer needed.", field="justification")
    reason = f"released in campaign {campaign.name}: {justification}"
    if not item.key.is_final:
        # A grace window first (brownout), unless the campaign says 0 days or the key was exposed.
        releases.release_key(item.key, actor=actor, reason=reason, grace_days=campaign.release_grace_days,
                             context=f"campaign {campaign.name}, item #{item.pk}")
        item.key.refresh_from_db()  # suspended or revoked by the release, on its own copy of the key
    _finish(item, ItemStatus.RELEASED, actor, justification, f"released in campaign {campaign.name}")


def _reassign(item, campaign, *, actor, justification, affirm, to, reaffirm_exception=False):
    to = named_user(to)
    if to.pk == item.key.owner_id:
        raise CampaignError("This person already owns the key.", field="to")
    if lifecycle.is_contact_of_another_customer(to, item.key.workflow.customer_id):
        raise CampaignError(lifecycle.CONTACT_CUSTODY, field="to")
    if not justification:
        raise CampaignError("Say why the key belongs to someone else.", field="justification")
    if OwnershipTransfer.objects.filter(key=item.key, status=TransferStatus.PENDING).exists():
        raise CampaignError("A transfer of this key is already waiting for acceptance.", field="to")
    item.reassigned_to = to
    transfer = OwnershipTransfer(key=item.key, item=item, from_user_id=item.key.owner_id, to_user=to,
                                 requested_by=actor, reason=justification)
    attribute_change(transfer, actor, f"reassigned in campaign {campaign.name}")
    transfer.save()
    _finish(item, ItemStatus.REASSIGNED, actor, justification, f"reassigned to {to.get_username()}")
    enqueue_on_commit("attestations.tasks.notify_transfer_requested", transfer.pk)


def _delegate(item, campaign, *, actor, justification, affirm, to, reaffirm_exception=False):
    to = named_user(to)
    if actor.pk != item.reviewer_id:
        raise CampaignError("Only the assigned reviewer can delegate the decision.")
    if to.pk == actor.pk:
        raise CampaignError("You cannot delegate to yourself.", field="to")
    if lifecycle.is_contact_of_another_customer(to, item.key.workflow.customer_id):
        raise CampaignError("A customer contact may decide only on keys of their own customer.", field="to")
    item.delegate = to
    attribute_change(item, actor, f"decision delegated to {to.get_username()}")
    item.save()


NO_SUCH_ITEM = "No such item."


def bulk_confirm(item_ids, *, actor, justification: str, affirm: bool) -> tuple[list[int], dict[int, list[str]]]:
    """Confirm several items under one justification; each applies or is refused on its own.

    An item the actor may not see is refused as one that does not exist, so the answer tells no one which
    ids exist (the API answers both with a 404)."""
    done, refused = [], {}
    item_ids = list(item_ids)
    visible = AttestationItem.objects.visible_to(actor).filter(pk__in=item_ids)
    refused.update({pk: [NO_SUCH_ITEM] for pk in set(item_ids) - set(visible.values_list("pk", flat=True))})
    for item in visible.order_by("pk"):
        try:
            record_decision(item, actor=actor, decision=Decision.CONFIRM, justification=justification, affirm=affirm,
                            batch_size=len(item_ids))
            done.append(item.pk)
        except ServiceError as exc:
            refused[item.pk] = exc.messages
    return done, refused


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
