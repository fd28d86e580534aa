"""Exposures: a found secret (or its fingerprint) reported by admins, compliance, key owners and stewards, or
an integration; never by a customer contact.

A reported secret is fingerprinted at once under every pepper still known and dropped: it is never
stored, logged or returned, and is cut out of the location and notes should it have been pasted
there. A match records the Exposure against the key and tells the owner and compliance by email.
Who may revoke the key on a report: the secret itself is proof of possession and revokes a live key as
an emergency (reason ``exposed``, through ``lifecycle.revoke_key``, which opens the revocation request
to the issuer) whoever reports it. A fingerprint is not secret (key pages and evidence PDFs show it):
on its own it revokes only a key the reporter may see; otherwise it opens an ``ExposureTriage`` and
compliance decides (``triage_exposure``). Without a match the Exposure is kept with no key.

What the reporter is told is the caller's business (views), through ``key_shown_to``: someone who may
not see the matched key gets the same answer as for no match at all.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from core import roles
from core.actors import system_user
from core.chain import sealed_atomic
from core.errors import ServiceError
from core.history import attribute_change
from keys.choices import ExposureSource, RevocationReason, TriageStatus
from keys.fingerprints import MIN_SECRET_LENGTH, candidate_fingerprints, identity_refusal, normalise_fingerprint
from keys.models import ApiKey, Exposure, ExposureTriage, IntegrationToken
from keys.services import lifecycle
from keys.services.tokens import key_scope_q

log = logging.getLogger(__name__)
User = get_user_model()

REDACTED = "[redacted secret]"


class ExposureError(ServiceError):
    """A refused exposure report or triage."""


class NotAllowedToReport(ExposureError):
    """The reporter's role does not allow reporting exposures (a customer contact, an account without a role)."""


def may_report(user, token: IntegrationToken | None = None) -> bool:
    """Admins, compliance, owners and stewards (the owner role, or anyone who owns or stewards a key), and
    integration tokens (the endpoints admit those that may report); never a customer contact."""
    if token is not None:
        return token.is_active
    if not user.is_authenticated or roles.is_customer_contact(user):
        return False
    if roles.sees_everything(user) or roles.is_owner(user):
        return True
    return ApiKey.objects.filter(Q(owner=user) | Q(steward=user)).exists()


def sees_key(user, key: ApiKey, token: IntegrationToken | None = None) -> bool:
    """Whether the reporter may see ``key``: an integration token's scope, or ``ApiKey.objects.visible_to``."""
    keys = ApiKey.objects.filter(key_scope_q(token)) if token is not None else ApiKey.objects.visible_to(user)
    return keys.filter(pk=key.pk).exists()


def key_shown_to(exposure: Exposure, user, token: IntegrationToken | None = None) -> ApiKey | None:
    """The matched key, if the reporter may see it; None otherwise, as for no match at all."""
    key = exposure.key
    return key if key is not None and sees_key(user, key, token) else None


@sensitive_variables("secret")
def report_exposure(
    *, reporter, source: str, secret: str | None = None, fingerprint: str | None = None, location: str,
    notes: str = "", token: IntegrationToken | None = None,
) -> Exposure:
    """Record a reported leak and, when it matches a key, start the key's emergency revocation: on the secret
    itself, or on a fingerprint of a key the reporter (``token``: the integration's scope) may see; any other
    fingerprint match opens a triage for compliance. The key's owner and compliance are told of every match."""
    if not may_report(reporter, token):
        raise NotAllowedToReport("Only admins, compliance, key owners and stewards, and integrations report "
                                 "exposures.")
    errors: dict[str, list[str]] = {}
    secret = secret or ""
    proof = bool(secret)
    location = (location or "").strip()
    notes = (notes or "").strip()
    refused = identity_refusal(has_secret=bool(secret), has_fingerprint=bool(fingerprint),
                               missing="Give the secret you found (it is fingerprinted and dropped) or its fingerprint.")
    if refused:
        errors["secret"] = [refused]
    elif secret and (len(secret) < MIN_SECRET_LENGTH or len(secret) > 512):
        errors["secret"] = [f"A secret is between {MIN_SECRET_LENGTH} and 512 characters."]
    candidates: list[str] = []
    if secret and not errors:
        candidates = candidate_fingerprints(secret)
        location, notes = location.replace(secret, REDACTED), notes.replace(secret, REDACTED)
    elif fingerprint and not errors:
        normalised = normalise_fingerprint(fingerprint)
        if normalised is None:
            errors["fingerprint"] = ["A fingerprint is 64 hexadecimal characters (HMAC-SHA256)."]
        else:
            candidates = [normalised]
    del secret
    if not location:
        errors["location"] = ["Say where the secret was found (a URL, repository, ticket...)."]
    elif len(location) > 500:
        errors["location"] = ["A location is at most 500 characters."]
    if len(notes) > 5000:
        errors["notes"] = ["Notes are at most 5000 characters."]
    if source not in ExposureSource.values:
        errors["source"] = ["Unknown source."]
    if errors:
        raise ExposureError(errors)
    with sealed_atomic():
        key = (
            ApiKey.objects.select_related("owner", "workflow__customer")
            .filter(fingerprint__in=candidates).first()
        )
        exposure = Exposure(
            key=key, fingerprint=key.fingerprint if key else candidates[0], location=location, notes=notes,
            source=source, reported_by=reporter,
        )
        attribute_change(exposure, reporter, "Exposure reported" + (" and matched" if key else ", no matching key"))
        exposure.save()
        outcome = "no match"
        if key is not None:
            outcome = _respond(exposure, key, reporter, trusted=proof or sees_key(reporter, key, token), proof=proof)
    log.info("exposure %s reported by %s: %s", exposure.pk, reporter.get_username() if reporter else "-",
             f"matched key {key.pk}, {outcome}" if key else outcome)
    return exposure


