"""Who may see the operations endpoints' details: callers from listed addresses, or with the metrics token.

The client's address is the access audit's (``core.audit.client_ip``: REMOTE_ADDR, or behind one trusted proxy
the address it appended to X-Forwarded-For).
"""

import functools
import hmac
import ipaddress

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from core.audit import client_ip


@functools.cache
def _networks(addresses: tuple[str, ...]) -> tuple:
    try:
        return tuple(ipaddress.ip_network(address, strict=False) for address in addresses)
    except ValueError as error:
        raise ImproperlyConfigured(f"Not an address or network in an *_ALLOWED_IPS setting: {error}")


def from_allowed_address(request, addresses) -> bool:
    address = client_ip(request)
    if address is None:
        return False
    ip = ipaddress.ip_address(address)
    return any(ip in network for network in _networks(tuple(addresses)))


def has_metrics_token(request) -> bool:
    """``Authorization: Bearer <METRICS_TOKEN>``, compared in constant time; no token set turns this off."""
    expected = settings.METRICS_TOKEN
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if not expected or scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), expected.encode())


def may_see_health_details(request) -> bool:
    return from_allowed_address(request, settings.HEALTH_ALLOWED_IPS)


def may_read_metrics(request) -> bool:
    return from_allowed_address(request, settings.METRICS_ALLOWED_IPS) or has_metrics_token(request)
