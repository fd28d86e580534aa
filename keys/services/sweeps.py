"""The daily sweeps that keep keys from outliving their reason to exist.

Each sweep acts as the system user through keys.services.lifecycle, records why in the key's history, and is
idempotent: it selects only keys still needing the step, and the lifecycle function re-checks under
a row lock, so a second run (or two at once) changes nothing twice. Each returns counts.
"""

from __future__ import annotations

import datetime
import logging
from collections import defaultdict

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db.models import Exists, F, OuterRef, Q, Subquery
from django.urls import reverse
from django.utils import timezone

from core import roles
from core.actors import system_user
from core.chain import sealed_atomic
from core.history import attribute_change
from keys.choices import ContractStatus, KeyStatus, LifecycleAction, RevocationReason, WorkflowStatus
from keys.models import ApiKey, Customer, LifecycleEvent
from keys.services import lifecycle
from keys.services.lifecycle import LifecycleError

log = logging.getLogger(__name__)
User = get_user_model()


def _keys(queryset) -> list[ApiKey]:
    # Materialised first: each step commits on its own while the sweep goes on.
    return list(queryset.select_related("workflow__customer", "owner").order_by("pk"))


def _apply(keys, step) -> tuple[int, int]:
    """Run ``step(key)`` on each key; a key that changed meanwhile is skipped, not fatal."""
    done = skipped = 0
    for key in keys:
        try:
            changed = step(key)
        except LifecycleError as exc:
            log.info("sweep skipped key %s: %s", key.pk, exc)
            skipped += 1
            continue
        if changed is not False:
            done += 1
    return done, skipped


def sweep_expired_keys() -> dict[str, int]:
    """Expire active and suspended keys whose expiry date has come."""
    actor = system_user()
    keys = _keys(ApiKey.objects.filter(status__in=[KeyStatus.ACTIVE, KeyStatus.SUSPENDED],
                                       expires_on__lte=timezone.localdate()))
    expired, skipped = _apply(keys, lambda key: lifecycle.expire_key(
        key, actor=actor, reason=f"Expiry date {key.expires_on.isoformat()} reached: expired by the daily sweep"))
    return {"expired": expired, "skipped": skipped}


@sealed_atomic
def end_contract(customer: Customer, *, actor, reason: str) -> bool:
    """Mark a customer's contract ended. Returns whether it changed now."""
    customer = Customer.objects.select_for_update().get(pk=customer.pk)
    if customer.contract_status == ContractStatus.ENDED:
        return False
    customer.contract_status = ContractStatus.ENDED
    attribute_change(customer, actor, reason)
    customer.save()
    return True


def sweep_ended_contracts() -> dict[str, int]:
    """Revoke every live key of a customer whose contract has ended.

    A contract whose end date has passed is marked ended first (recorded in the customer's history).
    """
    actor = system_user()
    today = timezone.localdate()
    lapsed = Customer.objects.exclude(contract_status=ContractStatus.ENDED).filter(contract_end__lt=today)
    customers_ended = sum(
        end_contract(customer, actor=actor, reason=f"Contract end date {customer.contract_end.isoformat()} passed")
        for customer in lapsed
    )
    keys = _keys(ApiKey.objects.live().filter(workflow__customer__contract_status=ContractStatus.ENDED))
    revoked, skipped = _apply(keys, lambda key: lifecycle.revoke_key(
        key, actor=actor, reason_code=RevocationReason.CONTRACT_ENDED,
        reason=f"The contract of {key.workflow.customer.name} has ended"
               + (f" ({key.workflow.customer.contract_end.isoformat()})" if key.workflow.customer.contract_end else ""),
    ))
    return {"customers_ended": customers_ended, "revoked": revoked, "skipped": skipped}


def sweep_decommissioned_workflows() -> dict[str, int]:
    """Revoke every live key of a decommissioned workflow."""
    actor = system_user()
    keys = _keys(ApiKey.objects.live().filter(workflow__status=WorkflowStatus.DECOMMISSIONED))
    revoked, skipped = _apply(keys, lambda key: lifecycle.revoke_key(
        key, actor=actor, reason_code=RevocationReason.WORKFLOW_DECOMMISSIONED,
        reason=f"Workflow {key.workflow.name} of {key.workflow.customer.name} was decommissioned",
    ))
    return {"revoked": revoked, "skipped": skipped}


def departed_q() -> Q:
    """Owners who have left: their owner profile is inactive, or their account is deactivated."""
    return Q(owner__owner_profile__is_active=False) | Q(owner__is_active=False)


def sweep_departed_owners() -> dict[str, int]:
    """Flag the live keys of departed owners as orphaned and ask for their reassignment.

    The owner's manager gets one email listing the newly orphaned keys; without an active manager
    with an email address, compliance gets it. Keys flagged on an earlier run are not mailed again.
    """
    actor = system_user()
    keys = _keys(ApiKey.objects.live().filter(departed_q(), orphaned=False).select_related("owner__owner_profile"))
    by_owner: dict[int, list[ApiKey]] = defaultdict(list)
    for key in keys:
        by_owner[key.owner_id].append(key)
    counts = {"orphaned": 0, "skipped": 0, "emails": 0}
    for owned in by_owner.values():
        flagged, skipped = orphan_keys_of(owned[0].owner, actor=actor, keys=owned)
        counts["orphaned"] += len(flagged)
        counts["skipped"] += skipped
        counts["emails"] += ask_for_successors(owned[0].owner, flagged)
    return counts


