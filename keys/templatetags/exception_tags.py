from django import template

from keys import exceptions

register = template.Library()


@register.filter
def control_labels(exception) -> list[str]:
    """The compensating controls of an exception, as their labels."""
    return exceptions.control_labels(exception)
