"""``verify-evidence REPORT.pdf [--cert CERT.pem] [--tsa-cert TSA-CA.pem]``: exit 0 when every check passes.

Prints one line per check, ``OK``, ``NOTE`` (something to act on) or ``FAIL``, and ``INFO`` lines; every
problem found is one ``FAIL`` line naming what is wrong, and any ``FAIL`` makes the exit status 1 (2 when
the file or a certificate cannot be read).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import logging
import sys
import warnings
from collections import Counter
from pathlib import Path

from evidence_verifier import signature, statement

STATUS_COLUMN = "status"


class Outcome:
    def __init__(self, out):
        self.out = out
        self.failures = 0

    def ok(self, text: str) -> None:
        print(f"OK    {text}", file=self.out)

    def info(self, text: str) -> None:
        print(f"INFO  {text}", file=self.out)

    def note(self, text: str) -> None:
        print(f"NOTE  {text}", file=self.out)

    def fail(self, text: str) -> None:
        self.failures += 1
        print(f"FAIL  {text}", file=self.out)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="verify-evidence",
        description="Check an evidence PDF of the API key portal offline: its signature, its attached data and "
                    "the totals it prints.")
    p.add_argument("report", help="the evidence PDF")
    p.add_argument("--cert", help="the signing certificate (PEM or DER) the organisation gave you: the report must be "
                                  "signed with exactly this certificate")
    p.add_argument("--tsa-cert", help="the time-stamp authority's root certificate, to trust the report's time-stamp")
    return p


def main(argv: list[str] | None = None, out=None) -> int:
    args = parser().parse_args(argv)
    out = out or sys.stdout
    quiet_libraries()
    try:
        trusted = signature.load_certificate(Path(args.cert).read_bytes()) if args.cert else None
        tsa_root = signature.load_certificate(Path(args.tsa_cert).read_bytes()) if args.tsa_cert else None
        with open(args.report, "rb") as f:
            head = f.read(5)
    except (OSError, ValueError) as error:
        print(f"verify-evidence: {error}", file=sys.stderr)
        return 2
    if head != b"%PDF-":
        print(f"verify-evidence: {args.report} is not a PDF file", file=sys.stderr)
        return 2
    outcome = Outcome(out)
    print(f"Report: {args.report}", file=out)
    check_signature(outcome, args.report, trusted, tsa_root)
    check_data(outcome, args.report)
    if outcome.failures:
        print(f"Result: FAILED, {outcome.failures} problem{'s' if outcome.failures != 1 else ''} found", file=out)
        return 1
    print("Result: PASSED" + ("" if trusted else " (signer not yet trusted: see NOTE above)"), file=out)
    return 0


def quiet_libraries() -> None:
    """The verdict is this script's output: pyHanko's own log of a self-signed certificate it cannot chain
    to a root, or cryptography's deprecation notices, would only bury it."""
    for name in ("pyhanko", "pyhanko_certvalidator"):
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)
    warnings.filterwarnings("ignore", message="DSA is deprecated")


def check_signature(outcome: Outcome, path: str, trusted, tsa_root) -> None:
    result = signature.check_signature(path, trusted, tsa_root)
    for problem in result.problems:
        outcome.fail(problem)
    if not result.signed:
        return
    if not any(p.startswith("signature") for p in result.problems):
        when = f", signed {result.signed_at:%Y-%m-%d %H:%M:%S %Z}" if result.signed_at else ""
        outcome.ok(f"signature: intact and valid, covers the whole file (PAdES{when})")
    if trusted is None:
        outcome.note(f"signer not yet trusted: {result.signer_subject}, SHA-256 fingerprint {result.signer_fingerprint}. "
                     "Compare it with the fingerprint the organisation gave you (the portal shows it under Evidence), "
                     "then run again with --cert CERT.pem.")
    elif result.trusted:
        outcome.ok(f"signer: the certificate given, {result.signer_subject}, SHA-256 fingerprint {result.signer_fingerprint}")
    if result.timestamp is None:
        outcome.note("time-stamp: none (the signing time is the signer's own claim)")
    elif not any(p.startswith("time-stamp") for p in result.problems):
        trust = ("the authority is the one given" if result.timestamp_trusted
                 else "pass --tsa-cert to check the authority")
        outcome.ok(f"time-stamp: {result.timestamp:%Y-%m-%d %H:%M:%S %Z} by {result.timestamp_authority}, token valid ({trust})")


