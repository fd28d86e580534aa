"""Single sign-on settings, and the provider's endpoints from its discovery document.

Single sign-on is on once ``OIDC_ISSUER`` and ``OIDC_RP_CLIENT_ID`` are set. The endpoints come from the
issuer's ``/.well-known/openid-configuration``, fetched once per process and kept; an endpoint set
explicitly (``OIDC_OP_*``) wins over the discovered one, and with all four set nothing is fetched.
"""

import logging
import threading

import requests
from django.conf import settings

log = logging.getLogger(__name__)

# Discovery document field -> the setting that overrides it.
ENDPOINT_SETTINGS = {
    "authorization_endpoint": "OIDC_OP_AUTHORIZATION_ENDPOINT",
    "token_endpoint": "OIDC_OP_TOKEN_ENDPOINT",
    "userinfo_endpoint": "OIDC_OP_USER_ENDPOINT",
    "jwks_uri": "OIDC_OP_JWKS_ENDPOINT",
}
DISCOVERY_PATH = "/.well-known/openid-configuration"

_lock = threading.Lock()
_documents: dict[str, dict] = {}


class ProviderUnavailable(Exception):
    """The identity provider's discovery document could not be read (or does not fit the issuer)."""


def enabled() -> bool:
    return bool(settings.OIDC_ISSUER and settings.OIDC_RP_CLIENT_ID)


def provider_name() -> str:
    return settings.OIDC_PROVIDER_NAME


def issuer() -> str:
    return settings.OIDC_ISSUER.rstrip("/")


def discovery_document(issuer_url: str) -> dict:
    """The issuer's discovery document, fetched on first use and kept for the life of the process."""
    with _lock:
        document = _documents.get(issuer_url)
    if document is not None:
        return document
    url = issuer_url.rstrip("/") + DISCOVERY_PATH
    try:
        response = requests.get(url, timeout=settings.OIDC_TIMEOUT, verify=settings.OIDC_VERIFY_SSL)
        response.raise_for_status()
        document = response.json()
    except (requests.RequestException, ValueError) as error:
        log.warning("single sign-on: could not read %s: %s", url, error)
        raise ProviderUnavailable(f"could not read {url}") from error
    if not isinstance(document, dict) or str(document.get("issuer", "")).rstrip("/") != issuer_url.rstrip("/"):
        named = document.get("issuer") if isinstance(document, dict) else None
        log.warning("single sign-on: %s names another issuer (%r)", url, named)
        raise ProviderUnavailable(f"{url} does not describe the issuer {issuer_url}")
    with _lock:
        _documents[issuer_url] = document
    log.info("single sign-on: endpoints of %s read from its discovery document", issuer_url)
    return document


def forget_discovery() -> None:
    """Drop the kept discovery documents (the next sign-in fetches them again)."""
    with _lock:
        _documents.clear()


def endpoints() -> dict[str, str]:
    """The provider's authorization, token, userinfo and JWKS endpoints (discovery document field names)."""
    explicit = {field: getattr(settings, name, "") or "" for field, name in ENDPOINT_SETTINGS.items()}
    if all(explicit.values()):
        return explicit
    document = discovery_document(issuer())
    found = {field: explicit[field] or str(document.get(field) or "") for field in ENDPOINT_SETTINGS}
    for field in ("authorization_endpoint", "token_endpoint"):
        if not found[field]:
            raise ProviderUnavailable(f"the provider names no {field}")
    return found


def second_factor_at_provider(id_token_claims: dict) -> str:
    """How the provider says it checked a second factor (the ID token's ``amr`` or ``acr``), or "" if it did not.

    ``amr`` values counted are OIDC_MFA_AMR_VALUES (RFC 8176 methods: mfa, otp, hwk, ...); an ``acr`` counts
    when it is one of OIDC_MFA_ACR_VALUES (the provider's own names for a multi-factor level)."""
    methods = id_token_claims.get("amr") or []
    if isinstance(methods, str):
        methods = methods.split()
    counted = [str(method) for method in methods if str(method) in settings.OIDC_MFA_AMR_VALUES]
    if counted:
        return "amr " + " ".join(counted)
    level = id_token_claims.get("acr")
    if level and str(level) in settings.OIDC_MFA_ACR_VALUES:
        return f"acr {level}"
    return ""
