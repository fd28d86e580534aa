"""SCIM tokens: the bearer tokens an identity provider (Okta, Entra ID) provisions people with.

A token is shown once, when it is created; only its SHA-256 is stored. Each acts as a service account named
after it (``scim:<name>``, created with the first token of that name and shared by later ones, so a rotated
token records its changes under the same actor). The account cannot sign in: it exists to be named in history.
"""

from __future__ import annotations

import datetime
import hmac
import ipaddress
import secrets

from django.contrib.auth import get_user_model
from django.utils import timezone
from django.utils.text import slugify

from core import roles
from core.chain import sealed_atomic
from core.errors import ServiceError
from core.history import attribute_change
from core.validators import field_errors
from identity.models import ScimToken
from keys.services.tokens import hash_token

User = get_user_model()

TOKEN_PREFIX = "scim_"
# "scim_" and 8 characters: enough to tell tokens apart in a list, a negligible part of the secret.
SHOWN_PREFIX_LENGTH = 13
SERVICE_ACCOUNT_PREFIX = "scim:"
# last_used_at/from are written at most this often per token, not on every request.
LAST_USED_RESOLUTION = datetime.timedelta(minutes=1)


class ScimTokenError(ServiceError):
    """A refused SCIM token operation."""


def service_accounts():
    """The accounts SCIM clients act as (never people, never provisioned)."""
    return User.objects.filter(username__startswith=SERVICE_ACCOUNT_PREFIX)


@sealed_atomic
def create_token(*, actor, name: str) -> tuple[ScimToken, str]:
    """Create a SCIM token (admins only) and return it with its plaintext, which is never stored or shown again."""
    if not roles.is_admin(actor):
        raise ScimTokenError("Only admins create SCIM tokens.")
    name = (name or "").strip()
    errors: dict[str, list[str]] = {}
    if not name:
        errors["name"] = ["A name is required, e.g. the identity provider's: “Okta”."]
    elif len(name) > 100:
        errors["name"] = ["A name is at most 100 characters."]
    else:
        errors.update(field_errors(ScimToken, name=name))
        if not errors and not slugify(name):
            errors["name"] = ["Use letters or digits in the name: it names the token's service account."]
    if errors:
        raise ScimTokenError(errors)
    account, created = User.objects.get_or_create(
        username=f"{SERVICE_ACCOUNT_PREFIX}{slugify(name)}"[:150],
        defaults={"is_active": False, "first_name": "SCIM client", "last_name": name[:150]},
    )
    if created:
        account.set_unusable_password()
        account.save(update_fields=["password"])
    plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ScimToken(name=name, token_prefix=plaintext[:SHOWN_PREFIX_LENGTH], token_hash=hash_token(plaintext),
                      acts_as=account, created_by=actor)
    attribute_change(token, actor, "SCIM token created")
    token.save()
    return token, plaintext


@sealed_atomic
def revoke_token(token: ScimToken, *, actor, reason: str = "") -> ScimToken:
    """Revoke a token (admins only): it is refused from the next request on. Revoking twice changes nothing."""
    if not roles.is_admin(actor):
        raise ScimTokenError("Only admins revoke SCIM tokens.")
    token = ScimToken.objects.select_for_update().get(pk=token.pk)
    if token.revoked_at is not None:
        return token
    token.revoked_at = timezone.now()
    attribute_change(token, actor, reason.strip() or "SCIM token revoked")
    token.save()
    return token


def authenticate(plaintext: str) -> ScimToken | None:
    """The active token with this plaintext, or None (unknown, malformed or revoked)."""
    if not plaintext.startswith(TOKEN_PREFIX):
        return None
    digest = hash_token(plaintext)
    token = ScimToken.objects.select_related("acts_as").filter(token_hash=digest).first()
    if token is None or not hmac.compare_digest(token.token_hash, digest) or token.revoked_at is not None:
        return None
    return token


def record_use(token: ScimToken, address: str | None) -> None:
    """When and from where the token was last used: telemetry, kept out of the token's history."""
    now = timezone.now()
    try:
        address = str(ipaddress.ip_address(address)) if address else None
    except ValueError:
        address = None
    if token.last_used_at and now - token.last_used_at < LAST_USED_RESOLUTION and token.last_used_from == address:
        return
    ScimToken.objects.filter(pk=token.pk).update(last_used_at=now, last_used_from=address)
