"""The key lifecycle: the only place a key's state changes.

Each function checks the rule it enforces, writes inside one transaction, records a LifecycleEvent
and a history record with the actor and the reason, and refuses an illegal step with
``LifecycleError``. Views, the admin, the API, tasks and commands all call these functions.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db.models import Exists, F, OuterRef
from django.utils import timezone

from core import roles
from core.chain import bulk_create_rows, bulk_update_with_history, sealed_atomic
from core.errors import ServiceError
from core.history import attribute_change
from core.jobs import enqueue_on_commit
from core.validators import field_errors
from keys.choices import (
    KEY_TRANSITIONS,
    IssuingSystemKind,
    KeyStatus,
    LifecycleAction,
    RevocationReason,
    RevocationRequestStatus,
    RevocationState,
    RiskTier,
    WorkflowStatus,
)
from keys.fingerprints import (
    MAX_PREFIX_LENGTH,
    MIN_SECRET_LENGTH,
    current_pepper_version,
    default_prefix,
    fingerprint_secret,
    identity_refusal,
    normalise_fingerprint,
)
from keys.models import ApiKey, ApiKeyUserObjectPermission, IssuingSystem, LifecycleEvent, RevocationRequest, Workflow

OWNER_PERMISSIONS = ("view_apikey", "change_apikey")
CONTACT_CUSTODY = "A customer contact may own or steward only keys of their own customer."


class LifecycleError(ServiceError):
    """A refused lifecycle step. ``errors`` maps a field name (or ``__all__``) to messages."""


def resolve_identity(
    *, secret: str | None, fingerprint: str | None, prefix: str | None
) -> tuple[str, str, dict[str, list[str]]]:
    """Turn a submitted secret or fingerprint into (prefix, fingerprint) and per-field errors.

    The secret is used only to compute the fingerprint and is not returned.
    """
    errors: dict[str, list[str]] = {}
    secret = secret or ""
    fingerprint = (fingerprint or "").strip()
    prefix = (prefix or "").strip()
    refused = identity_refusal(has_secret=bool(secret), has_fingerprint=bool(fingerprint),
                               missing="Give the secret (it is fingerprinted and dropped) or its fingerprint.")
    if refused:
        errors["secret"] = [refused]
    digest = ""
    if secret and not errors:
        if len(secret) < MIN_SECRET_LENGTH or secret != secret.strip():
            errors["secret"] = [f"A secret is at least {MIN_SECRET_LENGTH} characters with no surrounding spaces."]
        else:
            if not prefix:
                prefix = default_prefix(secret)
            elif not secret.startswith(prefix):
                errors["prefix"] = ["The prefix must be the start of the secret."]
            elif len(prefix) > len(secret) // 2:
                errors["prefix"] = ["The prefix may show at most half of the secret."]
            digest = fingerprint_secret(secret)
    elif fingerprint and not errors:
        digest = normalise_fingerprint(fingerprint) or ""
        if not digest:
            errors["fingerprint"] = ["A fingerprint is 64 hexadecimal characters (HMAC-SHA256)."]
        if not prefix:
            errors.setdefault("prefix", []).append("A prefix is required when registering by fingerprint.")
    if prefix and len(prefix) > MAX_PREFIX_LENGTH:
        errors.setdefault("prefix", []).append(f"A prefix is at most {MAX_PREFIX_LENGTH} characters.")
    return prefix, digest, errors


def with_contact_customer(users):
    """A user queryset annotated with ``contact_of`` (the customer of their customer-contact profile, the contacts
    app's, reached by its relation) and ``in_contact_role``; ``contacts_among`` reads them."""
    return users.annotate(
        contact_of=F("customer_contact__customer"),
        in_contact_role=Exists(Group.objects.filter(user=OuterRef("pk"), name=roles.CUSTOMER_CONTACT)),
    )


def contacts_among(annotated_users: Iterable) -> dict[int, int | None]:
    """The customer contacts among users read through ``with_contact_customer``: user id -> their customer (None
    for an account in the contact role without one)."""
    return {user.pk: user.contact_of for user in annotated_users if user.contact_of is not None or user.in_contact_role}


def contact_customers(users: Iterable) -> dict[int, int | None]:
    """The customer contacts among ``users``, as ``contacts_among``, in one query."""
    ids = {user.pk for user in users if user is not None}
    if not ids:
        return {}
    return contacts_among(with_contact_customer(get_user_model().objects.filter(pk__in=ids)))


def is_contact_of_another_customer(user, customer_id: int, contacts: dict[int, int | None] | None = None) -> bool:
    """Whether ``user`` is a customer contact of a customer other than ``customer_id``: such a person never holds,
    nor decides on, that customer's keys. ``contacts`` is ``contact_customers`` read beforehand (imports)."""
    if user is None:
        return False
    contacts = contact_customers([user]) if contacts is None else contacts
    return user.pk in contacts and contacts[user.pk] != customer_id


def custody_errors(customer_id: int, contacts: dict[int, int | None] | None = None, **people) -> dict[str, list[str]]:
    """Per field, the people (field name -> user or None) named to own or steward a key of ``customer_id`` who are
    customer contacts of another customer. Every path that names a key's owner or steward checks this."""
    contacts = contact_customers(people.values()) if contacts is None else contacts
    return {field: [CONTACT_CUSTODY] for field, user in people.items()
            if is_contact_of_another_customer(user, customer_id, contacts)}


def _record(key: ApiKey, action: str, actor, reason: str, from_status: str = "", details: dict | None = None):
    attribute_change(key, actor, reason)
    key.save()
    return LifecycleEvent.objects.create(
        key=key,
        action=action,
        from_status=from_status,
        to_status=key.status,
        actor=actor,
        reason=reason,
        details=details or {},
    )


def _require_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise LifecycleError("A reason is required.", field="reason")
    return reason


def _locked(key: ApiKey, action: str) -> ApiKey:
    """Lock the key's row and check that ``action`` is allowed from its current status."""
    locked = ApiKey.objects.select_for_update().get(pk=key.pk)
    allowed_from, _ = KEY_TRANSITIONS[action]
    if locked.status not in allowed_from:
        raise LifecycleError(
            f"A {locked.get_status_display().lower()} key cannot be {LifecycleAction(action).label.lower()}."
        )
    return locked


def _grant_owner(key: ApiKey, user) -> None:
    perms = Permission.objects.filter(content_type__app_label="keys", codename__in=OWNER_PERMISSIONS)
    ApiKeyUserObjectPermission.objects.bulk_create(
        [ApiKeyUserObjectPermission(content_object=key, user=user, permission=p) for p in perms],
        ignore_conflicts=True,
    )


def _remove_owner(key: ApiKey, user) -> None:
    ApiKeyUserObjectPermission.objects.filter(
        content_object=key, user=user, permission__codename__in=OWNER_PERMISSIONS
    ).delete()


def grant_owner_permissions(keys: Iterable[ApiKey]) -> None:
    """Give each key's owner its object permissions, in one insert (imports, seeding)."""
    perms = list(Permission.objects.filter(content_type__app_label="keys", codename__in=OWNER_PERMISSIONS))
    ApiKeyUserObjectPermission.objects.bulk_create(
        [ApiKeyUserObjectPermission(content_object=k, user_id=k.owner_id, permission=p) for k in keys for p in perms],
        ignore_conflicts=True,
        batch_size=2000,
    )


def validate_dates(issued_on, expires_on, next_review_on) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    if issued_on and expires_on and expires_on <= issued_on:
        errors["expires_on"] = ["The expiry date must be after the issue date."]
    if issued_on and next_review_on and next_review_on < issued_on:
        errors["next_review_on"] = ["The next review cannot be before the issue date."]
    for field, value in (("issued_on", issued_on), ("expires_on", expires_on), ("next_review_on", next_review_on)):
        if value and not (datetime.date(2000, 1, 1) <= value <= datetime.date(2100, 12, 31)):
            errors.setdefault(field, []).append("The date must be between 2000 and 2100.")
    return errors


@sealed_atomic
def register_key(
    *,
    actor,
    workflow: Workflow,
    issuing_system: IssuingSystem,
    label: str,
    owner,
    secret: str | None = None,
    fingerprint: str | None = None,
    prefix: str | None = None,
    scopes: list[str] | None = None,
    steward=None,
    risk_tier: str = RiskTier.MEDIUM,
    issued_on: datetime.date | None = None,
    expires_on: datetime.date | None = None,
    next_review_on: datetime.date | None = None,
    reason: str = "",
) -> ApiKey:
    """Register a key as pending approval. Only its prefix and fingerprint are kept.

    A customer contact may own or steward only keys of their own customer."""
    prefix, digest, errors = resolve_identity(secret=secret, fingerprint=fingerprint, prefix=prefix)
    del secret
    label = (label or "").strip()
    if not label:
        errors["label"] = ["A label is required."]
    for field, messages in field_errors(ApiKey, label=label).items():
        errors.setdefault(field, messages)
    if workflow.status == WorkflowStatus.DECOMMISSIONED:
        errors["workflow"] = ["This workflow is decommissioned: no new keys may be registered for it."]
    if not owner.is_active:
        errors["owner"] = ["The owner's account is inactive."]
    for field, messages in custody_errors(workflow.customer_id, owner=owner, steward=steward).items():
        errors.setdefault(field, []).extend(messages)
    issued_on = issued_on or timezone.localdate()
    errors.update(validate_dates(issued_on, expires_on, next_review_on))
    if digest and ApiKey.objects.filter(fingerprint=digest).exists():
        errors.setdefault("fingerprint" if fingerprint else "secret", []).append(
            "A key with this fingerprint is already registered."
        )
    if errors:
        raise LifecycleError(errors)
    key = ApiKey(
        workflow=workflow,
        issuing_system=issuing_system,
        label=label,
        prefix=prefix,
        fingerprint=digest,
        pepper_version=current_pepper_version(),
        scopes=sorted(set(scopes or [])),
        owner=owner,
        steward=steward,
        risk_tier=risk_tier,
        issued_on=issued_on,
        expires_on=expires_on,
        next_review_on=next_review_on,
        status=KeyStatus.PENDING,
    )
    _record(key, LifecycleAction.REGISTER, actor, reason.strip() or "Registered")
    _grant_owner(key, owner)
    return key


@sealed_atomic
def approve_key(key: ApiKey, *, actor, reference: str = "", reason: str = "") -> ApiKey:
    """Approve a pending key. Nobody approves a key they own."""
    key = _locked(key, LifecycleAction.APPROVE)
    if actor.pk == key.owner_id:
        raise LifecycleError("The key's owner cannot approve it.")
    key.status = KeyStatus.ACTIVE
    key.status_changed_at = timezone.now()
    key.approved_by = actor
    key.approved_at = timezone.now()
    key.approval_reference = reference.strip()
    _record(key, LifecycleAction.APPROVE, actor, reason.strip() or "Approved", KeyStatus.PENDING,
            {"reference": key.approval_reference})
    return key


@sealed_atomic
def rotate_key(
    key: ApiKey, *, actor, secret: str | None = None, fingerprint: str | None = None,
    prefix: str | None = None, reason: str = "",
) -> ApiKey:
    """Record that the key's secret was replaced at the issuer: new prefix and fingerprint."""
    key = _locked(key, LifecycleAction.ROTATE)
    prefix, digest, errors = resolve_identity(secret=secret, fingerprint=fingerprint, prefix=prefix)
    del secret
    if digest and ApiKey.objects.filter(fingerprint=digest).exists():
        errors.setdefault("fingerprint" if fingerprint else "secret", []).append(
            "A key with this fingerprint is already registered."
        )
    if errors:
        raise LifecycleError(errors)
    old_prefix = key.prefix
    key.prefix, key.fingerprint, key.pepper_version = prefix, digest, current_pepper_version()
    key.last_rotated_at = timezone.now()
    key.rotation_required = False
    _record(key, LifecycleAction.ROTATE, actor, reason.strip() or "Rotated", key.status,
            {"old_prefix": old_prefix, "new_prefix": prefix})
    return key


def _move(key: ApiKey, action: str, to_status: str, *, actor, reason: str, details: dict | None = None) -> ApiKey:
    key = _locked(key, action)
    from_status = key.status
    key.status = to_status
    key.status_changed_at = timezone.now()
    _record(key, action, actor, reason, from_status, details)
    return key


@sealed_atomic
def suspend_key(key: ApiKey, *, actor, reason: str) -> ApiKey:
    return _move(key, LifecycleAction.SUSPEND, KeyStatus.SUSPENDED, actor=actor, reason=_require_reason(reason))


@sealed_atomic
def reinstate_key(key: ApiKey, *, actor, reason: str) -> ApiKey:
    return _move(key, LifecycleAction.REINSTATE, KeyStatus.ACTIVE, actor=actor, reason=_require_reason(reason))


@sealed_atomic
def revoke_key(key: ApiKey, *, actor, reason_code: str, reason: str = "", emergency: bool = False) -> ApiKey:
    """Revoke a key for one of the recorded reasons. Revocation is final.

    The key stays "awaiting the issuer" until its issuing system acknowledges the revocation
    request opened here (webhook) or an admin confirms it was done at the source (manual).
    """
    if reason_code not in RevocationReason.values:
        raise LifecycleError("Unknown revocation reason.", field="reason_code")
    reason = reason.strip() or RevocationReason(reason_code).label
    key = _locked(key, LifecycleAction.REVOKE)
    from_status = key.status
    key.status = KeyStatus.REVOKED
    key.status_changed_at = timezone.now()
    key.revocation_reason = reason_code
    key.revocation_state = RevocationState.PENDING
    _record(key, LifecycleAction.REVOKE, actor, reason, from_status, {"reason_code": reason_code})
    open_revocation_request(key, actor=actor, reason_code=reason_code, reason=reason, emergency=emergency)
    return key


@sealed_atomic
def confirm_revocation_at_issuer(key: ApiKey, *, actor, reason: str, details: dict | None = None) -> ApiKey:
    """Record that the issuer no longer accepts the revoked key. Recorded once."""
    key = ApiKey.objects.select_for_update().get(pk=key.pk)
    if key.status != KeyStatus.REVOKED:
        raise LifecycleError("Only a revoked key's revocation can be confirmed.")
    if key.revocation_state == RevocationState.CONFIRMED:
        return key
    key.revocation_state = RevocationState.CONFIRMED
    _record(key, LifecycleAction.CONFIRM_REVOCATION, actor, _require_reason(reason), key.status, details)
    return key


@sealed_atomic
def expire_key(key: ApiKey, *, actor, reason: str = "") -> ApiKey:
    """Expire a key past its time to live."""
    today = timezone.localdate()
    if key.expires_on is None or key.expires_on > today:
        raise LifecycleError("The key has not reached its expiry date.")
    return _move(key, LifecycleAction.EXPIRE, KeyStatus.EXPIRED, actor=actor,
                 reason=reason.strip() or f"Expired on {key.expires_on.isoformat()}")


@sealed_atomic
def change_owner(key: ApiKey, *, actor, new_owner, reason: str) -> ApiKey:
    """Move ownership: object permissions follow, and the key must be rotated. A customer contact may own only
    keys of their own customer."""
    reason = _require_reason(reason)
    key = _locked(key, LifecycleAction.CHANGE_OWNER)
    if new_owner.pk == key.owner_id:
        raise LifecycleError("This person already owns the key.", field="new_owner")
    if not new_owner.is_active:
        raise LifecycleError("The new owner's account is inactive.", field="new_owner")
    if is_contact_of_another_customer(new_owner, key.workflow.customer_id):
        raise LifecycleError(CONTACT_CUSTODY, field="new_owner")
    old_owner = key.owner
    key.owner = new_owner
    key.rotation_required = True
    key.orphaned = False
    _remove_owner(key, old_owner)
    _grant_owner(key, new_owner)
    _record(key, LifecycleAction.CHANGE_OWNER, actor, reason, key.status,
            {"from": old_owner.get_username(), "to": new_owner.get_username()})
    return key


def record_attestation(key: ApiKey, *, actor, reason: str, next_review_on: datetime.date,
                       locked: bool = False) -> ApiKey:
    """Record that the owner vouched for the key: the next review moves forward.

    ``locked``: the caller read ``key`` with ``select_for_update`` in its transaction, so the key is used
    as it is rather than read again, and a refusal here undoes the caller's whole transaction (no savepoint).
    """
    with sealed_atomic(savepoint=not locked):
        if not locked:
            key = ApiKey.objects.select_for_update().get(pk=key.pk)
        if key.is_final:
            raise LifecycleError(f"A {key.get_status_display().lower()} key cannot be attested.")
        key.last_attested_at = timezone.now()
        key.next_review_on = next_review_on
        key.unattested = False
        _record(key, LifecycleAction.ATTEST, actor, reason, key.status, {"next_review_on": next_review_on.isoformat()})
    return key


def _flag(key: ApiKey, flag: str, action: str, *, actor, reason: str, details=None) -> bool:
    """Set one of a live key's flags with its lifecycle event, once. Returns whether it was set now (False if it
    already was, or the key is revoked or expired)."""
    reason = _require_reason(reason)
    key = ApiKey.objects.select_for_update().get(pk=key.pk)
    if key.is_final or getattr(key, flag):
        return False
    setattr(key, flag, True)
    _record(key, action, actor, reason, key.status, details(key) if details else None)
    return True


@sealed_atomic
def flag_unattested(key: ApiKey, *, actor, reason: str) -> bool:
    """Keep the key but mark that nobody vouched for it."""
    return _flag(key, "unattested", LifecycleAction.FLAG, actor=actor, reason=reason)


@sealed_atomic
def flag_orphaned(key: ApiKey, *, actor, reason: str) -> bool:
    """Mark a live key whose owner has left as orphaned, awaiting reassignment.

    Reassigning the key (``change_owner``) clears the flag.
    """
    return _flag(key, "orphaned", LifecycleAction.FLAG_ORPHANED, actor=actor, reason=reason,
                 details=lambda key: {"owner": key.owner.get_username()})


@sealed_atomic
def flag_stale(key: ApiKey, *, actor, reason: str) -> bool:
    """Mark a live key unused for too long as stale."""
    return _flag(key, "stale", LifecycleAction.FLAG_STALE, actor=actor, reason=reason,
                 details=lambda key: {"last_used_at": key.last_used_at.isoformat() if key.last_used_at else "never"})


@sealed_atomic
def clear_stale(key: ApiKey, *, actor, reason: str) -> bool:
    """Lift the stale flag of a key that is in use again. Returns whether it was lifted now."""
    return clear_stale_keys({key.pk: reason}, actor=actor) == 1


@sealed_atomic
def clear_stale_keys(reasons: dict[int, str], *, actor) -> int:
    """Lift the stale flag of the keys in ``reasons`` (key id -> why), each recorded as ``clear_stale`` records
    one: a history record and a lifecycle event with the actor and that key's reason. Keys no longer stale
    are left alone. A fixed number of statements however many keys (a usage batch lifts hundreds at once).
    Returns how many were lifted now.
    """
    reasons = {key_id: _require_reason(reason) for key_id, reason in reasons.items()}
    keys = list(ApiKey.objects.select_for_update().filter(pk__in=reasons, stale=True).order_by("pk"))
    if not keys:
        return 0
    now = timezone.now()
    for key in keys:
        key.stale = False
        key.updated_at = now  # what save()'s auto_now would write
        attribute_change(key, actor, reasons[key.pk])
    bulk_update_with_history(keys, ApiKey, ["stale", "updated_at"], default_user=actor, default_change_reason="")
    bulk_create_rows([
        LifecycleEvent(key=key, action=LifecycleAction.CLEAR_STALE, from_status=key.status, to_status=key.status,
                       actor=actor, reason=reasons[key.pk],
                       details={"last_used_at": key.last_used_at.isoformat() if key.last_used_at else "never"})
        for key in keys
    ], LifecycleEvent)
    return len(keys)


@sealed_atomic
def flag_rotation_due(key: ApiKey, *, actor, reason: str, owner_changed_at: datetime.datetime) -> bool:
    """Record, once per ownership change, that the key has not been rotated since its owner changed.

    Returns whether the flag was recorded now: not when the key was rotated after the change, is
    revoked or expired, or was already flagged for this change.
    """
    key = ApiKey.objects.select_for_update().get(pk=key.pk)
    if key.is_final or (key.last_rotated_at and key.last_rotated_at >= owner_changed_at):
        return False
    if key.events.filter(action=LifecycleAction.FLAG_ROTATION, at__gte=owner_changed_at).exists():
        return False
    key.rotation_required = True
    _record(key, LifecycleAction.FLAG_ROTATION, actor, _require_reason(reason), key.status,
            {"owner_changed_at": owner_changed_at.isoformat()})
    return True


@sealed_atomic
def suspend_for_release(key: ApiKey, *, actor, reason: str, details: dict | None = None) -> tuple[ApiKey, str]:
    """Suspend a released key for its grace window; returns the key and the status it had before."""
    key = _locked(key, LifecycleAction.RELEASE_GRACE)
    from_status = key.status
    key.status = KeyStatus.SUSPENDED
    key.status_changed_at = timezone.now()
    _record(key, LifecycleAction.RELEASE_GRACE, actor, _require_reason(reason), from_status, details)
    return key, from_status


@sealed_atomic
def roll_back_release(key: ApiKey, *, actor, reason: str, to_status: str, details: dict | None = None) -> ApiKey:
    """Undo a release in its grace window: the key returns to the status it had before (active or suspended)."""
    if to_status not in (KeyStatus.ACTIVE, KeyStatus.SUSPENDED):
        raise LifecycleError("A release can only be rolled back to an active or suspended key.")
    key = _locked(key, LifecycleAction.ROLL_BACK_RELEASE)
    from_status = key.status
    key.status = to_status
    key.status_changed_at = timezone.now()
    _record(key, LifecycleAction.ROLL_BACK_RELEASE, actor, _require_reason(reason), from_status, details)
    return key


def scope_change_refusal(key: ApiKey) -> str:
    """Why the key's scopes may not change now ("" if they may): a departed owner's key is frozen until
    a successor has accepted it."""
    if key.orphaned:
        return "The key's owner has left: its scopes are frozen until a successor accepts it."
    return ""


def open_revocation_request(
    key: ApiKey, *, actor, reason_code: str, reason: str, emergency: bool = False
) -> RevocationRequest:
    """Open the request that carries a revocation to the key's issuing system.

    Called by ``revoke_key`` inside its transaction. Webhook systems: the delivery task is
    enqueued once the transaction commits (and ``retry_due_revocations`` catches it if that enqueue
    is lost). Manual systems: the request waits for an admin's confirmation.
    """
    system = key.issuing_system
    webhook = system.kind == IssuingSystemKind.WEBHOOK
    request = RevocationRequest(
        key=key,
        issuing_system=system,
        reason_code=reason_code,
        reason=reason,
        requested_by=actor,
        emergency=emergency,
        status=RevocationRequestStatus.PENDING if webhook else RevocationRequestStatus.AWAITING_CONFIRMATION,
    )
    attribute_change(request, actor, f"Revocation requested: {reason}")
    request.save()
    if webhook:
        enqueue_on_commit("keys.tasks.deliver_revocation", request.pk)
    return request
