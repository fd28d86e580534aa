"""Revocation that reaches the issuer: one RevocationRequest per revoked key, carried until done.

Webhook issuing systems get a signed HTTP POST from a Celery task, retried with exponential backoff
until the issuer answers 2xx; every call is recorded as a RevocationAttempt. Manual issuing systems
wait for an admin to confirm that the key was revoked at the source. A key's ``revocation_state``
stays "awaiting the issuer" until one of the two happens.

Signing (documented for issuers in the README): the body is JSON; ``X-Keys-Timestamp`` is the Unix
time of the call and ``X-Keys-Signature`` is ``v1=`` + hex HMAC-SHA256 over ``f"{timestamp}.{body}"``
under the issuing system's secret, itself HMAC-SHA256(WEBHOOK_SIGNING_KEY, ``issuing-system:<id>``).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import logging
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.utils import timezone

from core.actors import system_user
from core.chain import sealed_atomic
from core.errors import ServiceError
from core.history import attribute_change
from keys.choices import (
    CONFIRMABLE_REVOCATION_STATUSES,
    SENDABLE_REVOCATION_STATUSES,
    IssuingSystemKind,
    RevocationRequestStatus,
)
from keys.models import IssuingSystem, RevocationAttempt, RevocationRequest
from keys.services import lifecycle

log = logging.getLogger(__name__)

SIGNATURE_VERSION = "v1"
# Longest backoff between two calls, whatever the attempt number.
MAX_BACKOFF = datetime.timedelta(hours=6)
# A claimed call that has not reported back after this long is presumed lost with its worker.
LEASE_MARGIN = datetime.timedelta(seconds=60)
# Clocks of the worker that scheduled a retry and the one running it may differ slightly.
CLOCK_TOLERANCE = datetime.timedelta(seconds=2)
RESPONSE_EXCERPT = 500
NO_RESULT = "No result recorded: the worker stopped before the issuer's answer was saved."


class RevocationError(ServiceError):
    """A refused revocation step (confirming what is not awaiting confirmation...)."""


@dataclass(frozen=True)
class DeliveryOutcome:
    """What one delivery run did; ``retry_in`` is set when another call is scheduled."""

    status: str
    retry_in: float | None = None


def signing_secret(system: IssuingSystem | int) -> str:
    """The issuing system's webhook secret (hex), derived from WEBHOOK_SIGNING_KEY: never stored."""
    pk = system if isinstance(system, int) else system.pk
    if not settings.WEBHOOK_SIGNING_KEY:
        raise RevocationError("WEBHOOK_SIGNING_KEY is not set: revocation calls cannot be signed.")
    return hmac.new(settings.WEBHOOK_SIGNING_KEY.encode(), f"issuing-system:{pk}".encode(), hashlib.sha256).hexdigest()


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Keys-Signature`` value for a body sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION}={digest}"


def backoff(attempt: int) -> datetime.timedelta:
    """Wait after the ``attempt``-th failed call: base, 2x base, 4x base..., capped."""
    seconds = settings.REVOCATION_BACKOFF_SECONDS * 2 ** max(attempt - 1, 0)
    return min(datetime.timedelta(seconds=seconds), MAX_BACKOFF)


def lease() -> datetime.timedelta:
    return datetime.timedelta(seconds=settings.REVOCATION_TIMEOUT_SECONDS * 2) + LEASE_MARGIN


def payload(request: RevocationRequest) -> dict:
    """The JSON body of the revocation call. Never contains a secret (the portal has none)."""
    key = request.key
    return {
        "event": "key.revoke",
        "request_id": request.pk,
        "key_id": key.pk,
        "prefix": key.prefix,
        "label": key.label,
        "customer": key.workflow.customer.external_id,
        "workflow": key.workflow.name,
        "reason_code": request.reason_code,
        "reason": request.reason,
        "requested_at": request.requested_at.isoformat(),
        "emergency": request.emergency,
    }


