"""Integration tokens: API credentials for machine integrations, scoped to an issuing system or a customer.

A token is shown once, when it is created; only its SHA-256 is stored. A request authenticated by
one acts as the token's service account but sees and changes only the keys of its scope (its
issuing system, its customer, or both), and may use only the endpoints that declare
``integration_token_actions`` (registering keys, reporting usage and exposures, reading status):
never campaigns, attestations or exceptions.
"""

from __future__ import annotations

from django.db.models import Q

from core import issued_tokens, roles
from core.chain import sealed_atomic
from core.errors import ServiceError
from core.history import attribute_change
from core.issued_tokens import hash_token
from core.validators import field_errors
from keys.models import Customer, IntegrationToken, IssuingSystem

TOKEN_PREFIX = "kpt_"
# "kpt_" and 8 characters: enough to tell tokens apart in a list, a negligible part of the secret.
SHOWN_PREFIX_LENGTH = 12


class TokenError(ServiceError):
    """A refused token operation."""


@sealed_atomic
def create_token(
    *, actor, name: str, acts_as, issuing_system: IssuingSystem | None = None, customer: Customer | None = None
) -> tuple[IntegrationToken, str]:
    """Create a token (admins only) and return it with its plaintext, which is never stored or shown again.

    The token must be scoped (issuing system, customer, or both: then keys of that customer minted
    by that system). Its service account must be an active account without the admin or compliance
    role, and not a customer contact: the token's rights come from its scope, never from a person's role.
    """
    if not roles.is_admin(actor):
        raise TokenError("Only admins create integration tokens.")
    errors: dict[str, list[str]] = {}
    name = (name or "").strip()
    if not name:
        errors["name"] = ["A name is required."]
    elif len(name) > 200:
        errors["name"] = ["A name is at most 200 characters."]
    else:
        errors.update(field_errors(IntegrationToken, name=name))
    if issuing_system is None and customer is None:
        errors["issuing_system"] = ["Scope the token to an issuing system or a customer."]
    if acts_as is None:
        errors["acts_as"] = ["Name the service account the integration's changes are recorded under."]
    elif not acts_as.is_active:
        errors["acts_as"] = ["The service account is inactive."]
    elif roles.sees_everything(acts_as) or acts_as.is_superuser:
        errors["acts_as"] = ["Choose a service account without the admin or compliance role."]
    elif roles.is_customer_contact(acts_as):
        errors["acts_as"] = ["Choose a service account, not a customer contact."]
    elif roles.is_auditor(acts_as):
        errors["acts_as"] = ["Choose a service account, not an auditor."]
    if errors:
        raise TokenError(errors)
    plaintext = issued_tokens.new_plaintext(TOKEN_PREFIX)
    token = IntegrationToken(
        name=name,
        token_prefix=plaintext[:SHOWN_PREFIX_LENGTH],
        token_hash=hash_token(plaintext),
        issuing_system=issuing_system,
        customer=customer,
        acts_as=acts_as,
        created_by=actor,
    )
    attribute_change(token, actor, "Token created")
    token.save()
    return token, plaintext


@sealed_atomic
def revoke_token(token: IntegrationToken, *, actor, reason: str = "") -> IntegrationToken:
    """Revoke a token (admins only): it is refused from the next request on. Revoking twice changes nothing."""
    if not roles.is_admin(actor):
        raise TokenError("Only admins revoke integration tokens.")
    return issued_tokens.revoke(token, actor=actor, reason=reason.strip() or "Token revoked")


def find_token(plaintext: str) -> IntegrationToken | None:
    """The token with this plaintext, revoked or not; None when there is none."""
    return issued_tokens.find(IntegrationToken.objects.select_related("acts_as"), plaintext, prefix=TOKEN_PREFIX)


def request_token(request) -> IntegrationToken | None:
    """The integration token a (DRF) request was authenticated with, if any."""
    auth = getattr(request, "auth", None)
    return auth if isinstance(auth, IntegrationToken) else None


def key_scope_q(token: IntegrationToken, prefix: str = "") -> Q:
    """The keys a token may see and act on. ``prefix`` reaches the key through a relation (``key__``)."""
    q = Q()
    if token.issuing_system_id is not None:
        q &= Q(**{f"{prefix}issuing_system_id": token.issuing_system_id})
    if token.customer_id is not None:
        q &= Q(**{f"{prefix}workflow__customer_id": token.customer_id})
    return q


def customer_scope_q(token: IntegrationToken) -> Q:
    """The customers a token may read: its customer, or those with keys on its issuing system."""
    return _reached_q(token, customer="pk", from_keys="keys__workflow__customer_id")


def workflow_scope_q(token: IntegrationToken) -> Q:
    """The workflows a token may read: its customer's, or those with keys on its issuing system."""
    return _reached_q(token, customer="customer_id", from_keys="keys__workflow_id")


def _reached_q(token: IntegrationToken, *, customer: str, from_keys: str) -> Q:
    """Rows of the token's customer (``customer`` looks it up), reached by keys of its issuing system (``from_keys``
    goes from the issuing system to the row)."""
    q = Q()
    if token.customer_id is not None:
        q &= Q(**{customer: token.customer_id})
    if token.issuing_system_id is not None:
        q &= Q(pk__in=IssuingSystem.objects.filter(pk=token.issuing_system_id).values(from_keys))
    return q


def in_scope(token: IntegrationToken, *, workflow, issuing_system) -> bool:
    """Whether a key of ``workflow`` minted by ``issuing_system`` falls within the token's scope."""
    if token.issuing_system_id is not None and issuing_system.pk != token.issuing_system_id:
        return False
    return not (token.customer_id is not None and workflow.customer_id != token.customer_id)
