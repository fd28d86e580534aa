"""Single-row saves compiled to SQL once per shape, for the writes on a decision's hot path.

``Model.save()`` builds a query and compiles it to SQL on every call: for one row by primary key that
costs the application more CPU than the database takes to run the statement. ``CompiledWrites`` keeps,
per model, database and shape (the fields written and returned, and for an UPDATE which values are
NULL), the SQL Django compiled the first time, and from then on only prepares the values, exactly as
Django's compilers do (``pre_save`` and ``get_db_prep_save``), and runs that SQL.

The first save of each shape goes through Django's own compiler, and the SQL is kept only if the
values prepared here equal, value for value and type for type, the parameters Django produced; a shape
with a field that makes its own placeholder, a multi-table model or a value that is an expression
(``F()``, ``DatabaseDefault``) is left to Django every time. Rows returned by an INSERT are converted
with the converters Django's compiler chose (``from_db_value`` and the backend's), so they equal what a
later read would give.
"""

from __future__ import annotations

import threading
from typing import NamedTuple

from django.db import connections
from django.db.models import sql

_UNPLANNED = object()


class _Plan(NamedTuple):
    sql: str
    returning_params: tuple
    converters: list  # [(position, (converters, expression))]


_plans: dict[tuple, _Plan | None] = {}
_lock = threading.Lock()


def _same(ours: list, django: list | tuple) -> bool:
    """Parameter lists equal value for value and type for type (adapters compared by what they wrap)."""
    if len(ours) != len(django):
        return False
    for a, b in zip(ours, django, strict=True):
        if type(a) is not type(b):
            return False
        if hasattr(a, "obj") and not isinstance(a, (int, str, bytes)):  # psycopg's Jsonb and the like
            if a.obj != b.obj or getattr(a, "dumps", None) != getattr(b, "dumps", None):
                return False
        elif a != b:
            return False
    return True


def _convert(row, plan: _Plan, connection) -> tuple:
    if not plan.converters:
        return tuple(row)
    row = list(row)
    for position, (converters, expression) in plan.converters:
        value = row[position]
        for converter in converters:
            value = converter(value, expression, connection)
        row[position] = value
    return tuple(row)


def _prepared(field, value, connection):
    if hasattr(value, "resolve_expression") or hasattr(value, "as_sql"):
        return _UNPLANNED
    return field.get_db_prep_save(value, connection=connection)


class CompiledWrites:
    """Model mixin: ``save()``'s single-row INSERT and UPDATE run SQL compiled once per shape."""

    def _do_insert(self, manager, using, fields, returning_fields, raw):
        return self._compiled_insert(manager, using, fields, returning_fields, raw)

    def _compiled_insert(self, manager, using, fields, returning_fields, raw):
        model, connection = type(self), connections[using]
        meta = model._meta
        if meta.parents or any(hasattr(field, "get_placeholder") for field in fields):
            return super()._do_insert(manager, using, fields, returning_fields, raw)
        values = [_prepared(field, getattr(self, field.attname) if raw else field.pre_save(self, add=True), connection)
                  for field in fields]
        if any(value is _UNPLANNED for value in values):
            return super()._do_insert(manager, using, fields, returning_fields, raw)
        returning = tuple(returning_fields or ())
        key = ("insert", model, using, tuple(fields), returning, raw)
        plan = _plans.get(key, _UNPLANNED)
        if plan is _UNPLANNED:
            return self._plan_insert(key, manager, using, fields, returning, raw, values)
        if plan is None:
            return super()._do_insert(manager, using, fields, returning_fields, raw)
        with connection.cursor() as cursor:
            cursor.execute(plan.sql, values)
            if not returning:
                return []
            row = connection.ops.fetch_returned_insert_columns(cursor, plan.returning_params)
        return [_convert(row, plan, connection)]

    def _plan_insert(self, key, manager, using, fields, returning, raw, values):
        """Compile through Django, keep the SQL if our values are Django's parameters, and run it."""
        connection = connections[using]
        query = sql.InsertQuery(type(self))
        # As stored: ``pre_save`` already ran for ``values`` (a second run would move an auto_now stamp).
        query.insert_values(fields, [self], raw=True)
        compiler = query.get_compiler(using=using)
        compiler.returning_fields = list(returning) or None
        statements = compiler.as_sql()
        plannable = (len(statements) == 1 and _same(values, statements[0][1])
                     and (not returning or connection.features.can_return_columns_from_insert))
        if not plannable:
            with _lock:
                _plans[key] = None
            return super()._do_insert(manager, using, list(fields), list(returning) or None, raw)
        statement, params = statements[0]
        meta = type(self)._meta
        converters = compiler.get_converters([field.get_col(meta.db_table) for field in returning])
        plan = _Plan(statement, tuple(compiler.returning_params), list(converters.items()))
        with connection.cursor() as cursor:
            cursor.execute(statement, params)
            row = connection.ops.fetch_returned_insert_columns(cursor, plan.returning_params) if returning else None
        with _lock:
            _plans[key] = plan
        return [_convert(row, plan, connection)] if returning else []

    def _do_update(self, base_qs, using, pk_val, values, update_fields, forced_update):
        model, connection = type(self), connections[using]
        meta = model._meta
        if (not values or (meta.select_on_save and not forced_update) or meta.parents
                or base_qs.query.where or base_qs.query.is_sliced):
            return super()._do_update(base_qs, using, pk_val, values, update_fields, forced_update)
        prepared = []
        for field, _model, value in values:
            if hasattr(field, "get_placeholder") or hasattr(value, "prepare_database_save"):
                return super()._do_update(base_qs, using, pk_val, values, update_fields, forced_update)
            value = _prepared(field, value, connection)
            if value is _UNPLANNED:
                return super()._do_update(base_qs, using, pk_val, values, update_fields, forced_update)
            prepared.append(value)
        pk = meta.pk
        where = pk.get_db_prep_value(pk.get_prep_value(pk_val), connection, prepared=True)
        key = ("update", model, using, tuple(field for field, _, _ in values), tuple(v is None for v in prepared))
        params = [value for value in prepared if value is not None] + [where]
        plan = _plans.get(key, _UNPLANNED)
        if plan is _UNPLANNED:
            plan = self._plan_update(key, base_qs, using, pk_val, values, params)
        if plan is None:
            return super()._do_update(base_qs, using, pk_val, values, update_fields, forced_update)
        with connection.cursor() as cursor:
            cursor.execute(plan.sql, params)
            return cursor.rowcount > 0

    def _plan_update(self, key, base_qs, using, pk_val, values, params) -> _Plan | None:
        query = base_qs.filter(pk=pk_val).query.chain(sql.UpdateQuery)
        query.add_update_fields(values)
        query.annotations = {}
        statement, django_params = query.get_compiler(using).as_sql()
        plan = None if query.related_updates or not _same(params, django_params) else _Plan(statement, (), [])
        with _lock:
            _plans[key] = plan
        return plan
