"""Where a page sends its user back to after a form."""

from django.utils.http import url_has_allowed_host_and_scheme


def return_url(request, default: str) -> str:
    """The ``next`` the request carries (form or query string) if it stays on this site, else ``default``."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()}, require_https=request.is_secure()):
        return target
    return default
