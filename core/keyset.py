"""Keyset pagination: a page starts after (or ends before) the row a cursor names, never at an OFFSET.

An ``OFFSET 500000`` reads and throws away half a million sorted rows; a keyset page asks for the rows after
the last one shown (``WHERE (name, label, id) > (...) ORDER BY name, label, id LIMIT 26``), which an index
answers at any depth. The order is the queryset's own (the list's default or the sort a user chose), with
the primary key appended as the tiebreak so that every row has one place and equal values are neither
skipped nor repeated.

A cursor is opaque to its readers: base64 of the position's values, the direction and a digest of the order
it belongs to (a cursor of another sort is refused rather than misread). Both the HTML lists
(``core.lists.ObjectListView``) and the API (``core.api.CursorPagination``) page through here.
"""

import base64
import binascii
import datetime
import decimal
import hashlib
import json
import uuid
from dataclasses import dataclass

from django.core.exceptions import FieldError, ValidationError
from django.db.models import Expression, F, OrderBy, Q

# The annotation holding each ordering column's value, read back from the page's first and last rows.
ALIAS = "keyset_{}"


class InvalidCursor(Exception):
    """The cursor is not one this list gave out (malformed, tampered with, or of another sort order)."""


@dataclass(frozen=True)
class Column:
    alias: str
    expression: Expression
    descending: bool
    nulls_last: bool  # where the list shows NULLs
    nullable: bool


@dataclass
class KeysetPage:
    """One page: its rows, and cursors to the pages on either side (None at either end)."""

    rows: list
    next_cursor: str | None = None
    previous_cursor: str | None = None

    @property
    def has_next(self) -> bool:
        return self.next_cursor is not None

    @property
    def has_previous(self) -> bool:
        return self.previous_cursor is not None


def _parse(entry) -> tuple[Expression, bool, bool | None]:
    """An ``order_by`` entry as (expression, descending, nulls_first or None for the database's default)."""
    if isinstance(entry, str):
        if entry == "?":
            raise ValueError("A randomly ordered list cannot be paged by keyset.")
        descending = entry.startswith("-")
        return F(entry.lstrip("-+")), descending, None
    if isinstance(entry, OrderBy):
        nulls = True if entry.nulls_first else (False if entry.nulls_last else None)
        return entry.expression, entry.descending, nulls
    return entry, False, None  # a bare expression sorts ascending


def _is_pk(expression) -> bool:
    return isinstance(expression, F) and expression.name in ("pk", "id")


