"""Successor handshake: a departed owner's keys go to a successor only once the successor accepts.

When an owner leaves, ``keys.services.sweeps.sweep_departed_owners`` flags their live keys as orphaned (their
scopes are frozen, see ``lifecycle.scope_change_refusal``) and emails their manager. The manager (or,
for an owner without an active manager, compliance; admins always) names a successor per key here:
an ``OwnershipTransfer`` of kind *succession* with a deadline. The successor accepts it in their inbox
(``campaigns.answer_transfer``), which moves ownership and lifts the orphan flag. A succession still
unaccepted at its deadline lapses, and its default action (the one of the campaign the key is under
review in, else ``SUCCESSION_DEFAULT_ACTION``) is applied once.
"""

from __future__ import annotations

import datetime
import logging

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Q
from django.utils import timezone

from attestations.choices import CampaignStatus, DefaultAction, ItemStatus, TransferKind, TransferStatus
from attestations.models import AttestationItem, OwnershipTransfer
from attestations.services.campaigns import CampaignError, named_user
from core import roles
from core.actors import system_user
from core.chain import sealed_atomic
from core.history import attribute_change
from core.jobs import enqueue_on_commit
from keys.choices import KeyStatus, RevocationReason
from keys.models import ApiKey
from keys.services import lifecycle
from keys.services.sweeps import departed_q

log = logging.getLogger(__name__)
User = get_user_model()


def _active_manager(owner):
    profile = getattr(owner, "owner_profile", None)
    manager = profile.manager if profile and profile.manager_id else None
    return manager if manager is not None and manager.is_active else None


def keys_awaiting_successor(user):
    """The orphaned live keys ``user`` may name a successor for, newest departures first."""
    keys = ApiKey.objects.live().filter(orphaned=True).select_related(
        "owner__owner_profile__manager", "workflow__customer")
    if roles.is_admin(user):
        return keys
    no_manager = (Q(owner__owner_profile__manager__isnull=True) | Q(owner__owner_profile__manager__is_active=False)
                  | Q(owner__owner_profile__isnull=True))
    if roles.sees_everything(user):  # compliance: the keys of owners without an active manager, and their reports'
        return keys.filter(no_manager | Q(owner__owner_profile__manager=user))
    return keys.filter(owner__owner_profile__manager=user)


def may_name_successor(user, key: ApiKey) -> bool:
    if not user.is_authenticated:
        return False
    if roles.is_admin(user):
        return True
    manager = _active_manager(key.owner)
    if manager is not None:
        return manager.pk == user.pk
    return roles.sees_everything(user)


def default_action_for(key: ApiKey) -> tuple[str, AttestationItem | None]:
    """The campaign's default action if the key is under review in an active campaign, else the setting."""
    item = (AttestationItem.objects.filter(key=key, status=ItemStatus.PENDING, campaign__status=CampaignStatus.ACTIVE)
            .select_related("campaign").first())
    if item is not None:
        return item.campaign.default_action, item
    configured = settings.SUCCESSION_DEFAULT_ACTION
    return (configured if configured in DefaultAction.values else DefaultAction.SUSPEND), None


def name_successor(key: ApiKey, *, actor, successor, reason: str = "") -> OwnershipTransfer:
    """Put a departed owner's key to a successor, who must accept it by the deadline."""
    successor = named_user(successor, "successor")
    with sealed_atomic():
        key = (ApiKey.objects.select_for_update(of=("self",)).select_related("owner__owner_profile", "workflow")
               .get(pk=key.pk))
        if not may_name_successor(actor, key):
            raise CampaignError("Only the departed owner's manager (or compliance, when there is none) or an admin "
                                "can name a successor.")
        if key.is_final:
            raise CampaignError(f"The key is {key.get_status_display().lower()}: it needs no successor.")
        if not (key.orphaned or ApiKey.objects.filter(pk=key.pk).filter(departed_q()).exists()):
            raise CampaignError("The key's owner has not left: reassign it in a campaign instead.")
        if successor.pk == key.owner_id:
            raise CampaignError("The successor cannot be the departed owner.", field="successor")
        if lifecycle.is_contact_of_another_customer(successor, key.workflow.customer_id):
            raise CampaignError(lifecycle.CONTACT_CUSTODY, field="successor")
        profile = getattr(successor, "owner_profile", None)
        if profile is not None and not profile.is_active:
            raise CampaignError("That person has left too.", field="successor")
        pending = OwnershipTransfer.objects.filter(key=key, status=TransferStatus.PENDING).select_related("to_user").first()
        if pending is not None:
            raise CampaignError(f"{pending.to_user.get_username()} was already asked to own this key.",
                                field="successor")
        action, item = default_action_for(key)
        reason = (reason or "").strip() or f"successor of {key.owner.get_username()}, who has left"
        transfer = OwnershipTransfer(
            key=key, kind=TransferKind.SUCCESSION, item=item, from_user=key.owner, to_user=successor,
            requested_by=actor, reason=reason, default_action=action,
            deadline=timezone.now() + datetime.timedelta(days=settings.SUCCESSION_ACCEPT_DAYS),
        )
        attribute_change(transfer, actor, f"successor named: {successor.get_username()}")
        transfer.save()
    enqueue_on_commit("attestations.tasks.notify_transfer_requested", transfer.pk)
    return transfer


def lapse_due_successions(now: datetime.datetime | None = None) -> dict[str, int]:
    """Lapse successions unaccepted at their deadline and apply their default action, once each."""
    now = now or timezone.now()
    actor = system_user()
    counts = {"lapsed": 0, "skipped": 0}
    due = OwnershipTransfer.objects.filter(kind=TransferKind.SUCCESSION, status=TransferStatus.PENDING,
                                           deadline__lte=now).order_by("pk").values_list("pk", flat=True)
    for pk in list(due):
        try:
            if _lapse(pk, actor=actor, now=now):
                counts["lapsed"] += 1
        except lifecycle.LifecycleError as exc:
            log.info("succession %s not lapsed: %s", pk, exc)
            counts["skipped"] += 1
    return counts


def _lapse(pk: int, *, actor, now) -> bool:
    with sealed_atomic():
        transfer = OwnershipTransfer.objects.select_for_update().select_related("key", "to_user").get(pk=pk)
        if transfer.status != TransferStatus.PENDING or transfer.deadline is None or transfer.deadline > now:
            return False
        action = transfer.default_action or DefaultAction.SUSPEND
        reason = (f"{transfer.to_user.get_username()} did not accept the key of departed owner "
                  f"{transfer.from_user.get_username()} by {transfer.deadline:%Y-%m-%d}")
        key = transfer.key
        if not key.is_final:
            if action == DefaultAction.REVOKE:
                lifecycle.revoke_key(key, actor=actor, reason_code=RevocationReason.OWNER_DEPARTED, reason=reason)
            else:
                if action == DefaultAction.SUSPEND and key.status == KeyStatus.ACTIVE:
                    lifecycle.suspend_key(key, actor=actor, reason=reason)
                lifecycle.flag_unattested(key, actor=actor, reason=reason)
        transfer.status = TransferStatus.LAPSED
        transfer.answered_at = now
        transfer.default_action_applied = action
        attribute_change(transfer, actor, f"lapsed: {DefaultAction(action).label.lower()}")
        transfer.save()
    return True