# A large campaign's attachments exceed pypdf's default 75 MB limit on a decompressed stream (a guard against
# decompression bombs); an evidence report's own attachments may reach this size.
MAX_ATTACHMENT_BYTES = 2_000_000_000


def check_data(outcome: Outcome, path: str) -> None:
    from pypdf import PdfReader, apply_configuration

    try:
        with apply_configuration(zlib_maximum_output_length=MAX_ATTACHMENT_BYTES,
                                 maximum_declared_stream_length=MAX_ATTACHMENT_BYTES):
            reader = PdfReader(path, strict=False)
            attached = {name: contents[0] for name, contents in reader.attachments.items()}
            printed = statement.read_pdf(reader)
    except Exception as error:  # a damaged file: say so rather than crash
        outcome.fail(f"data: the file cannot be read ({type(error).__name__}: {error})")
        return
    if not printed.found:
        outcome.fail("verification data: the report prints none (no \"Verification data\" section in its text)")
        return
    if not printed.complete:
        outcome.fail("verification data: the section does not end (\"End of verification data\" is missing)")
    for problem in printed.problems:
        outcome.fail(f"verification data: {problem}")
    check_attachments(outcome, attached, printed)
    check_totals(outcome, attached, printed)
    if printed.chain_digest:
        outcome.info(f"chain head: sequence {printed.chain_seq}, digest {printed.chain_digest} (the history this report "
                     "was made at; the portal's operator proves it unchanged with `manage.py verify_history "
                     f"--against-head {printed.chain_seq} {printed.chain_digest}`)")
    elif printed.chain_printed:
        outcome.note("chain head: none printed (the history chain was not verified when the report was made)")
    else:
        outcome.fail("chain head: not printed")


def check_attachments(outcome: Outcome, attached: dict[str, bytes], printed: statement.Statement) -> None:
    for name, expected in printed.files.items():
        if name not in attached:
            outcome.fail(f"attachment {name}: printed in the report but not attached")
            continue
        actual = hashlib.sha256(attached[name]).hexdigest()
        if actual == expected:
            outcome.ok(f"attachment {name}: SHA-256 {actual}, as printed")
        else:
            outcome.fail(f"attachment {name}: SHA-256 is {actual}, the report prints {expected}")
    for name in sorted(set(attached) - set(printed.files)):
        outcome.fail(f"attachment {name}: attached but not listed in the report's verification data")
    if not printed.files and not attached:
        outcome.fail("attachments: none attached and none printed")


def check_totals(outcome: Outcome, attached: dict[str, bytes], printed: statement.Statement) -> None:
    name = printed.rows_file
    if name is None or printed.rows is None:
        outcome.fail("totals: the report prints no row count for its CSV")
        return
    if name not in attached:
        return  # already failed as a missing attachment
    try:
        rows = list(csv.DictReader(io.StringIO(attached[name].decode("utf-8"))))
    except (UnicodeDecodeError, csv.Error) as error:
        outcome.fail(f"totals of {name}: the CSV cannot be read ({error})")
        return
    problems = []
    if len(rows) != printed.rows:
        problems.append(f"{rows_text(len(rows))}, the report prints {printed.rows}")
    if printed.statuses:
        counted = Counter(row.get(STATUS_COLUMN) or "" for row in rows)
        for status in sorted(set(counted) | set(printed.statuses)):
            if counted.get(status, 0) != printed.statuses.get(status, 0):
                problems.append(f"{rows_text(counted.get(status, 0))} with status {status or '(empty)'}, "
                                f"the report prints {printed.statuses.get(status, 0)}")
    for problem in problems:
        outcome.fail(f"totals of {name}: {problem}")
    if not problems:
        per_status = "; ".join(f"{status} {count}" for status, count in printed.statuses.items())
        outcome.ok(f"totals of {name}: {rows_text(len(rows))}{f' ({per_status})' if per_status else ''}, as printed")


def rows_text(count: int) -> str:
    return f"{count} row{'' if count == 1 else 's'}"
