"""Exposures: a found secret (or its fingerprint) reported by anyone signed in, or by an integration.

A reported secret is fingerprinted at once under every pepper still known and dropped: it is never
stored, logged or returned, and is cut out of the location and notes should it have been pasted
there. A match records the Exposure against the key, revokes a live key as an emergency (reason
``exposed``, through ``lifecycle.revoke_key``, which opens the revocation request to the issuer) and
tells the owner and compliance by email. Without a match the Exposure is kept with no key.

What the reporter is told is the caller's business (views): someone who may not see the matched
key must get the same answer as for no match at all.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import transaction
from django.views.decorators.debug import sensitive_variables

from core import roles
from core.actors import system_user
from core.chain import sealed_atomic
from core.errors import ServiceError
from core.history import attribute_change
from keys.choices import ExposureSource, RevocationReason
from keys.fingerprints import MIN_SECRET_LENGTH, candidate_fingerprints, identity_refusal, normalise_fingerprint
from keys.models import ApiKey, Exposure
from keys.services import lifecycle

log = logging.getLogger(__name__)
User = get_user_model()

REDACTED = "[redacted secret]"


class ExposureError(ServiceError):
    """A refused exposure report."""


@sensitive_variables("secret")
def report_exposure(
    *, reporter, source: str, secret: str | None = None, fingerprint: str | None = None, location: str,
    notes: str = "",
) -> Exposure:
    """Record a reported leak and, when it matches a key, start the key's emergency revocation."""
    errors: dict[str, list[str]] = {}
    secret = secret or ""
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
        if key is not None:
            _respond(exposure, key, reporter)
    log.info("exposure %s reported by %s: %s", exposure.pk, reporter.get_username() if reporter else "-",
             f"matched key {key.pk}" if key else "no match")
    return exposure


def _respond(exposure: Exposure, key: ApiKey, reporter) -> None:
    reported_by = reporter.get_username() if reporter else "an integration"
    revoked = False
    if not key.is_final:
        lifecycle.revoke_key(
            key, actor=system_user(), reason_code=RevocationReason.EXPOSED, emergency=True,
            reason=f"Secret exposed (exposure #{exposure.pk}, reported by {reported_by}): found at {exposure.location}",
        )
        revoked = True
        key.refresh_from_db(fields=["status", "status_changed_at", "revocation_reason", "revocation_state"])
    recipients = sorted({
        *([key.owner.email] if key.owner.email and key.owner.is_active else []),
        *User.objects.filter(groups__name=roles.COMPLIANCE, is_active=True).exclude(email="")
        .values_list("email", flat=True),
    })
    if not recipients:
        log.warning("exposure %s of key %s: nobody to tell by email", exposure.pk, key.pk)
        return
    state = ("It has been revoked as an emergency; the revocation is being carried to the issuing system."
             if revoked else f"The key was already {key.get_status_display().lower()}: check that the issuer "
                             "no longer accepts it.")
    subject = f"[Keys portal] API key exposed: {key.label} ({key.prefix}…)"
    body = (
        f"The secret of the API key {key.label} ({key.prefix}…) of {key.workflow.customer.name} / "
        f"{key.workflow.name} was reported exposed by {reported_by}.\n\n"
        f"Found at: {exposure.location}\n\n{state}\n\n"
        f"Key: {settings.SITE_URL}{key.get_absolute_url()}\n"
        f"Exposure record #{exposure.pk}.\n"
    )

    def notify():
        for recipient in recipients:
            send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [recipient])

    transaction.on_commit(notify)