@sealed_atomic
def confirm_revocation(request: RevocationRequest, *, actor, reference: str) -> RevocationRequest:
    """An admin confirms the key was revoked at the source (manual systems, or a webhook that gave up).

    The reference (ticket, change number) is kept as evidence; a request is confirmed once.
    """
    reference = (reference or "").strip()
    if not reference:
        raise RevocationError("Give a reference for the revocation at the source (ticket or change number).",
                              field="reference")
    request = RevocationRequest.objects.select_for_update().get(pk=request.pk)
    if request.status not in CONFIRMABLE_REVOCATION_STATUSES:
        raise RevocationError(f"This revocation is {request.get_status_display().lower()}: nothing to confirm.")
    request.status = RevocationRequestStatus.CONFIRMED
    request.confirmed_by = actor
    request.confirmed_at = timezone.now()
    request.issuer_reference = reference[:200]
    attribute_change(request, actor, f"Confirmed at the source: {reference}")
    request.save()
    lifecycle.confirm_revocation_at_issuer(
        request.key, actor=actor, reason=f"Revocation confirmed at {request.issuing_system.name} by an admin",
        details={"request": request.pk, "reference": reference},
    )
    return request


def deliver(request_id: int) -> DeliveryOutcome:
    """Make one signed revocation call for the request if it is due, and record its outcome.

    The request row is locked only to claim the call (``skip_locked``: a request another worker is
    claiming is left to it). The claim counts the attempt and pushes ``next_attempt_at`` past the
    call's lease, so a second delivery of the same task does nothing while the call is under way,
    and a call whose worker died is due again once the lease runs out. Nothing is sent once the
    issuer has acknowledged.
    """
    claim = _claim(request_id)
    if isinstance(claim, DeliveryOutcome):
        return claim
    request, attempt = claim
    started = time.monotonic()
    try:
        status_code, error, reference = _post(request)
    except RevocationError as exc:
        status_code, error, reference = None, str(exc), ""
    duration_ms = int((time.monotonic() - started) * 1000)
    return _settle(request.pk, attempt.pk, status_code, error, reference, duration_ms)


def _claim(request_id: int) -> tuple[RevocationRequest, RevocationAttempt] | DeliveryOutcome:
    now = timezone.now()
    with sealed_atomic():
        request = (
            RevocationRequest.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("key__workflow__customer", "issuing_system")
            .filter(pk=request_id)
            .first()
        )
        if request is None:
            exists = RevocationRequest.objects.filter(pk=request_id).exists()
            return DeliveryOutcome("busy" if exists else "missing")
        if request.status not in SENDABLE_REVOCATION_STATUSES:
            return DeliveryOutcome(request.status)
        if request.next_attempt_at and request.next_attempt_at > now + CLOCK_TOLERANCE:
            return DeliveryOutcome("not_due")
        # A call claimed earlier whose worker never reported back.
        for stale in RevocationAttempt.objects.filter(request=request, status_code__isnull=True, error=""):
            stale.error = NO_RESULT
            attribute_change(stale, system_user(), "the worker never reported the call's result")
            stale.save()
        request.attempts += 1
        request.next_attempt_at = now + lease()
        attribute_change(request, system_user(), f"Call {request.attempts} to {request.issuing_system.name}")
        request.save()
        attempt = RevocationAttempt(
            request=request, number=request.attempts, at=now, url=request.issuing_system.revoke_url[:200]
        )
        attribute_change(attempt, system_user(), f"call {request.attempts} to {request.issuing_system.name}")
        attempt.save()
    return request, attempt


