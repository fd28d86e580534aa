"""Key exceptions: the only place a KeyException changes state.

A key that cannot follow the rules yet gets a transitional exception (it migrates to OAuth, workload
identity or a token broker by an end date) or a permanent one (the residual risk is formally accepted,
compensating controls are in place, and the acceptance is reviewed by a date). Rules enforced here:

- the key's owner or steward, or an admin, requests; a key has at most one open (requested or
  approved) exception;
- only compliance decides, and never someone who owns, stewards or requested the exception
  (segregation of duties); a rejection needs a reason;
- the requester, the key's owner or an admin may withdraw an open exception;
- when the due date passes, the sweep marks the exception lapsed: a transitional exception expires
  (the migration is overdue); a permanent one stays approved but lapsed until compliance renews it
  with a new review date, because the risk acceptance is still the last decision anyone took and
  expiring it would silently drop the compensating controls from the record. Either way the key is
  put in front of its owner in the next campaign with the exception flagged.

Every step writes a history record of the exception with the actor and the reason.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable

from django.db.models import Q
from django.utils import timezone

from core import roles
from core.chain import sealed_atomic
from core.errors import ServiceError
from core.history import attribute_change
from keys.choices import (
    EXCEPTION_TRANSITIONS,
    LIVE_KEY_STATUSES,
    BlastRadius,
    CompensatingControl,
    ExceptionKind,
    ExceptionStatus,
    MigrationTarget,
    Replaceability,
)
from keys.models import ApiKey, KeyException

OPEN_STATUSES = frozenset({ExceptionStatus.REQUESTED, ExceptionStatus.APPROVED})
MAX_TRANSITIONAL_DAYS = 365
MAX_REVIEW_DAYS = 365
# Reminders go out when this many days are left before the end or review date (latest first).
REMINDER_DAYS_BEFORE = (14, 3)
REMINDER_REASON = "reminder sent: {days} days before the due date"


class KeyExceptionError(ServiceError):
    """A refused exception step. ``errors`` maps a field name (or ``__all__``) to messages."""


def open_exceptions():
    return KeyException.objects.filter(status__in=OPEN_STATUSES)


def visible_exceptions(user):
    """Exceptions of the keys the user may see (ApiKey.objects.visible_to is the one rule)."""
    ids = ApiKey.objects.visible_id_list(user)
    return KeyException.objects.all() if ids is None else KeyException.objects.filter(key__in=ids)


def overdue_q(today: datetime.date) -> Q:
    """Approved or expired exceptions whose end or review date has passed."""
    return Q(status__in=[ExceptionStatus.APPROVED, ExceptionStatus.EXPIRED]) & (
        Q(kind=ExceptionKind.TRANSITIONAL, end_date__lt=today) | Q(kind=ExceptionKind.PERMANENT, review_date__lt=today)
    )


def control_labels(exception: KeyException) -> list[str]:
    labels = dict(CompensatingControl.choices)
    return [labels.get(value, value) for value in exception.compensating_controls or []]


def may_request(user, key: ApiKey) -> bool:
    return user.is_authenticated and (roles.is_admin(user) or user.pk in (key.owner_id, key.steward_id))


def decision_refusal(user, exception: KeyException) -> str | None:
    """Why ``user`` may not approve or reject ``exception``, or None if they may."""
    if not roles.is_compliance(user):
        return "Only compliance can approve or reject an exception."
    if user.pk == exception.key.owner_id:
        return "You own this key: someone else in compliance must decide its exception."
    if user.pk == exception.key.steward_id:
        return "You steward this key: someone else in compliance must decide its exception."
    if user.pk == exception.requested_by_id:
        return "You requested this exception: someone else in compliance must decide it."
    return None


def may_withdraw(user, exception: KeyException) -> bool:
    return user.is_authenticated and (
        roles.is_admin(user) or user.pk in (exception.requested_by_id, exception.key.owner_id)
    )


def may_renew(user, exception: KeyException) -> bool:
    return decision_refusal(user, exception) is None


def _save(exception: KeyException, actor, reason: str) -> KeyException:
    attribute_change(exception, actor, reason)
    exception.save()
    return exception


def _locked(exception: KeyException, action: str) -> KeyException:
    locked = KeyException.objects.select_for_update().select_related("key").get(pk=exception.pk)
    allowed_from, _ = EXCEPTION_TRANSITIONS[action]
    if locked.status not in allowed_from:
        done = {"approve": "approved", "reject": "rejected", "expire": "expired", "withdraw": "withdrawn"}[action]
        raise KeyExceptionError(f"A {locked.get_status_display().lower()} exception cannot be {done}.")
    return locked


def _require_reason(reason: str, message: str = "A reason is required.") -> str:
    reason = (reason or "").strip()
    if not reason:
        raise KeyExceptionError(message, field="reason")
    return reason


def _validate_future(value, field: str, errors: dict, today: datetime.date, max_days: int, what: str) -> None:
    if value is None:
        errors[field] = [f"Give the {what}."]
    elif value <= today:
        errors[field] = [f"The {what} must be in the future."]
    elif value > today + datetime.timedelta(days=max_days):
        errors[field] = [f"The {what} may be at most {max_days} days away; renew the exception when it comes."]


def validate_request(
    *, kind, business_justification, blast_radius, replaceability, compensating_controls, other_controls,
    migration_target, end_date, risk_acceptance, review_date, today: datetime.date,
) -> dict[str, list[str]]:
    """Per-field errors of an exception request (empty when it is acceptable)."""
    errors: dict[str, list[str]] = {}
    if kind not in ExceptionKind.values:
        errors["kind"] = ["Choose transitional or permanent."]
    if not (business_justification or "").strip():
        errors["business_justification"] = ["Say why the key must stay an API key for now."]
    if blast_radius not in BlastRadius.values:
        errors["blast_radius"] = ["Choose the blast radius."]
    if replaceability not in Replaceability.values:
        errors["replaceability"] = ["Choose how replaceable the key is."]
    unknown = [c for c in compensating_controls if c not in CompensatingControl.values]
    if unknown:
        errors["compensating_controls"] = [f"Unknown control: {', '.join(map(str, unknown))}."]
    if kind == ExceptionKind.TRANSITIONAL:
        if migration_target not in MigrationTarget.values:
            errors["migration_target"] = ["Name what the key migrates to."]
        _validate_future(end_date, "end_date", errors, today, MAX_TRANSITIONAL_DAYS, "end date")
    elif kind == ExceptionKind.PERMANENT:
        if replaceability == Replaceability.REPLACEABLE:
            errors.setdefault("replaceability", []).append(
                "A key that is replaceable now migrates: ask for a transitional exception."
            )
        if not (risk_acceptance or "").strip():
            errors["risk_acceptance"] = ["A permanent exception needs a formal acceptance of the residual risk."]
        if not compensating_controls and not (other_controls or "").strip():
            errors.setdefault("compensating_controls", []).append(
                "A permanent exception needs at least one compensating control."
            )
        _validate_future(review_date, "review_date", errors, today, MAX_REVIEW_DAYS, "review date")
    return errors


@sealed_atomic
def request_exception(
    key: ApiKey,
    *,
    actor,
    kind: str,
    business_justification: str,
    blast_radius: str,
    replaceability: str,
    compensating_controls: Iterable[str] = (),
    other_controls: str = "",
    migration_target: str = "",
    migration_plan: str = "",
    end_date: datetime.date | None = None,
    risk_acceptance: str = "",
    review_date: datetime.date | None = None,
) -> KeyException:
    """Ask for an exception for a live key. Admins, or the key's owner or steward, may ask.

    Fields that do not belong to the kind (a review date on a transitional exception...) are dropped.
    """
    key = ApiKey.objects.select_for_update().get(pk=key.pk)
    if not may_request(actor, key):
        raise KeyExceptionError("Only an admin or the key's owner or steward can request an exception for it.")
    if key.status not in LIVE_KEY_STATUSES:
        raise KeyExceptionError(f"A {key.get_status_display().lower()} key needs no exception.")
    existing = open_exceptions().filter(key=key).first()
    if existing is not None:
        raise KeyExceptionError(
            f"The key already has an open exception ({existing.get_status_display().lower()}); withdraw it first."
        )
    controls = sorted({str(c) for c in compensating_controls or []})
    errors = validate_request(
        kind=kind, business_justification=business_justification, blast_radius=blast_radius,
        replaceability=replaceability, compensating_controls=controls, other_controls=other_controls,
        migration_target=migration_target, end_date=end_date, risk_acceptance=risk_acceptance,
        review_date=review_date, today=timezone.localdate(),
    )
    if errors:
        raise KeyExceptionError(errors)
    transitional = kind == ExceptionKind.TRANSITIONAL
    exception = KeyException(
        key=key,
        kind=kind,
        business_justification=business_justification.strip(),
        blast_radius=blast_radius,
        replaceability=replaceability,
        compensating_controls=controls,
        other_controls=(other_controls or "").strip(),
        migration_target=migration_target if transitional else "",
        migration_plan=(migration_plan or "").strip() if transitional else "",
        end_date=end_date if transitional else None,
        risk_acceptance="" if transitional else risk_acceptance.strip(),
        review_date=None if transitional else review_date,
        requested_by=actor,
        requested_at=timezone.now(),
        status=ExceptionStatus.REQUESTED,
    )
    return _save(exception, actor, f"{exception.get_kind_display().split(' (')[0].lower()} exception requested")


def _decide(exception: KeyException, action: str, *, actor, reason: str) -> KeyException:
    exception = _locked(exception, action)
    refusal = decision_refusal(actor, exception)
    if refusal:
        raise KeyExceptionError(refusal)
    exception.status = EXCEPTION_TRANSITIONS[action][1]
    exception.decided_by = actor
    exception.decided_at = timezone.now()
    exception.decision_reason = reason
    return exception


@sealed_atomic
def approve_exception(exception: KeyException, *, actor, reason: str = "") -> KeyException:
    """Compliance approves a requested exception; never the key's owner or steward, nor the requester."""
    exception = _decide(exception, "approve", actor=actor, reason=(reason or "").strip())
    if exception.key.status not in LIVE_KEY_STATUSES:
        raise KeyExceptionError(f"The key is {exception.key.get_status_display().lower()}: reject the request instead.")
    if exception.due_on is None or exception.due_on <= timezone.localdate():
        raise KeyExceptionError("The exception's end or review date has passed: reject it and ask for a new one.")
    label = "approved" + (f": {exception.decision_reason}" if exception.decision_reason else "")
    return _save(exception, actor, label)


