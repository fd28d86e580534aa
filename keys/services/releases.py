"""Safe release (brownout): a released key is first suspended for a grace window while usage is watched.

- ``release_key`` suspends the key and opens a ``KeyRelease`` ending after the grace window; a window
  of 0 days, or a key with a reported exposure, is revoked at once (exposures never wait).
- ``note_traffic`` is called by usage ingestion: calls inside the window are counted on the release,
  and the first of them tells the owner and compliance, once per window (``notified_at``).
- ``roll_back`` (owner, steward, compliance or admin) returns the key to the status it had before, with
  the actor and reason recorded; ``revoke_now`` ends a window early.
- ``finalise_due_releases`` (a beat sweep) ends windows that have run out: a quiet one revokes the key
  through ``lifecycle.revoke_key`` (so the issuer gets its RevocationRequest), exactly once; one with
  traffic is held for a person to decide. Each release is re-checked under its row lock, so reruns
  and concurrent sweeps change nothing twice.
"""

from __future__ import annotations

import datetime
import logging

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from core import roles
from core.actors import system_user
from core.chain import sealed_atomic
from core.history import attribute_change
from keys.choices import OPEN_RELEASE_STATUSES, KeyStatus, ReleaseStatus, RevocationReason
from keys.models import ApiKey, KeyRelease
from keys.services import lifecycle
from keys.services.lifecycle import LifecycleError

log = logging.getLogger(__name__)
User = get_user_model()

MAX_GRACE_DAYS = 90
MAX_TRAFFIC_SOURCES = 20


def default_grace_days() -> int:
    return settings.RELEASE_GRACE_DAYS


def open_release(key: ApiKey) -> KeyRelease | None:
    return key.releases.filter(status__in=OPEN_RELEASE_STATUSES).first()


def may_decide(user, release: KeyRelease) -> bool:
    """The key's owner or steward, compliance and admins may roll back or end a release."""
    if not user.is_authenticated:
        return False
    return roles.sees_everything(user) or user.pk in (release.key.owner_id, release.key.steward_id)


def _save(release: KeyRelease, actor, reason: str) -> None:
    attribute_change(release, actor, reason)
    release.save()


def release_key(
    key: ApiKey, *, actor, reason: str, grace_days: int | None = None, context: str = "",
    reason_code: str = RevocationReason.RELEASED,
) -> KeyRelease | None:
    """Release a key: suspend it for ``grace_days`` (default ``RELEASE_GRACE_DAYS``) while its usage is
    watched, or revoke it at once when the window is 0 days or the key's secret was reported exposed.

    Returns the open release, or None when the key was revoked at once.
    """
    reason = (reason or "").strip()
    if not reason:
        raise LifecycleError("Say why the key is released.", field="reason")
    days = default_grace_days() if grace_days is None else grace_days
    if not isinstance(days, int) or not 0 <= days <= MAX_GRACE_DAYS:
        raise LifecycleError(f"A grace window is 0 to {MAX_GRACE_DAYS} days.", field="grace_days")
    if reason_code not in RevocationReason.values:
        raise LifecycleError("Unknown revocation reason.", field="reason_code")
    with sealed_atomic():
        key = ApiKey.objects.select_for_update().get(pk=key.pk)
        exposed = reason_code == RevocationReason.EXPOSED or key.exposures.exists()
        if days == 0 or exposed:
            lifecycle.revoke_key(key, actor=actor, reason_code=RevocationReason.EXPOSED if exposed else reason_code,
                                 reason=reason, emergency=exposed)
            return None
        if key.releases.filter(status__in=OPEN_RELEASE_STATUSES).exists():
            raise LifecycleError("The key is already released and in its grace window.")
        now = timezone.now()
        ends_at = now + datetime.timedelta(days=days)
        key, before = lifecycle.suspend_for_release(
            key, actor=actor, reason=f"{reason} (suspended for a {days}-day grace window)",
            details={"grace_days": days, "ends_at": ends_at.isoformat(), "context": context},
        )
        release = KeyRelease(key=key, reason_code=reason_code, reason=reason, context=context[:200],
                             status_before=before, requested_by=actor, started_at=now, ends_at=ends_at)
        _save(release, actor, f"released: {days}-day grace window")
    return release


