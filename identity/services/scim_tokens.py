"""SCIM tokens: the bearer tokens an identity provider (Okta, Entra ID) provisions people with.

A token is shown once, when it is created; only its SHA-256 is stored. Each acts as a service account named
after it (``scim:<name>``, created with the first token of that name and shared by later ones, so a rotated
token records its changes under the same actor). The account cannot sign in: it exists to be named in history.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.utils.text import slugify

from core import issued_tokens, roles
from core.chain import sealed_atomic
from core.errors import ServiceError
from core.history import attribute_change
from core.issued_tokens import hash_token
from core.validators import field_errors
from identity.models import ScimToken

User = get_user_model()

TOKEN_PREFIX = "scim_"
# "scim_" and 8 characters: enough to tell tokens apart in a list, a negligible part of the secret.
SHOWN_PREFIX_LENGTH = 13
SERVICE_ACCOUNT_PREFIX = "scim:"


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
    plaintext = issued_tokens.new_plaintext(TOKEN_PREFIX)
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
    return issued_tokens.revoke(token, actor=actor, reason=reason.strip() or "SCIM token revoked")


def authenticate(plaintext: str) -> ScimToken | None:
    """The active token with this plaintext, or None (unknown, malformed or revoked)."""
    token = issued_tokens.find(ScimToken.objects.select_related("acts_as"), plaintext, prefix=TOKEN_PREFIX)
    return token if token is not None and token.is_active else None
