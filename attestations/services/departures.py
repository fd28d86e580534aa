"""A person leaving, recorded at once (an identity provider deactivating them) rather than found by the nightly
sweep, and a person coming back.

``depart`` does, inside the caller's transaction, everything the sweep and the reviewer re-routing would do later:
the account is deactivated and the owner profile marked departed; their pending review items move to each
stage's fallback reviewer (``review_stages.reroute_departed``, with the departure's actor, before the profile is
saved, so the ``on_person_saved`` receiver finds nothing left to move); their live keys are flagged orphaned
(scopes frozen) through the sweep's own ``orphan_keys_of``. Once the transaction commits, their manager (or
compliance) is asked to name successors (the successor handshake) and every session they signed in with ends.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from attestations.services import review_stages
from core.chain import sealed_atomic
from core.history import attribute_change
from core.sessions import end_sessions
from keys.models import OwnerProfile
from keys.services import sweeps

log = logging.getLogger(__name__)
User = get_user_model()


@dataclass(frozen=True)
class Departure:
    changed: bool  # whether the person was still active (account or profile) until now
    items_moved: int
    keys_orphaned: int


def _locked_profile(user) -> OwnerProfile:
    profile = OwnerProfile.objects.select_for_update().filter(user=user).first()
    return profile if profile is not None else OwnerProfile(user=user)


def depart(user, *, actor, reason: str) -> Departure:
    """Record that ``user`` has left, now: deactivate the account, mark the owner profile departed (today),
    move their pending review items to the fallback reviewers, orphan their live keys and, after commit, ask
    their manager or compliance for successors and end their sessions. Repeating it changes nothing twice."""
    reason = (reason or "").strip() or "departed"
    with sealed_atomic():
        user = User.objects.select_for_update().get(pk=user.pk)
        profile = _locked_profile(user)
        changed = user.is_active or profile.pk is None or profile.is_active
        if user.is_active:
            # An UPDATE, not save(): the ``on_person_saved`` receiver would re-route the items as the system user.
            User.objects.filter(pk=user.pk).update(is_active=False)
            user.is_active = False
        # With the account already inactive, a stage whose fallback is this very person falls back to compliance.
        moved = review_stages.reroute_departed(user, actor=actor)
        if profile.pk is None or profile.is_active or profile.departed_on is None:
            profile.is_active = False
            profile.departed_on = profile.departed_on or timezone.localdate()
            attribute_change(profile, actor, reason)
            profile.save()
        user.owner_profile = profile
        flagged, _ = sweeps.orphan_keys_of(user, actor=actor)
        if flagged:
            transaction.on_commit(functools.partial(sweeps.ask_for_successors, user, flagged), robust=True)
        transaction.on_commit(functools.partial(end_sessions, user), robust=True)
    if changed:
        log.info("%s departed: %s item(s) moved, %s key(s) orphaned", user.get_username(), moved, len(flagged))
    return Departure(changed=changed, items_moved=moved, keys_orphaned=len(flagged))


def reinstate(user, *, actor, reason: str) -> bool:
    """Lift a departure: the account is active again and the owner profile no longer departed. Keys orphaned
    meanwhile stay with the successor handshake (nothing is given back). Returns whether anything changed."""
    reason = (reason or "").strip() or "returned"
    with sealed_atomic():
        user = User.objects.select_for_update().get(pk=user.pk)
        profile = OwnerProfile.objects.select_for_update().filter(user=user).first()
        changed = False
        if not user.is_active:
            user.is_active = True
            user.save(update_fields=["is_active"])
            changed = True
        if profile is not None and (not profile.is_active or profile.departed_on is not None):
            profile.is_active = True
            profile.departed_on = None
            attribute_change(profile, actor, reason)
            profile.save()
            changed = True
    return changed