def _settle(request_id: int, attempt_id: int, status_code: int | None, error: str, reference: str,
            duration_ms: int) -> DeliveryOutcome:
    succeeded = status_code is not None and 200 <= status_code < 300
    now = timezone.now()
    actor = system_user()
    with sealed_atomic():
        request = RevocationRequest.objects.select_for_update().select_related("issuing_system").get(pk=request_id)
        attempt = RevocationAttempt.objects.select_for_update().get(pk=attempt_id)
        attempt.status_code, attempt.error = status_code, error[:2000]
        attempt.duration_ms, attempt.succeeded = duration_ms, succeeded
        attribute_change(attempt, actor, f"result of call {attempt.number}: {status_code or 'no answer'}")
        attempt.save()
        system = request.issuing_system.name
        if request.status not in SENDABLE_REVOCATION_STATUSES:
            # Settled meanwhile (an admin confirmed it by hand): keep the record of the call only.
            return DeliveryOutcome(request.status)
        if succeeded:
            request.status = RevocationRequestStatus.ACKNOWLEDGED
            request.acknowledged_at = now
            request.next_attempt_at = None
            request.last_error = ""
            request.issuer_reference = reference[:200]
            attribute_change(request, actor, f"Acknowledged by {system} (HTTP {status_code})")
            request.save()
            lifecycle.confirm_revocation_at_issuer(
                request.key, actor=actor, reason=f"Revocation acknowledged by {system} (HTTP {status_code})",
                details={"request": request.pk, "attempt": request.attempts, "reference": reference},
            )
            return DeliveryOutcome(request.status)
        request.last_error = error[:2000]
        if request.attempts >= settings.REVOCATION_MAX_ATTEMPTS:
            request.status = RevocationRequestStatus.GAVE_UP
            request.next_attempt_at = None
            attribute_change(request, actor, f"Gave up after {request.attempts} calls to {system}")
            request.save()
            log.warning("revocation request %s: gave up after %s calls: %s", request.pk, request.attempts, error)
            return DeliveryOutcome(request.status)
        wait = backoff(request.attempts)
        request.status = RevocationRequestStatus.RETRYING
        request.next_attempt_at = now + wait
        attribute_change(request, actor, f"Call {request.attempts} failed; retry in {int(wait.total_seconds())}s")
        request.save()
        log.info("revocation request %s: call %s failed (%s); retry in %s", request.pk, request.attempts, error, wait)
        return DeliveryOutcome(request.status, retry_in=wait.total_seconds())


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is not an acknowledgement: report the 3xx instead of following it."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def _post(request: RevocationRequest) -> tuple[int | None, str, str]:
    """POST the signed body; returns (HTTP status or None, error text, issuer's reference)."""
    url = request.issuing_system.revoke_url
    if urlsplit(url).scheme not in {"http", "https"}:
        raise RevocationError(f"The issuing system's revoke URL is not an http(s) URL: {url!r}.")
    body = json.dumps(payload(request), separators=(",", ":"), sort_keys=True).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "keys-portal-revocation/1",
        "X-Keys-Timestamp": timestamp,
        "X-Keys-Signature": sign(signing_secret(request.issuing_system_id), timestamp, body),
        "Idempotency-Key": f"revocation-{request.pk}",
    }
    http_request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    opener = urllib.request.build_opener(_NoRedirects)
    try:
        with opener.open(http_request, timeout=settings.REVOCATION_TIMEOUT_SECONDS) as response:
            answer = response.read(RESPONSE_EXCERPT + 1)
            return response.status, "", _issuer_reference(answer)
    except urllib.error.HTTPError as exc:
        excerpt = exc.read(RESPONSE_EXCERPT).decode("utf-8", "replace") if exc.fp else ""
        return exc.code, f"HTTP {exc.code} {exc.reason}: {excerpt}".strip(": "), ""
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return None, f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}", ""


def _issuer_reference(answer: bytes) -> str:
    """The issuer's own id for the revocation, if its answer is JSON with a ``reference``."""
    try:
        data = json.loads(answer[:RESPONSE_EXCERPT])
    except ValueError:
        return ""
    return str(data.get("reference", ""))[:200] if isinstance(data, dict) else ""


def retry_due(now: datetime.datetime | None = None, unsent_after: datetime.timedelta | None = None) -> list[int]:
    """Webhook requests that should have been sent by now: due retries, lapsed claims, lost enqueues."""
    now = now or timezone.now()
    unsent_after = unsent_after if unsent_after is not None else datetime.timedelta(minutes=2)
    sendable = RevocationRequest.objects.filter(
        status__in=SENDABLE_REVOCATION_STATUSES, issuing_system__kind=IssuingSystemKind.WEBHOOK
    )
    due = sendable.filter(next_attempt_at__lte=now) | sendable.filter(
        next_attempt_at__isnull=True, requested_at__lte=now - unsent_after
    )
    return list(due.order_by("requested_at").values_list("pk", flat=True))
