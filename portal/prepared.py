"""Querysets of a fixed shape compiled to SQL once per process, for the reads on a decision's hot path.

Turning a queryset into SQL (joins, selected columns, annotations) costs more CPU than PostgreSQL takes
to run it when the query is a primary-key look-up with a couple of joins. ``PreparedQuery`` builds the
queryset once with placeholder values, compiles it, remembers where those values sit among the SQL
parameters, and from then on runs the same SQL with the caller's values. Rows become model instances
through Django's own iterables (related objects, annotations and field converters included), because
the compiled query is handed to them as it would be after compiling.

If a placeholder cannot be found among the parameters as the integer given, or is found anywhere else
too (written into the SQL, or inside another parameter), the query is simply built and compiled on
every call, as a plain queryset would be.
"""

from __future__ import annotations

import copy
import datetime
import threading
from collections.abc import Callable

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import QuerySet
from django.db.transaction import TransactionManagementError

# Placeholder values no table here will hold, distinct per parameter name: integers just below the top of
# a 32-bit column's range (a larger one in an ``integer`` primary key's filter compiles to "no rows"),
# dates and times of the eleventh century, and strings no one types.
_FIRST_MARK = 2_147_483_000


def _mark(position: int, kind: type):
    if kind is datetime.date:
        return datetime.date(1001 + position, 2, 3)
    if kind is datetime.datetime:
        return datetime.datetime(1001 + position, 2, 3, 4, 5, 6, 789, tzinfo=datetime.UTC)
    if kind is str:
        return f"\x1fportal.prepared mark {position}\x1f"
    return _FIRST_MARK + position


class _Compiled:
    def __init__(self, queryset: QuerySet, compiler, sql: str, params: tuple, slots: dict[str, list[int]]):
        self.query, self.compiler, self.sql, self.params, self.slots = compiler.query, compiler, sql, params, slots
        # values() and values_list() keep their row shape on the queryset, not the query.
        self.iterable_class, self.fields = queryset._iterable_class, queryset._fields
        # The row converters (field and backend) chosen for the selected columns, per connection: the
        # same every time, and choosing them is a good part of reading a row.
        self._converters: dict[int, tuple] = {}

    def converters(self, compiler, connection) -> dict:
        known = self._converters.get(id(connection))
        if known is None or known[0] is not connection:
            columns = [selected[0] for selected in compiler.select[0:compiler.col_count]]
            known = self._converters[id(connection)] = (connection, compiler.get_converters(columns))
        return known[1]

    def queryset(self, using: str, values: dict) -> QuerySet:
        params = list(self.params)
        for name, positions in self.slots.items():
            for position in positions:
                params[position] = values[name]
        compiler = copy.copy(self.compiler)
        compiler.connection = connections[using]  # this thread's connection, not the compiling thread's
        compiled = (self.sql, tuple(params))
        compiler.as_sql = lambda *args, **kwargs: compiled
        converters = self.converters(compiler, compiler.connection)
        compiler.get_converters = lambda expressions: converters  # only results_iter asks, for those columns
        query = copy.copy(self.query)
        query.get_compiler = lambda *args, **kwargs: compiler
        queryset = QuerySet(model=query.model, query=query, using=using)
        queryset._iterable_class, queryset._fields = self.iterable_class, self.fields
        return queryset


class PreparedQuery:
    """``build(**values)`` returns the queryset for those values; ``PreparedQuery(build, *names)``'s
    ``all(**values)`` returns the list ``build(**values)`` would and ``get(**values)`` what its ``get()``
    would, compiling only the first time (per database).

    Every value is an integer (primary keys), or for the names given in ``dates``, ``datetimes`` and
    ``strings`` a ``datetime.date``, an aware ``datetime.datetime`` or a ``str``; ``build`` must use each
    value as a plain parameter (a filter or a subquery's filter), and nothing else that changes between
    calls. (Where the database adapter turns dates and times into strings, SQLite, a query with them is
    built on every call.)
    """

    def __init__(self, build: Callable[..., QuerySet], *names: str, dates: tuple[str, ...] = (),
                 datetimes: tuple[str, ...] = (), strings: tuple[str, ...] = ()):
        self.build, self.names = build, names + tuple(dates) + tuple(datetimes) + tuple(strings)
        self.kinds = {**dict.fromkeys(names, int), **dict.fromkeys(dates, datetime.date),
                      **dict.fromkeys(datetimes, datetime.datetime), **dict.fromkeys(strings, str)}
        self._compiled: dict[str, _Compiled | None] = {}
        self._lock = threading.Lock()

    def _compile(self, using: str) -> _Compiled | None:
        marks = {name: _mark(i, self.kinds[name]) for i, name in enumerate(self.names)}
        queryset = self.build(**marks).using(using)
        compiler = queryset.query.chain().get_compiler(using=using)
        sql, params = compiler.as_sql()
        slots = {name: [i for i, value in enumerate(params) if type(value) is type(mark) and value == mark]
                 for name, mark in marks.items()}
        if not all(slots.values()):
            return None
        # A value that also went in some other form (in a string, say) would stay the placeholder's.
        taken = {i for positions in slots.values() for i in positions}
        others = [f"{value} {value!r}" for i, value in enumerate(params) if i not in taken]
        if any(text in sql or any(text in other for other in others)
               for mark in marks.values() for text in {str(mark), repr(mark)}):
            return None
        return _Compiled(queryset, compiler, sql, tuple(params), slots)

    def all(self, using: str = DEFAULT_DB_ALIAS, **values) -> list:
        if set(values) != set(self.names) or any(type(v) is not self.kinds[k] for k, v in values.items()):
            raise TypeError("give values for exactly " + ", ".join(f"{n} ({self.kinds[n].__name__})" for n in self.names))
        if using not in self._compiled:
            with self._lock:
                if using not in self._compiled:
                    self._compiled[using] = self._compile(using)
        compiled = self._compiled[using]
        if compiled is None:
            return list(self.build(**values).using(using))
        connection = connections[using]
        if compiled.query.select_for_update and connection.features.has_select_for_update \
                and connection.get_autocommit():
            raise TransactionManagementError("select_for_update cannot be used outside of a transaction.")
        return list(compiled.queryset(using, values))

    def get(self, using: str = DEFAULT_DB_ALIAS, **values):
        rows = self.all(using, **values)
        if len(rows) == 1:
            return rows[0]
        model = self.build(**{name: _mark(0, self.kinds[name]) for name in self.names}).model
        if not rows:
            raise model.DoesNotExist(f"{model._meta.object_name} matching query does not exist.")
        raise model.MultipleObjectsReturned(f"get() returned more than one {model._meta.object_name}.")
