"""History records that the chain can seal without reading them back.

Every governed model declares ``history = ChainedHistoricalRecords()``. Its historical model's INSERT
returns every stored column (``INSERT … RETURNING``, PostgreSQL and SQLite 3.35+), converted exactly as
a later read would convert them, and keeps that row on the record for the chain (``portal.chain``):
the record is sealed from what the database holds, without a query to read it again.
"""

from django.db import connections, models
from django.utils.functional import cached_property
from simple_history.manager import HistoryDescriptor
from simple_history.models import HistoricalRecords

from .writes import CompiledWrites


def stored_columns(history_model) -> list:
    """Every concrete field of the historical model, its primary key (history_id) first."""
    pk = history_model._meta.pk
    return [pk] + [f for f in history_model._meta.concrete_fields if f is not pk]


class ReturnsStoredRow(CompiledWrites):
    """Base of the historical models: ``_chain_row`` holds the row as stored, (history_id, columns...).
    The INSERT is compiled once per historical model (``portal.writes``)."""

    _chain_row = None

    def _do_insert(self, manager, using, fields, returning_fields, raw):
        if not connections[using].features.can_return_columns_from_insert:
            return super()._do_insert(manager, using, fields, returning_fields, raw)
        every = stored_columns(type(self))
        rows = self._compiled_insert(manager, using, fields, every, raw)
        self._chain_row = tuple(rows[0])
        position = {field: i for i, field in enumerate(every)}
        return [tuple(self._chain_row[position[field]] for field in returning_fields or ())]


class ManagerClassOnce(HistoryDescriptor):
    """simple-history's ``model.history`` descriptor builds a new manager class (``from_queryset``,
    which inspects every queryset method) on each access, and every save's history record goes through
    it; the class is the same every time, so it is built once."""

    @cached_property
    def _manager(self):
        return self.manager_class.from_queryset(self.queryset_class)

    def __get__(self, instance, owner):
        return self._manager(self.model, instance)


class ChainedHistoricalRecords(HistoricalRecords):
    """``HistoricalRecords`` whose records carry their stored row for the history chain."""

    def __init__(self, *args, bases=(ReturnsStoredRow, models.Model), **kwargs):
        super().__init__(*args, bases=bases, **kwargs)

    def finalize(self, sender, **kwargs):
        super().finalize(sender, **kwargs)
        descriptor = sender.__dict__.get(self.manager_name)
        if type(descriptor) is HistoryDescriptor:
            setattr(sender, self.manager_name, ManagerClassOnce(
                descriptor.model, manager=descriptor.manager_class, queryset=descriptor.queryset_class))