def note_traffic(calls: list[tuple[int, datetime.datetime, str]]) -> int:
    """Count reported calls (key id, time, source) that fall inside an open release's window.

    The first traffic of a window tells the owner and compliance, once; later calls only add to the
    counts. Returns how many releases saw traffic. Runs inside the usage batch's transaction.
    """
    if not calls:
        return 0
    key_ids = {key_id for key_id, _, _ in calls}
    releases = list(
        KeyRelease.objects.select_for_update(of=("self",)).filter(status__in=OPEN_RELEASE_STATUSES, key_id__in=key_ids)
        .select_related("key__owner").order_by("pk")
    )
    seen = 0
    for release in releases:
        inside = [(at, source) for key_id, at, source in calls
                  if key_id == release.key_id and release.started_at <= at <= release.ends_at]
        if not inside:
            continue
        seen += 1
        times = [at for at, _ in inside]
        sources = list(dict.fromkeys([*release.traffic_sources, *(s for _, s in inside if s)]))[:MAX_TRAFFIC_SOURCES]
        first = min(times) if release.first_traffic_at is None else min(release.first_traffic_at, *times)
        last = max(times) if release.last_traffic_at is None else max(release.last_traffic_at, *times)
        if release.notified_at is None:
            release.traffic_calls += len(inside)
            release.first_traffic_at, release.last_traffic_at, release.traffic_sources = first, last, sources
            release.notified_at = timezone.now()
            _save(release, system_user(), f"used during its grace window: {len(inside)} call(s)")
            transaction.on_commit(lambda r=release: _tell_about_traffic(r))
        else:
            # Telemetry after the notice: counted without a history record per usage batch.
            KeyRelease.objects.filter(pk=release.pk).update(
                traffic_calls=release.traffic_calls + len(inside), first_traffic_at=first, last_traffic_at=last,
                traffic_sources=sources,
            )
    return seen


def _recipients(key: ApiKey) -> list[str]:
    return sorted({
        *([key.owner.email] if key.owner.email and key.owner.is_active else []),
        *User.objects.filter(groups__name=roles.COMPLIANCE, is_active=True).exclude(email="")
        .values_list("email", flat=True),
    })


def _tell_about_traffic(release: KeyRelease) -> None:
    key = release.key
    recipients = _recipients(key)
    if not recipients:
        log.warning("release %s of key %s used in its window: nobody to tell", release.pk, key.pk)
        return
    sources = ", ".join(release.traffic_sources) or "no source given"
    send_mail(
        f"[Keys portal] Released API key still in use: {key.label} ({key.prefix}…)",
        f"The API key {key.label} ({key.prefix}…) was released ({release.reason}) and suspended on "
        f"{release.started_at:%d %b %Y %H:%M} for a grace window ending {release.ends_at:%d %b %Y %H:%M}.\n\n"
        f"Usage reports show {release.traffic_calls} call(s) since, first at {release.first_traffic_at:%d %b %Y %H:%M}, "
        f"from: {sources}.\n\n"
        f"If the key is still needed, roll the release back on the key's page; otherwise it stays suspended "
        f"until someone revokes it.\n\n{settings.SITE_URL}{key.get_absolute_url()}\n",
        settings.DEFAULT_FROM_EMAIL,
        recipients,
    )


def _decidable(release: KeyRelease, actor, refusal: str) -> KeyRelease:
    """The release, locked, if ``actor`` may decide it (else ``refusal``) and it is still open."""
    release = KeyRelease.objects.select_for_update().select_related("key").get(pk=release.pk)
    if not may_decide(actor, release):
        raise LifecycleError(refusal)
    if not release.is_open:
        raise LifecycleError(f"This release is already {release.get_status_display().lower()}.")
    return release


