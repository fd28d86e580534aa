"""The floor a write path is compared with: PostgreSQL's COPY of the same rows the path wrote, part by part.

A path (a campaign launch, a usage batch) runs inside a transaction that is rolled back; before the rollback
its rows are read back with ``COPY (SELECT ...) TO STDOUT`` in binary form. Each part is then replayed with
``COPY ... FROM STDIN`` from those bytes (no Python per row: the database's cost of storing the same rows,
indexes and triggers included), and ``SET CONSTRAINTS ALL IMMEDIATE`` runs the foreign-key checks a commit
would run. Rows a COPY cannot write (an UPDATE of existing rows, an upsert) are COPYed into a temporary table
and applied with one set-based statement; the caller says so in the part's name.

``StatementClock`` splits a path's wall time into time inside SQL statements and the rest (Python: parsing,
validation, building statements, adapting parameters, hashing).
"""

import statistics
import time
from collections import defaultdict

from django.db import connection, transaction


class StatementClock:
    """``connection.execute_wrapper`` that adds up the time spent in statements, by statement kind."""

    def __init__(self):
        self.seconds = 0.0
        self.count = 0
        self.by_kind: dict[str, float] = defaultdict(float)

    def __call__(self, execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            elapsed = time.perf_counter() - started
            self.seconds += elapsed
            self.count += 1
            self.by_kind[kind_of(sql)] += elapsed

    def slowest(self, n: int = 5) -> list[tuple[str, float]]:
        return sorted(self.by_kind.items(), key=lambda item: -item[1])[:n]


def kind_of(sql: str) -> str:
    """A statement's verb and table: ``INSERT keys_usagedaily``, ``SELECT keys_apikey`` (the FROM outside
    any parentheses, so a subquery's table does not name the statement)."""
    words, depth = [], 0
    for word in sql.replace('"', "").split():
        if depth == 0:
            words.append(word)
        depth += word.count("(") - word.count(")")
    upper = [w.upper() for w in words]
    for i, word in enumerate(upper):
        if (word in ("INTO", "FROM") or (word == "UPDATE" and i == 0)) and i + 1 < len(words):
            return f"{upper[0]} {words[i + 1].strip('(),')}"
    return " ".join(words[:3])


def columns_of(model) -> list[str]:
    return [f.column for f in model._meta.concrete_fields]


def capture(table: str, columns: list[str], where: str) -> bytes:
    """The rows of ``table`` matching ``where`` (SQL written by the bench, no user input), in COPY's binary form."""
    quoted = ", ".join(connection.ops.quote_name(c) for c in columns)
    with connection.cursor() as cursor, cursor.cursor.copy(
            f"COPY (SELECT {quoted} FROM {connection.ops.quote_name(table)} WHERE {where}) TO STDOUT (FORMAT binary)"
    ) as copy:
        return b"".join(bytes(chunk) for chunk in copy)


def replay(table: str, columns: list[str], data: bytes) -> float:
    """COPY ``data`` (from ``capture``) into ``table``; returns the seconds it took."""
    quoted = ", ".join(connection.ops.quote_name(c) for c in columns)
    started = time.perf_counter()
    with connection.cursor() as cursor, cursor.cursor.copy(
            f"COPY {connection.ops.quote_name(table)} ({quoted}) FROM STDIN (FORMAT binary)") as copy:
        copy.write(data)
    return time.perf_counter() - started


def copy_rows(table: str, columns: list[str], rows) -> float:
    """COPY Python rows (text form, psycopg's C adapters) into ``table``; returns the seconds it took."""
    started = time.perf_counter()
    with connection.cursor() as cursor, cursor.cursor.copy(
            f"COPY {connection.ops.quote_name(table)} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
    return time.perf_counter() - started


def timed_sql(sql: str, params=()) -> float:
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
    return time.perf_counter() - started


def foreign_key_checks() -> float:
    """The deferred foreign-key checks a COMMIT would run, run now."""
    return timed_sql("SET CONSTRAINTS ALL IMMEDIATE")


def median_parts(run, times: int = 3) -> dict[str, float]:
    """Run ``run()`` (which returns {part: seconds}) ``times`` times, each in a rolled-back transaction;
    the median of each part, and their total as ``"total"`` (the median of the totals)."""
    results = []
    for _ in range(times):
        with transaction.atomic():
            parts = run()
            transaction.set_rollback(True)
        results.append(parts)
    medians = {name: statistics.median(r[name] for r in results) for name in results[0]}
    medians["total"] = statistics.median(sum(r.values()) for r in results)
    return medians


def print_profile(profile, limit: int = 25) -> None:
    """The functions where a profiled path spent its time, by cumulative time, then by own time."""
    import pstats

    stats = pstats.Stats(profile)
    stats.sort_stats("cumulative").print_stats(limit)
    stats.sort_stats("tottime").print_stats(limit)


def print_split(name: str, seconds: float, clock: StatementClock) -> None:
    """A path's wall time, its time in SQL statements (the slowest kinds), and the rest (Python)."""
    print(f"{name}: {seconds:.2f} s = {clock.seconds:.2f} s in {clock.count} SQL statements "
          f"+ {seconds - clock.seconds:.2f} s in Python")
    for kind, spent in clock.slowest(6):
        print(f"    {spent:7.3f} s  {kind}")
