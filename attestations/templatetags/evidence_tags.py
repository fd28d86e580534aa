from django import template

from attestations.services import exports

register = template.Library()


@register.filter
def may_request_dossier(user, key) -> bool:
    """Whether ``user`` may request ``key``'s dossier (the service's rule, for showing the button)."""
    return exports.can_request_dossier(user, key)