class Keyset:
    """The keyset of an ordered queryset: its order's columns, the primary key last."""

    def __init__(self, queryset):
        ordering = list(queryset.query.order_by) or list(queryset.query.get_meta().ordering)
        parsed = [_parse(entry) for entry in ordering]
        if not any(_is_pk(expression) for expression, _, _ in parsed):
            parsed.append((F("pk"), parsed[-1][1] if parsed else False, None))
        # Annotations are resolved once to learn each column's type and nullability.
        annotated = queryset.annotate(**{ALIAS.format(i): expression for i, (expression, _, _) in enumerate(parsed)})
        self.columns = []
        for i, (expression, descending, nulls_first) in enumerate(parsed):
            alias = ALIAS.format(i)
            output = annotated.query.annotations[alias].output_field
            # PostgreSQL's own placement by default (NULLs last ascending, first descending), on every database.
            nulls_last = (not descending) if nulls_first is None else not nulls_first
            self.columns.append(Column(alias, expression, descending, nulls_last, bool(getattr(output, "null", True))))
        self.annotated = annotated.order_by(*(
            OrderBy(F(c.alias), descending=c.descending,
                    nulls_last=(c.nullable and c.nulls_last) or None, nulls_first=(c.nullable and not c.nulls_last) or None)
            for c in self.columns
        ))
        self.signature = hashlib.sha256(repr([(str(c.expression), c.descending, c.nulls_last)
                                              for c in self.columns]).encode()).hexdigest()[:12]

    # Positions and cursors -------------------------------------------------------------------------

    def position(self, row) -> list:
        return [row[c.alias] if isinstance(row, dict) else getattr(row, c.alias) for c in self.columns]

    def encode(self, position: list, reverse: bool = False) -> str:
        payload = {"o": self.signature, "p": [_json_value(v) for v in position], "r": int(reverse)}
        return base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode().rstrip("=")

    def decode(self, cursor: str) -> tuple[list, bool]:
        try:
            payload = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
            position, reverse, signature = payload["p"], bool(payload["r"]), payload["o"]
        except (binascii.Error, ValueError, TypeError, KeyError, UnicodeDecodeError) as bad:
            raise InvalidCursor("The cursor cannot be read.") from bad
        if signature != self.signature or not isinstance(position, list) or len(position) != len(self.columns):
            raise InvalidCursor("The cursor belongs to another order of this list.")
        return position, reverse

    # Conditions ------------------------------------------------------------------------------------

    def _beyond(self, column: Column, value, reverse: bool) -> Q | None:
        """Rows strictly beyond ``value`` in this column, in the direction of travel (None: no row is)."""
        later_nulls = column.nulls_last != reverse  # do NULLs lie ahead?
        if value is None:
            return Q(**{f"{column.alias}__isnull": False}) if not later_nulls else None
        lookup = "lt" if column.descending != reverse else "gt"
        beyond = Q(**{f"{column.alias}__{lookup}": value})
        if column.nullable and later_nulls:
            beyond |= Q(**{f"{column.alias}__isnull": True})
        return beyond

    @staticmethod
    def _equal(column: Column, value) -> Q:
        return Q(**{f"{column.alias}__isnull": True}) if value is None else Q(**{column.alias: value})

    def beyond(self, position: list, reverse: bool = False) -> Q:
        """Rows after ``position`` in the list's order (before it with ``reverse``), nested as
        ``a > x OR (a = x AND (b > y OR (b = y AND ...)))`` under a leading ``a >= x`` an index can start from."""
        condition = None
        for column, value in reversed(list(zip(self.columns, position, strict=True))):
            beyond = self._beyond(column, value, reverse)
            tail = self._equal(column, value) & condition if condition is not None else None
            parts = [part for part in (beyond, tail) if part is not None]
            condition = parts[0] if len(parts) == 1 else (parts[0] | parts[1]) if parts else Q(pk__in=[])
        return self._at_or_beyond(self.columns[0], position[0], reverse) & condition

    @staticmethod
    def _at_or_beyond(column: Column, value, reverse: bool) -> Q:
        """The leading column at or beyond ``value``, written as one comparison (``a <= x``, not ``a = x OR
        a < x``) so that the database starts its index scan there rather than filtering every row before it."""
        later_nulls = column.nulls_last != reverse
        if value is None:
            return Q(**{f"{column.alias}__isnull": True}) if later_nulls else Q()
        lookup = "lte" if column.descending != reverse else "gte"
        start = Q(**{f"{column.alias}__{lookup}": value})
        if column.nullable and later_nulls:
            start |= Q(**{f"{column.alias}__isnull": True})
        return start

    # Pages -----------------------------------------------------------------------------------------

    def page(self, size: int, cursor: str | None = None) -> KeysetPage:
        """The ``size`` rows after (or, for a backward cursor, before) the cursor's position; the first page
        without one."""
        rows = self.annotated
        position, reverse = self.decode(cursor) if cursor else (None, False)
        if position is not None:
            try:
                rows = rows.filter(self.beyond(position, reverse))
            except (ValidationError, ValueError, TypeError, FieldError) as bad:
                raise InvalidCursor("The cursor's values do not fit this list.") from bad
        if reverse:
            rows = rows.reverse()
        fetched = list(rows[: size + 1])
        more = len(fetched) > size
        fetched = fetched[:size]
        if reverse:
            fetched.reverse()
        page = KeysetPage(fetched)
        if fetched:
            # Forward: more rows ahead if one more was found; a row lies behind the cursor's position.
            ahead, behind = (True, more) if reverse else (more, position is not None)
            if ahead:
                page.next_cursor = self.encode(self.position(fetched[-1]))
            if behind:
                page.previous_cursor = self.encode(self.position(fetched[0]), reverse=True)
        elif position is not None:
            # Past the end (the rows behind were deleted or filtered away): offer the way back.
            page.previous_cursor = self.encode(position, reverse=True) if not reverse else None
        return page

    def cursor_at(self, offset: int) -> str:
        """The cursor of the page starting ``offset`` rows in (an OFFSET read once: for benchmarks and tests)."""
        if offset <= 0:
            raise ValueError("The first page has no cursor.")
        return self.encode(self.position(self.annotated[offset - 1]))


def paginate(queryset, size: int, cursor: str | None = None) -> KeysetPage:
    return Keyset(queryset).page(size, cursor)


def capped_count(queryset, cap: int) -> tuple[int, bool]:
    """How many rows ``queryset`` holds, counting no further than ``cap``: (count, whether there are more)."""
    counted = queryset.order_by()[: cap + 1].count()
    return min(counted, cap), counted > cap


def _json_value(value):
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    return value
