"""What an item's final outcome does to its key: a confirmation attests it, a release starts its grace window,
no response applies the campaign's default action. Used by decisions (a final decision), by the end of a stage
and by a campaign's close (items nobody decided, and items whose sign-off never came)."""

from __future__ import annotations

import datetime

from django.contrib.auth import get_user_model
from django.utils import timezone

from attestations.choices import Decision, DefaultAction, ItemStatus, MissingSignoff, ReasonCode
from attestations.models import AttestationItem, Campaign
from core.chain import bulk_update_with_history
from core.history import attribute_change
from keys.choices import KeyStatus, RevocationReason
from keys.models import ApiKey
from keys.services import lifecycle, releases

User = get_user_model()


def attest(item: AttestationItem, campaign: Campaign, *, actor, reason: str) -> str:
    """The key (locked by the caller) is vouched for: its next review moves by the campaign's cadence (the
    shorter exception cadence when it is under an exception). Returns the history reason."""
    item.affirmed = True
    cadence = campaign.review_cadence_days
    if item.exception_id:
        item.exception_reaffirmed = True
        reason += " (exception re-affirmed)"
        cadence = campaign.exception_review_cadence_days
    next_review = timezone.localdate() + datetime.timedelta(days=cadence)
    item.key = lifecycle.record_attestation(item.key, actor=actor, reason=reason, next_review_on=next_review,
                                            locked=True)
    return reason


def release(item: AttestationItem, campaign: Campaign, *, actor, justification: str, reason_code: str) -> None:
    """The key goes into its grace window (or is revoked at once: 0 grace days, or an exposed key)."""
    label = ReasonCode(reason_code).label.lower() if reason_code in ReasonCode.values else reason_code
    if not item.key.is_final:
        releases.release_key(item.key, actor=actor, reason=f"released in campaign {campaign.name} ({label}): "
                                                            f"{justification}",
                             grace_days=campaign.release_grace_days,
                             context=f"campaign {campaign.name}, item #{item.pk}")
        item.key.refresh_from_db()  # suspended or revoked by the release, on its own copy of the key


def apply_default_action(key: ApiKey, action: str, *, actor, reason: str) -> None:
    if key.is_final:
        return
    if action == DefaultAction.SUSPEND:
        if key.status == KeyStatus.ACTIVE:
            lifecycle.suspend_key(key, actor=actor, reason=reason)
        lifecycle.flag_unattested(key, actor=actor, reason=reason)
    elif action == DefaultAction.REVOKE:
        lifecycle.revoke_key(key, actor=actor, reason_code=RevocationReason.NO_RESPONSE, reason=reason)
    else:
        lifecycle.flag_unattested(key, actor=actor, reason=reason)


def _keep(item: AttestationItem, campaign: Campaign, *, actor, why: str) -> str:
    """An earlier stage's decision stands for want of this stage's sign-off."""
    earlier = item.decisions[-1]
    decider = User.objects.filter(pk=earlier.get("by_id")).first()
    item.key = ApiKey.objects.select_for_update(of=("self",)).get(pk=item.key_id)
    note = (f"{why} without sign-off: the stage {earlier['stage']} {earlier['decision']} by "
            f"{earlier.get('by') or 'unknown'} stands")
    if earlier["decision"] == Decision.CONFIRM:
        attest(item, campaign, actor=actor, reason=f"confirmed in campaign {campaign.name}: {note}"[:200])
        item.status = ItemStatus.CONFIRMED
    else:
        release(item, campaign, actor=actor, justification=earlier.get("justification", ""),
                reason_code=earlier.get("reason", ""))
        item.status = ItemStatus.RELEASED
        item.reason = earlier.get("reason", "")
    item.decided_by = decider
    item.decided_at = datetime.datetime.fromisoformat(earlier["at"]) if earlier.get("at") else timezone.now()
    item.justification = earlier.get("justification", "")
    item.kept_without_signoff = True
    attribute_change(item, actor, note[:100])
    item.save()
    return "kept"


def settle_undecided(campaign: Campaign, pending, *, actor, why: str) -> dict[str, int]:
    """Settle the ``pending`` items of ``campaign`` (a queryset) at the end of a stage or at the close: an item
    nobody decided gets the default action (expired); one waiting for a later stage's sign-off keeps the
    earlier decision or gets the default, as the campaign says. Counts per outcome (each default action, kept).
    """
    applied = {DefaultAction.SUSPEND.value: 0, DefaultAction.REVOKE.value: 0, DefaultAction.KEEP_AND_FLAG.value: 0}
    action = campaign.default_action
    reason = f"no response in campaign {campaign.name} ({why})"
    expired = []
    items = pending.select_for_update(of=("self",)).select_related("key").order_by("pk")
    for item in items:
        if item.decisions and campaign.missing_signoff == MissingSignoff.KEEP:
            _keep(item, campaign, actor=actor, why=why)
            applied["kept"] = applied.get("kept", 0) + 1
            continue
        apply_default_action(item.key, action, actor=actor, reason=reason)
        item.status = ItemStatus.EXPIRED
        item.default_action_applied = action
        expired.append(item)
        applied[action] += 1
    if expired:
        bulk_update_with_history(expired, AttestationItem, ["status", "default_action_applied"],
                                 default_user=actor, default_change_reason=reason[:100])
    return applied