@sealed_atomic
def reject_exception(exception: KeyException, *, actor, reason: str) -> KeyException:
    """Compliance rejects a requested exception, saying why; same segregation of duties as approval."""
    reason = _require_reason(reason, "Say why the exception is rejected.")
    exception = _decide(exception, "reject", actor=actor, reason=reason)
    return _save(exception, actor, f"rejected: {reason}")


@sealed_atomic
def withdraw_exception(exception: KeyException, *, actor, reason: str) -> KeyException:
    """The requester, the key's owner or an admin withdraws an open exception (e.g. the migration is done)."""
    reason = _require_reason(reason, "Say why the exception is withdrawn.")
    exception = _locked(exception, "withdraw")
    if not may_withdraw(actor, exception):
        raise KeyExceptionError("Only the requester, the key's owner or an admin can withdraw this exception.")
    exception.status = ExceptionStatus.WITHDRAWN
    return _save(exception, actor, f"withdrawn: {reason}")


@sealed_atomic
def expire_exception(exception: KeyException, *, actor, today: datetime.date | None = None) -> KeyException:
    """Mark an approved exception whose end or review date has passed as lapsed.

    Transitional: status expired, lapsed_on set. Permanent: lapsed_on set, status stays approved
    until compliance renews it (see the module's docstring). Running it twice changes nothing twice.
    """
    today = today or timezone.localdate()
    exception = KeyException.objects.select_for_update().select_related("key").get(pk=exception.pk)
    if exception.status != ExceptionStatus.APPROVED or exception.lapsed_on is not None:
        return exception
    due = exception.due_on
    if due is None or due >= today:
        raise KeyExceptionError("The exception's end or review date has not passed.")
    exception.lapsed_on = due + datetime.timedelta(days=1)
    if exception.kind == ExceptionKind.TRANSITIONAL:
        exception.status = EXCEPTION_TRANSITIONS["expire"][1]
        return _save(exception, actor, f"expired: migration not done by {due.isoformat()}")
    return _save(exception, actor, f"lapsed: risk acceptance not reviewed by {due.isoformat()}")