def orphan_keys_of(owner, *, actor, keys: list[ApiKey] | None = None) -> tuple[list[ApiKey], int]:
    """Flag the live keys of a departed ``owner`` (``keys``: those of them already selected) as orphaned: their
    scopes freeze until a successor accepts them. Returns the keys flagged now and how many were skipped.

    The nightly sweep and a departure recorded at once (``attestations.services.departures.depart``) both
    come here, then tell the manager with ``ask_for_successors``."""
    if keys is None:
        keys = _keys(ApiKey.objects.live().filter(owner=owner, orphaned=False))
    flagged: list[ApiKey] = []

    def flag(key: ApiKey) -> bool:
        changed = lifecycle.flag_orphaned(
            key, actor=actor, reason=f"Owner {owner.get_username()} has left: awaiting reassignment")
        if changed:
            flagged.append(key)
        return changed

    _, skipped = _apply(keys, flag)
    return flagged, skipped


def _reassignment_recipients(owner) -> list[str]:
    profile = getattr(owner, "owner_profile", None)
    manager = profile.manager if profile else None
    if manager is not None and manager.is_active and manager.email:
        return [manager.email]
    return sorted(
        User.objects.filter(groups__name=roles.COMPLIANCE, is_active=True).exclude(email="")
        .values_list("email", flat=True).distinct()
    )


def ask_for_successors(owner, keys: list[ApiKey]) -> int:
    """Email the departed ``owner``'s manager (or compliance) the newly orphaned ``keys``, asking them to name a
    successor for each: the start of the successor handshake. Returns the number of emails sent (0 or 1)."""
    if not keys:
        return 0
    recipients = _reassignment_recipients(owner)
    if not recipients:
        log.warning("orphaned keys of %s: no manager or compliance address to tell", owner.get_username())
        return 0
    lines = "\n".join(
        f"- {key.label} ({key.prefix}…), {key.workflow.customer.name} / {key.workflow.name}: "
        f"{settings.SITE_URL}{key.get_absolute_url()}"
        for key in keys
    )
    send_mail(
        f"[Keys portal] {len(keys)} API key(s) of {owner.get_username()} need a new owner",
        f"{owner.get_username()} has left, and these API keys they owned are now orphaned:\n\n{lines}\n\n"
        f"Please name a successor for each key at {settings.SITE_URL}{reverse('attestations:successions')} "
        f"(ownership moves once they accept; the key must then be rotated), or revoke it if it is no "
        f"longer needed.\n",
        settings.DEFAULT_FROM_EMAIL,
        recipients,
    )
    return 1


def sweep_stale_keys(days: int | None = None) -> dict[str, int]:
    """Flag live keys unused for more than ``days`` (never used: issued that long ago) as stale;
    lift the flag from keys used again since."""
    days = settings.KEY_STALE_AFTER_DAYS if days is None else days
    actor = system_user()
    cutoff = timezone.now() - datetime.timedelta(days=days)
    unused = Q(last_used_at__lt=cutoff) | Q(last_used_at__isnull=True, issued_on__lt=cutoff.date())
    to_flag = _keys(ApiKey.objects.live().filter(unused, stale=False))
    flagged, skipped = _apply(to_flag, lambda key: lifecycle.flag_stale(
        key, actor=actor,
        reason=f"Unused for more than {days} days (last used "
               f"{key.last_used_at.date().isoformat() if key.last_used_at else 'never'})",
    ))
    to_clear = _keys(ApiKey.objects.live().filter(stale=True, last_used_at__gte=cutoff))
    cleared, skipped_clear = _apply(to_clear, lambda key: lifecycle.clear_stale(
        key, actor=actor, reason=f"Used again on {key.last_used_at.date().isoformat()}"))
    return {"flagged": flagged, "cleared": cleared, "skipped": skipped + skipped_clear}


def rotation_due_keys():
    """Live keys whose owner changed after their last rotation, annotated with ``owner_changed_at``."""
    last_change = LifecycleEvent.objects.filter(key=OuterRef("pk"), action=LifecycleAction.CHANGE_OWNER) \
        .order_by("-at").values("at")[:1]
    return ApiKey.objects.live().annotate(owner_changed_at=Subquery(last_change)).filter(
        Q(last_rotated_at__isnull=True) | Q(last_rotated_at__lt=F("owner_changed_at")), owner_changed_at__isnull=False
    )


def sweep_rotation_due() -> dict[str, int]:
    """Report keys not rotated since their owner changed, and flag each once per ownership change.

    The key keeps (or regains) ``rotation_required``; the flag is a lifecycle event, recorded only if
    none was recorded since the ownership change.
    """
    actor = system_user()
    due = rotation_due_keys()
    flagged_since_change = Exists(LifecycleEvent.objects.filter(
        key=OuterRef("pk"), action=LifecycleAction.FLAG_ROTATION, at__gte=OuterRef("owner_changed_at")))
    unflagged = _keys(due.filter(~flagged_since_change))
    flagged, skipped = _apply(unflagged, lambda key: lifecycle.flag_rotation_due(
        key, actor=actor, owner_changed_at=key.owner_changed_at,
        reason=f"Owner changed on {key.owner_changed_at.date().isoformat()} and the key has not been rotated since",
    ))
    return {"due": due.count(), "flagged": flagged, "skipped": skipped}
