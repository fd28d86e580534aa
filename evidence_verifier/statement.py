"""The verification data a report prints (templates/evidence/_verification.html), read from its page text.

The report prints one fact per line between "Verification data" and "End of verification data":

    File campaign-12-items.csv SHA-256 <64 hex digits>
    Rows in campaign-12-items.csv: 240
    Rows in campaign-12-items.csv with status confirmed: 198
    Chain head: sequence 1234, digest <64 hex digits>      (or "Chain head: none (...)")

Running headers and footers between pages are not facts and are passed over. A fact printed twice with
different values is a problem of its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

BEGIN, END = "Verification data", "End of verification data"
FILE = re.compile(r"File (?P<name>\S+) SHA-256 (?P<digest>[0-9a-f]{64})")
ROWS = re.compile(r"Rows in (?P<name>\S+): (?P<count>\d+)")
STATUS_ROWS = re.compile(r"Rows in (?P<name>\S+) with status (?P<status>\S+): (?P<count>\d+)")
CHAIN = re.compile(r"Chain head: sequence (?P<seq>\d+), digest (?P<digest>[0-9a-f]{64})")
NO_CHAIN = re.compile(r"Chain head: none\b.*")


@dataclass
class Statement:
    found: bool = False
    complete: bool = False
    files: dict[str, str] = field(default_factory=dict)
    rows_file: str | None = None
    rows: int | None = None
    statuses: dict[str, int] = field(default_factory=dict)
    chain_seq: int | None = None
    chain_digest: str | None = None
    chain_printed: bool = False
    problems: list[str] = field(default_factory=list)

    def record(self, what: str, mapping: dict, key, value) -> None:
        if key in mapping and mapping[key] != value:
            self.problems.append(f"{what} is printed twice, as {mapping[key]} and as {value}")
        mapping.setdefault(key, value)


def read_lines(lines) -> Statement:
    """The statement in ``lines`` (an iterable of text lines, in page order); stops at its end marker."""
    statement = Statement()
    for raw in lines:
        line = " ".join(raw.split())
        if not statement.found:
            statement.found = line == BEGIN
            continue
        if line == END:
            statement.complete = True
            break
        _read_fact(statement, line)
    return statement


def _read_fact(statement: Statement, line: str) -> None:
    if match := FILE.fullmatch(line):
        statement.record(f"the SHA-256 of {match['name']}", statement.files, match["name"], match["digest"])
    elif match := STATUS_ROWS.fullmatch(line):
        _rows_file(statement, match["name"])
        statement.record(f"the number of rows with status {match['status']}", statement.statuses, match["status"],
                       int(match["count"]))
    elif match := ROWS.fullmatch(line):
        _rows_file(statement, match["name"])
        if statement.rows is not None and statement.rows != int(match["count"]):
            statement.problems.append(f"the number of rows is printed twice, as {statement.rows} and as {match['count']}")
        statement.rows = int(match["count"]) if statement.rows is None else statement.rows
    elif match := CHAIN.fullmatch(line):
        if statement.chain_printed and (statement.chain_seq, statement.chain_digest) != (int(match["seq"]), match["digest"]):
            statement.problems.append("the chain head is printed twice with different values")
        elif not statement.chain_printed:
            statement.chain_seq, statement.chain_digest = int(match["seq"]), match["digest"]
        statement.chain_printed = True
    elif NO_CHAIN.fullmatch(line):
        if statement.chain_digest:
            statement.problems.append("the chain head is printed twice with different values")
        statement.chain_printed = True


def _rows_file(statement: Statement, name: str) -> None:
    if statement.rows_file is not None and statement.rows_file != name:
        statement.problems.append(f"totals are printed for two files, {statement.rows_file} and {name}")
    statement.rows_file = statement.rows_file or name


def read_pdf(reader) -> Statement:
    """The statement printed in a ``pypdf.PdfReader``'s pages (text is extracted only up to its end)."""

    def lines():
        for page in reader.pages:
            yield from (page.extract_text() or "").splitlines()

    return read_lines(lines())