@sealed_atomic
def renew_exception(exception: KeyException, *, actor, review_date: datetime.date, reason: str) -> KeyException:
    """Compliance re-reviews an approved permanent exception: a new review date, and it is no longer lapsed."""
    reason = _require_reason(reason, "Say what the re-review found.")
    exception = KeyException.objects.select_for_update().select_related("key").get(pk=exception.pk)
    if exception.status != ExceptionStatus.APPROVED or exception.kind != ExceptionKind.PERMANENT:
        raise KeyExceptionError("Only an approved permanent exception is renewed; ask for a new one otherwise.")
    refusal = decision_refusal(actor, exception)
    if refusal:
        raise KeyExceptionError(refusal)
    errors: dict[str, list[str]] = {}
    _validate_future(review_date, "review_date", errors, timezone.localdate(), MAX_REVIEW_DAYS, "review date")
    if errors:
        raise KeyExceptionError(errors)
    exception.review_date = review_date
    exception.lapsed_on = None
    exception.decided_by = actor
    exception.decided_at = timezone.now()
    exception.decision_reason = reason
    return _save(exception, actor, f"renewed until {review_date.isoformat()}: {reason}")


def lapsed_due(today: datetime.date):
    """Approved exceptions past their end or review date that the sweep has not marked yet."""
    return KeyException.objects.filter(status=ExceptionStatus.APPROVED, lapsed_on__isnull=True).filter(
        Q(kind=ExceptionKind.TRANSITIONAL, end_date__lt=today) | Q(kind=ExceptionKind.PERMANENT, review_date__lt=today)
    )


