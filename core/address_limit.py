"""A limit on failed sign-ins per client address, whatever the usernames.

django-axes locks a username from an address after a few failures; password spraying (one password tried
once on many usernames) never reaches that. Here LOGIN_ADDRESS_FAILURE_LIMIT failed sign-ins from one
address within LOGIN_ADDRESS_WINDOW refuse every further sign-in from it, right password or not, until the
oldest of them leave the window: high enough for an office behind one address. The address is
``core.audit.client_ip`` (X-Forwarded-For only behind a trusted proxy, TRUST_X_FORWARDED_FOR); the failures
counted are the access audit's failed sign-ins, and a refused sign-in is recorded as a lock-out, not as one
more failure.

``AddressLimitBackend`` refuses before any password is checked, for every sign-in form (the portal's and the
admin's); ``AddressLimitMiddleware`` answers the refusal with the lock-out page and 429.
"""

import datetime
import math

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.shortcuts import render
from django.utils import timezone

from core.audit import REFUSED_FOR_ADDRESS, client_ip, record_access
from core.models import AccessAction, AccessRecord


def retry_at(address: str | None) -> datetime.datetime | None:
    """When a sign-in from ``address`` will be taken again, or None if it is taken now."""
    limit = settings.LOGIN_ADDRESS_FAILURE_LIMIT
    if not address or not limit:
        return None
    window = settings.LOGIN_ADDRESS_WINDOW
    failures = AccessRecord.objects.filter(
        action=AccessAction.LOGIN_FAILED, ip_address=address, at__gte=timezone.now() - window
    )
    count = failures.count()
    if count < limit:
        return None
    # Taken again once all but limit - 1 of them have left the window.
    return failures.order_by("at").values_list("at", flat=True)[count - limit] + window


class AddressLimitBackend:
    """An authentication backend that authenticates nobody: listed before Django's, it stops a sign-in from
    an address over the limit (Django's ``authenticate`` ends at a PermissionDenied). It has no ``get_user``,
    so no session is ever bound to it."""

    def authenticate(self, request, username=None, **credentials):
        if request is None:
            return None
        until = retry_at(client_ip(request))
        if until is None:
            return None
        setattr(request, REFUSED_FOR_ADDRESS, until)
        record_access(request, AccessAction.LOCKED_OUT, "too many failed sign-ins from this address",
                      username=str(username or ""))
        raise PermissionDenied("Too many failed sign-ins from this address.")


class AddressLimitMiddleware:
    """Answers a sign-in refused for its address with the lock-out page, 429 and Retry-After."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        until = getattr(request, REFUSED_FOR_ADDRESS, None)
        if until is None:
            return response
        seconds = max(1, math.ceil((until - timezone.now()).total_seconds()))
        refused = render(request, "registration/locked_out.html",
                         {"address_limited": True, "minutes": math.ceil(seconds / 60)}, status=429)
        refused["Retry-After"] = str(seconds)
        return refused