def _respond(exposure: Exposure, key: ApiKey, reporter, *, trusted: bool, proof: bool) -> str:
    """Revoke the key when the report is ``trusted`` (the secret itself, or a reporter who sees the key), else open
    a triage; tell the owner and compliance. Returns what was done, for the log."""
    reported_by = reporter.get_username() if reporter else "an integration"
    if key.is_final:
        state, outcome = (f"The key was already {key.get_status_display().lower()}: check that the issuer no longer "
                          "accepts it."), "key already final"
    elif trusted:
        how = "with the secret" if proof else "by fingerprint"
        lifecycle.revoke_key(
            key, actor=system_user(), reason_code=RevocationReason.EXPOSED, emergency=True,
            reason=f"Secret exposed (exposure #{exposure.pk}, reported by {reported_by} {how}): "
                   f"found at {exposure.location}",
        )
        state, outcome = ("It has been revoked as an emergency; the revocation is being carried to the issuing "
                          "system."), "revoked"
    else:
        triage = ExposureTriage(exposure=exposure)
        attribute_change(triage, reporter, "Fingerprint reported by someone who may not see the key")
        triage.save()
        state, outcome = ("Only the key's fingerprint was given, by someone who may not see the key, so the key was "
                          "not revoked: compliance will triage the report and revoke the key if the leak is "
                          "confirmed. Revoke or rotate it now if you know it leaked."), "triage opened"
    _tell_owner_and_compliance(exposure, key, f"was reported exposed by {reported_by}", state)
    return outcome


def _tell_owner_and_compliance(exposure: Exposure, key: ApiKey, what: str, state: str) -> None:
    key.refresh_from_db(fields=["status", "status_changed_at", "revocation_reason", "revocation_state"])
    recipients = sorted({
        *([key.owner.email] if key.owner.email and key.owner.is_active else []),
        *User.objects.filter(groups__name=roles.COMPLIANCE, is_active=True).exclude(email="")
        .values_list("email", flat=True),
    })
    if not recipients:
        log.warning("exposure %s of key %s: nobody to tell by email", exposure.pk, key.pk)
        return
    subject = f"[Keys portal] API key exposed: {key.label} ({key.prefix}…)"
    body = (
        f"The secret of the API key {key.label} ({key.prefix}…) of {key.workflow.customer.name} / "
        f"{key.workflow.name} {what}.\n\n"
        f"Found at: {exposure.location}\n\n{state}\n\n"
        f"Key: {settings.SITE_URL}{key.get_absolute_url()}\n"
        f"Exposure record #{exposure.pk}.\n"
    )

    def notify():
        for recipient in recipients:
            send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [recipient])

    transaction.on_commit(notify)


def triage_exposure(exposure: Exposure, *, actor, revoke: bool, reason: str) -> ExposureTriage:
    """Compliance (or an admin) decides an open triage, once: revoke the key as exposed (an emergency, the owner and
    compliance are told), or dismiss the report. A reason is recorded either way."""
    if not roles.sees_everything(actor):
        raise ExposureError("Only compliance and admins triage exposure reports.")
    reason = (reason or "").strip()
    if not reason:
        raise ExposureError("Say why the key is revoked or the report dismissed.", field="reason")
    with sealed_atomic():
        triage = (ExposureTriage.objects.select_for_update(of=("self",)).select_related("exposure__key")
                  .filter(exposure=exposure.pk).first())
        if triage is None:
            raise ExposureError("This report needs no triage.")
        if not triage.is_open:
            raise ExposureError(f"This report was already triaged ({triage.get_status_display().lower()}).")
        exposure, key = triage.exposure, triage.exposure.key
        triage.status = TriageStatus.REVOKED if revoke else TriageStatus.DISMISSED
        triage.decided_by, triage.decided_at, triage.decision_reason = actor, timezone.now(), reason
        attribute_change(triage, actor, f"{triage.get_status_display()}: {reason}")
        triage.save()
        if revoke and key is not None and not key.is_final:
            lifecycle.revoke_key(
                key, actor=actor, reason_code=RevocationReason.EXPOSED, emergency=True,
                reason=f"Secret exposed (exposure #{exposure.pk}, confirmed by {actor.get_username()}): {reason}",
            )
            _tell_owner_and_compliance(
                exposure, key, f"was confirmed exposed by {actor.get_username()} after a report of its fingerprint",
                "It has been revoked as an emergency; the revocation is being carried to the issuing system.")
    return triage
