"""What every token the portal issues to a machine client shares (``core.models.IssuedToken``): a new token, its
hash, finding it again, revoking it and noting its use. The kinds (integration tokens, SCIM tokens) add who may
issue them, their scope and their service account."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import ipaddress
import secrets

from django.utils import timezone

from core.history import attribute_change
from core.models import IssuedToken

# last_used_at/from are written at most this often per token, not on every request.
LAST_USED_RESOLUTION = datetime.timedelta(minutes=1)


def hash_token(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def new_plaintext(prefix: str) -> str:
    """A new token: ``prefix`` (which tells the kinds apart) and 256 random bits."""
    return prefix + secrets.token_urlsafe(32)


def find(queryset, plaintext: str, *, prefix: str) -> IssuedToken | None:
    """The token of ``queryset`` with this plaintext, revoked or not; None for an unknown or malformed one."""
    if not plaintext.startswith(prefix):
        return None
    digest = hash_token(plaintext)
    token = queryset.filter(token_hash=digest).first()
    if token is None or not hmac.compare_digest(token.token_hash, digest):
        return None
    return token


def revoke(token: IssuedToken, *, actor, reason: str) -> IssuedToken:
    """Revoke ``token`` under a row lock (the caller's transaction, which seals the history): refused from the next
    request on. Revoking twice changes nothing."""
    token = type(token).objects.select_for_update().get(pk=token.pk)
    if token.revoked_at is not None:
        return token
    token.revoked_at = timezone.now()
    attribute_change(token, actor, reason)
    token.save()
    return token


def record_use(token: IssuedToken, address: str | None) -> None:
    """When and from where the token was last used: telemetry, kept out of its history (a plain UPDATE), written at
    most once a minute per token and address."""
    now = timezone.now()
    try:
        address = str(ipaddress.ip_address(address)) if address else None
    except ValueError:
        address = None
    if token.last_used_at and now - token.last_used_at < LAST_USED_RESOLUTION and token.last_used_from == address:
        return
    type(token).objects.filter(pk=token.pk).update(last_used_at=now, last_used_from=address)
