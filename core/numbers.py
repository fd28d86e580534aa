"""Numbers from outside (query strings, form fields, JSON bodies) stop where the databases' integers stop.

Every id and count is stored in a signed 64-bit integer. A number beyond that range matches nothing, but
reaching the database with it is a server error on SQLite (its driver raises OverflowError) and, for some
lookups, on PostgreSQL too. So it is refused at the edge, with a message on its field, in one way: the number
filters of every filter set, the id fields of forms, and the services that read ids from a batch.
"""

from decimal import Decimal

from django import forms
from django.core.validators import MaxValueValidator, MinValueValidator
from django_filters import NumberFilter

BIGINT_MIN = -(2**63)
BIGINT_MAX = 2**63 - 1


def in_bigint_range(value: int | Decimal | float) -> bool:
    """Whether ``value`` fits a signed 64-bit integer column."""
    return BIGINT_MIN <= value <= BIGINT_MAX


def bigint_validators() -> list:
    return [MinValueValidator(BIGINT_MIN), MaxValueValidator(BIGINT_MAX)]


def bound_number_filters(filterset) -> None:
    """Give every number filter of this filter set (an instance) the 64-bit bounds, on top of its own.

    The filter set's form is built per instance, so the validators are added to this request's form only.
    """
    for name, filter_ in filterset.filters.items():
        if isinstance(filter_, NumberFilter) and name in filterset.form.fields:
            filterset.form.fields[name].validators.extend(bigint_validators())


class IdsField(forms.Field):
    """A list of ids (e.g. ticked rows): each a whole number within the 64-bit range, else "invalid"."""

    widget = forms.MultipleHiddenInput
    default_error_messages = {"invalid": "Enter whole numbers."}

    def to_python(self, value):
        if not value:
            return []
        try:
            ids = {int(v) for v in value}
        except (TypeError, ValueError):
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid") from None
        if not all(in_bigint_range(pk) for pk in ids):
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        return sorted(ids)


class ModelMultipleChoiceField(forms.ModelMultipleChoiceField):
    """Django's field, refusing an id beyond the 64-bit range as an unknown choice before it reaches a query
    (its ``__in`` lookup is not guarded against such values as ``exact`` is)."""

    def clean(self, value):
        key = self.to_field_name or "pk"
        if key == "pk" and isinstance(value, list | tuple):
            for pk in value:
                try:
                    number = int(str(pk))
                except ValueError:
                    continue  # Django's own check names it
                if not in_bigint_range(number):
                    raise forms.ValidationError(self.error_messages["invalid_choice"], code="invalid_choice",
                                                params={"value": pk})
        return super().clean(value)