def sweep_lapsed_exceptions(*, actor, today: datetime.date | None = None) -> list[int]:
    """Mark every approved exception past its due date as lapsed; returns their ids. Safe to rerun."""
    today = today or timezone.localdate()
    lapsed = []
    for exception in lapsed_due(today).order_by("pk"):
        expire_exception(exception, actor=actor, today=today)
        lapsed.append(exception.pk)
    return lapsed


def reminder_day(exception: KeyException, today: datetime.date) -> int | None:
    """The most urgent reminder threshold reached (14 or 3 days before the due date), if any."""
    due = exception.due_on
    if due is None or due < today:
        return None
    left = (due - today).days
    reached = [days for days in REMINDER_DAYS_BEFORE if left <= days]
    return min(reached) if reached else None


def claim_reminder(exception: KeyException, *, actor, today: datetime.date) -> int | None:
    """Record that a reminder is due now and return its threshold, or None when it was already sent.

    The record is a history row of the exception ("reminder sent: 14 days before the due date"), so
    a retried or repeated daily run sends nothing twice and the audit trail shows every reminder.
    A missed day is caught up with the most urgent reminder only.
    """
    with sealed_atomic():
        exception = KeyException.objects.select_for_update().get(pk=exception.pk)
        if exception.status != ExceptionStatus.APPROVED:
            return None
        days = reminder_day(exception, today)
        if days is None:
            return None
        sent = exception.history.filter(history_change_reason__in=[
            REMINDER_REASON.format(days=d) for d in REMINDER_DAYS_BEFORE if d <= days
        ])
        # Reminders for a renewed review date count from the renewal on.
        if exception.decided_at:
            sent = sent.filter(history_date__gte=exception.decided_at)
        if sent.exists():
            return None
        _save(exception, actor, REMINDER_REASON.format(days=days))
        return days


def reminder_candidates(today: datetime.date):
    horizon = today + datetime.timedelta(days=max(REMINDER_DAYS_BEFORE))
    return KeyException.objects.filter(status=ExceptionStatus.APPROVED).filter(
        Q(kind=ExceptionKind.TRANSITIONAL, end_date__gte=today, end_date__lte=horizon)
        | Q(kind=ExceptionKind.PERMANENT, review_date__gte=today, review_date__lte=horizon)
    )
