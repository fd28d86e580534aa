"""Audit of access: sign-ins, failed sign-ins and lock-outs, second-factor checks, exports downloaded
and API token use, each recorded with who, when and from where (``AccessRecord``)."""

import hashlib
import ipaddress
import logging
import re

from django.conf import settings
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from core.chain import sealed_atomic
from core.models import AccessAction, AccessRecord

log = logging.getLogger("portal.access")

# Set on a request whose sign-in core.address_limit refused (to when); such a refusal is no failed sign-in.
REFUSED_FOR_ADDRESS = "sign_in_refused_for_address"

USER_AGENT_MAX = AccessRecord._meta.get_field("user_agent").max_length
TARGET_MAX = AccessRecord._meta.get_field("target").max_length


def client_ip(request) -> str | None:
    """The client's address: REMOTE_ADDR, or with TRUST_X_FORWARDED_FOR the address the one trusted proxy
    in front appended to X-Forwarded-For (the right-most; anything left of it is the client's to forge)."""
    address = request.META.get("REMOTE_ADDR", "")
    if settings.TRUST_X_FORWARDED_FOR:
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
        if forwarded:
            address = forwarded[-1]
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None


def record_access(request, action: str, target: str = "", *, user=None, username: str = "") -> AccessRecord:
    """Record one access by the request's user (or ``user``/``username`` given, e.g. for a failed sign-in)
    with the client's address and user agent. ``target`` names what was reached (an export, an endpoint)."""
    if user is None and request is not None:
        candidate = getattr(request, "user", None)
        user = candidate if candidate is not None and candidate.is_authenticated else None
    # Sealed on the access chain in the same transaction: a crash loses the record and its link together.
    with sealed_atomic():
        record = AccessRecord.objects.create(
            user=user,
            username=(user.get_username() if user is not None else username)[:150],
            action=action,
            target=str(target)[:TARGET_MAX],
            ip_address=client_ip(request) if request is not None else None,
            user_agent=(request.META.get("HTTP_USER_AGENT", "") if request is not None else "")[:USER_AGENT_MAX],
        )
    log.info("access %s user=%s ip=%s target=%s", action, record.username or "-", record.ip_address, record.target)
    return record


@receiver(user_logged_in, dispatch_uid="audit-login")
def _logged_in(sender, request, user, **kwargs):
    if request is not None:
        record_access(request, AccessAction.LOGIN, user=user)


@receiver(user_logged_out, dispatch_uid="audit-logout")
def _logged_out(sender, request, user, **kwargs):
    if request is not None and user is not None:
        record_access(request, AccessAction.LOGOUT, user=user)


@receiver(user_login_failed, dispatch_uid="audit-login-failed")
def _login_failed(sender, credentials, request=None, **kwargs):
    # Axes refuses a locked-out pair before the password is checked, and says so with its own signal; the
    # address limit records its own refusal.
    if request is not None and not getattr(request, "axes_locked_out", False) \
            and not getattr(request, REFUSED_FOR_ADDRESS, None):
        record_access(request, AccessAction.LOGIN_FAILED, username=str(credentials.get("username", "")))


def connect_axes_signals() -> None:
    from axes.signals import user_locked_out

    user_locked_out.connect(_locked_out, dispatch_uid="audit-locked-out")


def _locked_out(sender, request, username, ip_address, **kwargs):
    record_access(request, AccessAction.LOCKED_OUT, username=str(username or ""))


def token_reference(token) -> str:
    """Names a token in the audit without its secret: an integration token by its id and shown prefix; a
    personal token (DRF's, whose primary key *is* the secret) by the first 12 hex digits of its SHA-256."""
    prefix = getattr(token, "token_prefix", None)
    if prefix is not None:
        return f"integration token #{token.pk} {prefix}…"
    return f"personal token sha256:{hashlib.sha256(str(token.pk).encode()).hexdigest()[:12]}"


# How the audit named personal tokens before: with the token itself (migration portal 0006 rewrites them).
LEGACY_PERSONAL_TOKEN = re.compile(r"\(Token #([0-9a-f]{40})\)")


class ApiTokenAuditMiddleware:
    """Records every API call authenticated by a token (personal or integration): DRF leaves the
    authenticated token on the Django request as ``request.auth``; session calls leave nothing."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        token = getattr(request, "auth", None)
        user = getattr(request, "user", None)
        if token is not None and user is not None and user.is_authenticated:
            target = f"{request.method} {request.path} {response.status_code} ({token_reference(token)})"
            record_access(request, AccessAction.API_TOKEN_USED, target, user=user)
        return response
