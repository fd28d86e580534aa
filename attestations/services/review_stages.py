"""Who reviews an item at each stage, how an item moves on, and what happens when a stage ends.

The stages themselves are written down on the campaign (``attestations.stages``). Here:

- ``assign``: the reviewer of an item entering a stage: the key's owner, the owner's manager, compliance (any
  compliance officer may decide) or a named user; the stage's fallback (compliance unless named) when that
  person has departed or the owner has no active manager.
- ``next_stage``: the stage a decision moves an item on to, if any (the next stage admits the key's risk
  tier and the decision).
- ``end_due_stages``: when a stage's window ends, its items that nobody decided get the campaign's default
  action, and those waiting for this stage's sign-off keep the earlier decision or get the default (the
  campaign's ``missing_signoff``). The last stage ends with the campaign's close, which applies the same rule.
- ``reroute_departed``: a reviewer who departs mid-campaign has their pending items moved to the fallback at
  once, recorded in each item's history.
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db.models import Q
from django.utils import timezone

from attestations.choices import CampaignStatus, ItemStatus, StageReviewer
from attestations.models import AttestationItem, Campaign
from attestations.services import outcomes
from attestations.stages import COMPLIANCE, Stage, stage_window, stages_of
from core import roles
from core.chain import sealed_atomic
from core.history import attribute_change

log = logging.getLogger(__name__)
User = get_user_model()


@dataclass(frozen=True)
class Assignment:
    reviewer_id: int
    role: str = ""
    note: str = ""


def compliance_officer(default=None):
    """The compliance officer named as reviewer of items any officer may decide (the first active one)."""
    officer = (User.objects.filter(groups__name=roles.COMPLIANCE, is_active=True).order_by("pk").first())
    return officer or default


def departed(user) -> bool:
    if user is None or not user.is_active:
        return True
    profile = getattr(user, "owner_profile", None)
    return profile is not None and not profile.is_active


def active_manager(user):
    profile = getattr(user, "owner_profile", None)
    manager = profile.manager if profile is not None and profile.manager_id else None
    return None if departed(manager) else manager


def _named(username: str):
    return User.objects.select_related("owner_profile").filter(username=username).first()


def _fallback(stage: Stage, why: str, *, default_officer) -> Assignment:
    if stage.fallback != COMPLIANCE:
        person = _named(stage.fallback)
        if not departed(person):
            return Assignment(person.pk, "", f"{why}: moved to the fallback reviewer {person.get_username()}")
    officer = compliance_officer(default_officer)
    return Assignment(officer.pk, roles.COMPLIANCE, f"{why}: moved to compliance")


def assign(stage: Stage, owner, *, default_officer) -> Assignment:
    """The reviewer of an item of a key owned by ``owner`` entering ``stage``. ``default_officer`` names a
    reviewer of compliance items when no compliance officer exists (the campaign's creator)."""
    if stage.reviewer == StageReviewer.OWNER:
        if departed(owner):
            return _fallback(stage, f"owner {owner.get_username()} has departed", default_officer=default_officer)
        return Assignment(owner.pk)
    if stage.reviewer == StageReviewer.MANAGER:
        manager = active_manager(owner)
        if manager is None:
            return _fallback(stage, f"{owner.get_username()} has no active manager", default_officer=default_officer)
        return Assignment(manager.pk)
    if stage.reviewer == StageReviewer.COMPLIANCE:
        return Assignment(compliance_officer(default_officer).pk, roles.COMPLIANCE)
    person = _named(stage.reviewer)
    if departed(person):
        return _fallback(stage, f"{stage.reviewer} has departed", default_officer=default_officer)
    return Assignment(person.pk)


def current_stage(item: AttestationItem) -> Stage:
    stages = stages_of(item.campaign)
    return stages[min(item.stage, len(stages)) - 1]


def next_stage(item: AttestationItem, decision: str) -> Stage | None:
    """The stage ``decision`` at the item's current stage moves it on to, or None (the decision is final)."""
    stages = stages_of(item.campaign)
    if item.stage >= len(stages):
        return None
    candidate = stages[item.stage]
    return candidate if candidate.admits(item.key.risk_tier, decision) else None


def enter(item: AttestationItem, stage: Stage, *, owner) -> str:
    """Put ``item`` at ``stage`` with its reviewer (nothing saved); returns what to say in its history."""
    assignment = assign(stage, owner, default_officer=item.campaign.created_by)
    item.stage = stage.number
    item.reviewer_id = assignment.reviewer_id
    item.reviewer_role = assignment.role
    item.delegate = None
    item.escalated_at = None
    item.escalated_to = None
    item.escalated_to_role = ""
    item.shown_at = None
    return assignment.note


def launch_assignments(campaign: Campaign) -> int:
    """Right after launch wrote every item with its key's owner as reviewer: the items whose first stage is
    reviewed by someone else, or whose owner has departed, get their reviewer (one UPDATE per reviewer).
    Runs before the launch's history records are written, so they show the reviewer assigned."""
    stage = stages_of(campaign)[0]
    items = AttestationItem.objects.filter(campaign=campaign)
    owners = User.objects.filter(pk__in=items.values("key__owner_id")).select_related("owner_profile__manager")
    if stage.reviewer == StageReviewer.OWNER:
        # Only departed owners' items move: the database picks them rather than every owner being loaded.
        owners = [owner for owner in owners.filter(Q(is_active=False) | Q(owner_profile__is_active=False))
                  if departed(owner)]
    moved = 0
    by_target: dict[tuple[int, str], list[int]] = {}
    for owner in owners:
        assignment = assign(stage, owner, default_officer=campaign.created_by)
        by_target.setdefault((assignment.reviewer_id, assignment.role), []).append(owner.pk)
    for (reviewer_id, role), owner_ids in by_target.items():
        moved += items.filter(key__owner_id__in=owner_ids).update(reviewer_id=reviewer_id, reviewer_role=role)
    return moved


def reroute_departed(user, *, actor) -> int:
    """Move the pending items ``user`` reviews (or was delegated) in active campaigns to their stage's fallback."""
    moved = 0
    with sealed_atomic():
        items = (AttestationItem.objects.select_for_update(of=("self",))
                 .filter(status=ItemStatus.PENDING, campaign__status=CampaignStatus.ACTIVE)
                 .filter(Q(reviewer=user) | Q(delegate=user)))
        for item in items.select_related("campaign__created_by").order_by("pk"):
            if item.delegate_id == user.pk:
                item.delegate = None
                attribute_change(item, actor, f"delegate {user.get_username()} departed: back to the reviewer")
                item.save()
                moved += 1
                continue
            stage = current_stage(item)
            assignment = _fallback(stage, f"reviewer {user.get_username()} departed",
                                   default_officer=item.campaign.created_by)
            item.reviewer_id = assignment.reviewer_id
            item.reviewer_role = assignment.role
            attribute_change(item, actor, assignment.note[:100])
            item.save()
            moved += 1
    if moved:
        log.info("%s item(s) of departed reviewer %s moved to their fallback", moved, user.get_username())
    return moved


def end_due_stages(campaign: Campaign, *, actor, today: datetime.date | None = None) -> dict[str, int]:
    """Settle the items of every stage whose window has ended (all but the last: the close settles that one)."""
    today = today or timezone.localdate()
    stages = stages_of(campaign)
    settled: dict[str, int] = {}
    with sealed_atomic():
        campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
        if campaign.status != CampaignStatus.ACTIVE:
            return settled
        ended = campaign.stages_ended
        for stage in stages[ended:-1]:
            window = stage_window(campaign, stage.number)
            if window is None or window[1] >= today:
                break
            pending = campaign.items.filter(status=ItemStatus.PENDING, stage=stage.number)
            for outcome, count in outcomes.settle_undecided(campaign, pending, actor=actor,
                                                   why=f"stage {stage.number} ended").items():
                settled[outcome] = settled.get(outcome, 0) + count
            campaign.stages_ended = stage.number
        if campaign.stages_ended != ended:
            attribute_change(campaign, actor, f"stage {campaign.stages_ended} ended")
            campaign.save()
    return settled


def on_person_saved(sender, instance, created=False, **kwargs) -> None:
    """A user account deactivated, or an owner profile marked departed: their pending review items move to the
    fallback reviewer at once, in the saving transaction."""
    from core.actors import system_user

    if created or instance.is_active:
        return
    user = instance if isinstance(instance, User) else instance.user
    if AttestationItem.objects.filter(status=ItemStatus.PENDING, campaign__status=CampaignStatus.ACTIVE).filter(
            Q(reviewer=user) | Q(delegate=user)).exists():
        reroute_departed(user, actor=system_user())
