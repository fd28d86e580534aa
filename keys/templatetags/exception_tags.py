from django import template

from keys.services import key_exceptions as exceptions

register = template.Library()


@register.filter
def control_labels(exception) -> list[str]:
    """The compensating controls of an exception, as their labels."""
    return exceptions.control_labels(exception)