def roll_back(release: KeyRelease, *, actor, reason: str) -> KeyRelease:
    """Keep the key after all: it returns to the status it had before the release. Recorded once."""
    reason = (reason or "").strip()
    if not reason:
        raise LifecycleError("Say why the release is rolled back.", field="reason")
    with sealed_atomic():
        release = _decidable(release, actor, "Only the key's owner or steward, compliance or an admin can roll a "
                                             "release back.")
        lifecycle.roll_back_release(release.key, actor=actor, to_status=release.status_before,
                                    reason=f"Release rolled back: {reason}", details={"release": release.pk})
        release.status = ReleaseStatus.ROLLED_BACK
        release.decided_by, release.decided_at, release.decision_reason = actor, timezone.now(), reason
        _save(release, actor, f"rolled back: {reason}")
    return release


def revoke_now(release: KeyRelease, *, actor, reason: str = "") -> KeyRelease:
    """End an open release early by revoking the key."""
    with sealed_atomic():
        release = _decidable(release, actor, "Only the key's owner or steward, compliance or an admin can revoke it.")
        reason = (reason or "").strip() or "revoked before the end of its grace window"
        _finish_revoked(release, actor=actor, reason=f"{release.reason} ({reason})", note=reason)
    return release


def _finish_revoked(release: KeyRelease, *, actor, reason: str, note: str) -> None:
    lifecycle.revoke_key(release.key, actor=actor, reason_code=release.reason_code, reason=reason)
    release.status = ReleaseStatus.REVOKED
    release.decided_by, release.decided_at, release.decision_reason = actor, timezone.now(), note
    _save(release, actor, note)


def finalise_due_releases(now: datetime.datetime | None = None) -> dict[str, int]:
    """End every grace window that has run out: revoke quiet keys, hold used ones. Idempotent."""
    now = now or timezone.now()
    actor = system_user()
    counts = {"revoked": 0, "held": 0, "superseded": 0, "skipped": 0}
    due = list(
        KeyRelease.objects.filter(status=ReleaseStatus.WATCHING, ends_at__lte=now).order_by("pk").values_list("pk", flat=True)
    )
    # A held or watching release whose key was revoked or expired some other way is closed too.
    ended = list(KeyRelease.objects.filter(status__in=OPEN_RELEASE_STATUSES).exclude(
        key__status__in=[KeyStatus.ACTIVE, KeyStatus.SUSPENDED, KeyStatus.PENDING]).values_list("pk", flat=True))
    for pk in sorted({*due, *ended}):
        try:
            outcome = _finalise(pk, actor=actor, now=now)
        except LifecycleError as exc:
            log.info("release %s not finalised: %s", pk, exc)
            outcome = "skipped"
        if outcome:
            counts[outcome] += 1
    return counts


def _finalise(pk: int, *, actor, now: datetime.datetime) -> str | None:
    with sealed_atomic():
        release = KeyRelease.objects.select_for_update().select_related("key").get(pk=pk)
        if not release.is_open:
            return None
        if release.key.is_final:
            release.status = ReleaseStatus.SUPERSEDED
            release.decided_by, release.decided_at = actor, now
            release.decision_reason = f"the key was {release.key.get_status_display().lower()} meanwhile"
            _save(release, actor, release.decision_reason)
            return "superseded"
        if release.status != ReleaseStatus.WATCHING or release.ends_at > now:
            return None
        if release.traffic_calls:
            release.status = ReleaseStatus.HELD
            _save(release, actor, f"grace window ended with {release.traffic_calls} call(s): held for a decision")
            return "held"
        days = (release.ends_at - release.started_at).days
        _finish_revoked(release, actor=actor, note="grace window ended with no traffic",
                        reason=f"{release.reason} (no traffic during its {days}-day grace window)")
        return "revoked"
