"""Key-list filters saved under a name by the person who made them."""

from __future__ import annotations

from django.http import QueryDict

from core.errors import ServiceError
from core.validators import field_errors
from keys.filters import filter_keys
from keys.models import ApiKey, SavedKeyFilter

# The key list's query parameters that page or sort it rather than filter it.
NOT_FILTERS = {"page", "cursor", "sort", "per_page"}
MAX_SAVED = 50


class SavedFilterError(ServiceError):
    """A refused saved filter."""


def filters_only(query: str) -> str:
    """A key-list query string without paging, sorting or empty values."""
    params = QueryDict(mutable=True)
    for name, values in QueryDict(query or "").lists():
        kept = [value for value in values if value.strip()]
        if name not in NOT_FILTERS and kept:
            params.setlist(name, kept)
    return params.urlencode()


def save_filter(user, *, name: str, query: str) -> SavedKeyFilter:
    """Save (or, under a name already used, replace) the key list's current filter for ``user``."""
    name, query = (name or "").strip(), filters_only(query)
    errors = field_errors(SavedKeyFilter, name=name) if name else {"name": ["Name the filter."]}
    if not query:
        errors.setdefault("query", []).append("Filter the list first: there is nothing to save.")
    else:
        _, problems = filter_keys(ApiKey.objects.none(), query)
        if problems:
            errors.setdefault("query", []).extend(problems)
    existing = SavedKeyFilter.objects.filter(user=user, name=name).first()
    if existing is None and SavedKeyFilter.objects.filter(user=user).count() >= MAX_SAVED:
        errors.setdefault("name", []).append(f"You have {MAX_SAVED} saved filters: delete one first.")
    if errors:
        raise SavedFilterError(errors)
    saved = existing or SavedKeyFilter(user=user, name=name)
    saved.query = query
    saved.save()
    return saved


def delete_filter(user, pk: int) -> bool:
    """Delete one of ``user``'s saved filters; False if they have none by that id."""
    deleted, _ = SavedKeyFilter.objects.filter(user=user, pk=pk).delete()
    return bool(deleted)
