"""Inventory import: a CSV of existing keys becomes governed ApiKey records, all or nothing.

Every row is validated before anything is written, and every problem is reported with its line in
the file (the header is line 1), the column and a message. If any row is wrong nothing is written;
otherwise all keys, their history records, their lifecycle events and their owners' object
permissions are written in one transaction. Lookups are prefetched in chunks, so the number of
queries grows with the file size divided by the chunk size, never with one query per row.

A ``secret`` cell is fingerprinted at once and dropped: it is never stored, logged or echoed in
an error message.
"""

from __future__ import annotations

import csv
import datetime
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from core.chain import bulk_create_rows, bulk_create_with_history, sealed_atomic
from core.errors import ServiceError
from core.validators import field_errors
from keys.choices import ContractStatus, KeyStatus, LifecycleAction, RiskTier, WorkflowStatus
from keys.fingerprints import current_pepper_version
from keys.models import ApiKey, Customer, IssuingSystem, LifecycleEvent, Workflow
from keys.services.lifecycle import (
    contacts_among,
    custody_errors,
    grant_owner_permissions,
    resolve_identity,
    validate_dates,
    with_contact_customer,
)

COLUMNS = (
    "label",
    "customer",
    "workflow",
    "issuing_system",
    "owner",
    "steward",
    "prefix",
    "secret",
    "fingerprint",
    "scopes",
    "risk_tier",
    "issued_on",
    "expires_on",
    "next_review_on",
    "last_used_at",
    "status",
    "approval_reference",
)
REQUIRED_COLUMNS = ("label", "customer", "workflow", "issuing_system", "owner", "prefix", "risk_tier")
IDENTITY_COLUMNS = ("secret", "fingerprint")  # the header needs one; each row gives exactly one
IMPORTABLE_STATUSES = (KeyStatus.ACTIVE, KeyStatus.PENDING, KeyStatus.SUSPENDED)
DEFAULT_APPROVAL_REFERENCE = "inventory import"
DEFAULT_REASON = "Inventory import"
LOOKUP_CHUNK = 900  # below SQLite's historical limit of 999 parameters per query
WRITE_BATCH = 1000
REDACTED = "[redacted]"

_ISO_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_SCOPE_SEPARATORS_RE = re.compile(r"[\s;]+")
_QUOTED_RE = re.compile(r"'([^']*)'")


@dataclass(frozen=True)
class RowError:
    """One problem: ``line`` in the file (header = 1), or ``None`` for the whole file."""

    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line is not None else "file"
        return f"{where}: {self.field}: {self.message}"


@dataclass
class ImportResult:
    keys: list[ApiKey] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.keys)


class KeyImportError(ServiceError):
    """The import was refused and nothing was written. ``rows`` lists every problem found."""

    def __init__(self, rows: list[RowError]):
        self.rows = rows
        super().__init__({"__all__": [str(row) for row in rows]})


@dataclass
class _Row:
    line: int
    cells: dict[str, str]


def import_keys(file_or_text, *, actor, reason: str = "") -> ImportResult:
    """Import an inventory CSV of existing keys; refuse the whole file if any row is wrong.

    ``file_or_text`` is a str, bytes, or a binary or text file object (an upload). Raises
    ``KeyImportError`` with every problem found, having written nothing.
    """
    reason = (reason or "").strip() or DEFAULT_REASON
    text = _decode(_read_bounded(file_or_text))
    rows, errors = _parse(text)
    del text
    keys, row_errors = _validate(rows, actor=actor)
    errors = sorted(errors + row_errors, key=lambda e: e.line or 0)
    if errors:
        raise KeyImportError(errors)
    try:
        keys = _write(keys, rows, actor=actor, reason=reason)
    except IntegrityError:
        # Something changed between validation and writing, e.g. one of these fingerprints was registered.
        raise KeyImportError(
            [RowError(None, "file", "The keys or their references changed while importing; nothing was imported. Try again.")]
        )
    return ImportResult(keys=keys)


def _fail(message: str, field_name: str = "file", line: int | None = None):
    raise KeyImportError([RowError(line, field_name, message)])


def _read_bounded(source) -> bytes:
    limit = settings.IMPORT_MAX_BYTES
    too_big = f"The file is larger than the limit of {limit:,} bytes; split it into smaller files."
    if isinstance(source, str):
        data = source.encode("utf-8")
    elif isinstance(source, bytes | bytearray):
        data = bytes(source)
    else:
        size = getattr(source, "size", None)
        if size is not None and size > limit:
            _fail(too_big)
        if hasattr(source, "seek"):
            source.seek(0)
        data = source.read(limit + 1)
        if isinstance(data, str):
            data = data.encode("utf-8")
    if len(data) > limit:
        _fail(too_big)
    return data


def _decode(data: bytes) -> str:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        _fail(f"The file is not UTF-8 text (first bad byte on line {line}); save it as “CSV UTF-8”.", "encoding")
    if "\x00" in text:
        _fail("The file contains NUL bytes; it is not a CSV text file.", "encoding")
    if not text.strip():
        _fail("The file is empty.")
    return text


def _parse(text: str) -> tuple[list[_Row], list[RowError]]:
    """Split the text into rows keyed by column; rows too long to map onto the header are errors."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except csv.Error as exc:
        _fail(f"The header is not valid CSV: {exc}.", "header", 1)
    columns = [name.strip().lower() for name in header]
    _check_header(columns)
    rows: list[_Row] = []
    errors: list[RowError] = []
    line = reader.line_num + 1
    while True:
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            _fail(f"Not valid CSV: {exc}.", "row", line)
        if any(value.strip() for value in values):
            if len(values) > len(columns):
                errors.append(RowError(line, "row", f"{len(values)} values but the header has {len(columns)} columns."))
            else:
                # Spreadsheets drop trailing empty cells: missing values are blank.
                cells = {name: (values[i] if i < len(values) else "") for i, name in enumerate(columns)}
                rows.append(_Row(line, cells))
        line = reader.line_num + 1
    if not rows and not errors:
        _fail("The file has a header but no rows.")
    return rows, errors


def _check_header(columns: list[str]) -> None:
    problems = []
    unknown = [name for name in columns if name not in COLUMNS]
    if unknown:
        problems.append(f"unknown column(s): {', '.join(repr(n) for n in unknown)}")
    duplicated = sorted({name for name in columns if columns.count(name) > 1})
    if duplicated:
        problems.append(f"repeated column(s): {', '.join(duplicated)}")
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    if missing:
        problems.append(f"missing column(s): {', '.join(missing)}")
    if not any(name in columns for name in IDENTITY_COLUMNS):
        problems.append("a 'secret' or a 'fingerprint' column is required")
    if problems:
        _fail(
            "The header is wrong: " + "; ".join(problems) + f". Expected columns: {', '.join(COLUMNS)}.",
            "header",
            1,
        )


def _chunks(values: Iterable, size: int = LOOKUP_CHUNK) -> Iterator[list]:
    values = list(values)
    for start in range(0, len(values), size):
        yield values[start : start + size]


@dataclass
class _Lookups:
    customers: dict[str, Customer]
    workflows: dict[tuple[str, str], Workflow]
    systems: dict[str, IssuingSystem]
    users: dict[str, object]
    contacts: dict[int, int | None]  # customer contacts among the users: user id -> their customer


def _prefetch(rows: list[_Row]) -> _Lookups:
    def wanted(column):
        return {row.cells.get(column, "").strip() for row in rows} - {""}

    customer_ids = wanted("customer")
    workflow_names = wanted("workflow")
    usernames = wanted("owner") | wanted("steward")
    customers, workflows, systems, users, contacts = {}, {}, {}, {}, {}
    for chunk in _chunks(customer_ids):
        customers.update((c.external_id, c) for c in Customer.objects.filter(external_id__in=chunk))
    # Names are narrowed in Python to the (customer, name) pairs the file asks for.
    pairs = {(row.cells.get("customer", "").strip(), row.cells.get("workflow", "").strip()) for row in rows}
    known_customers = [c.pk for c in customers.values()]
    for chunk in _chunks(workflow_names):
        for workflow in Workflow.objects.filter(customer__in=known_customers, name__in=chunk).select_related("customer"):
            pair = (workflow.customer.external_id, workflow.name)
            if pair in pairs:
                workflows[pair] = workflow
    for chunk in _chunks(wanted("issuing_system")):
        systems.update((s.name, s) for s in IssuingSystem.objects.filter(name__in=chunk))
    user_model = get_user_model()
    for chunk in _chunks(usernames):
        queryset = with_contact_customer(
            user_model.objects.filter(**{f"{user_model.USERNAME_FIELD}__in": chunk}).select_related("owner_profile")
        )
        found = list(queryset)
        users.update((u.get_username(), u) for u in found)
        contacts.update(contacts_among(found))
    return _Lookups(customers, workflows, systems, users, contacts)


def _parse_date(value: str) -> datetime.date:
    if not _ISO_DATE_RE.match(value):
        raise ValueError
    return datetime.date.fromisoformat(value)


def _parse_datetime(value: str) -> datetime.datetime:
    if _ISO_DATE_RE.match(value):
        moment = datetime.datetime.combine(datetime.date.fromisoformat(value), datetime.time())
    else:
        moment = parse_datetime(value)
        if moment is None:
            raise ValueError
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment)
    return moment


def _validate(rows: list[_Row], *, actor) -> tuple[list[ApiKey], list[RowError]]:
    lookups = _prefetch(rows)
    errors: list[RowError] = []
    seen_fingerprints: dict[str, int] = {}
    keys: list[ApiKey] = []
    today = timezone.localdate()
    now = timezone.now()
    secrets = [row.cells.pop("secret", "") for row in rows]
    # Values echoed in messages are checked against every secret in the file, in case one was
    # pasted into another column or row.
    secret_set = {s.strip() for s in secrets} - {""}
    for row, secret in zip(rows, secrets, strict=True):
        row_errors: list[tuple[str, str]] = []
        prefix, digest, identity_errors = resolve_identity(
            secret=secret, fingerprint=row.cells.get("fingerprint", ""), prefix=row.cells.get("prefix", "")
        )
        row_errors += [(name, message) for name, messages in identity_errors.items() for message in messages]
        identity_field = "secret" if secret else "fingerprint"
        if digest:
            if digest in seen_fingerprints:
                row_errors.append((identity_field, f"The same key as on line {seen_fingerprints[digest]}."))
            else:
                seen_fingerprints[digest] = row.line
        key = _build_key(row, lookups, row_errors, actor=actor, today=today, now=now)
        if key is not None:
            key.prefix, key.fingerprint = prefix, digest
            keys.append(key)
        errors += [RowError(row.line, name, _redact(message, secret, secret_set)) for name, message in row_errors]
    del secret, secrets, secret_set
    errors += _already_registered(rows, seen_fingerprints)
    return keys, errors


def _redact(message: str, secret: str, secrets: set[str]) -> str:
    """A secret pasted into the wrong column must not come back in an error message."""
    if secret:
        message = message.replace(secret, REDACTED)
    return _QUOTED_RE.sub(lambda m: f"'{REDACTED}'" if m.group(1) in secrets else m.group(0), message)


def _already_registered(rows: list[_Row], seen: dict[str, int]) -> list[RowError]:
    errors = []
    by_line = {row.line: row for row in rows}
    for chunk in _chunks(seen):
        for digest in ApiKey.objects.filter(fingerprint__in=chunk).values_list("fingerprint", flat=True):
            line = seen[digest]
            column = "fingerprint" if by_line[line].cells.get("fingerprint", "").strip() else "secret"
            errors.append(RowError(line, column, "A key with this fingerprint is already registered."))
    return errors


def _build_key(row: _Row, lookups: _Lookups, errors: list, *, actor, today, now) -> ApiKey | None:
    """Check the row's other cells against the prefetched lookups; return the unsaved key."""
    cells = {name: value.strip() for name, value in row.cells.items()}
    for name in REQUIRED_COLUMNS:
        if name != "prefix" and not cells.get(name):
            errors.append((name, "A value is required."))

    label = cells.get("label", "")
    if len(label) > ApiKey._meta.get_field("label").max_length:
        errors.append(("label", "At most 200 characters."))
    else:
        errors += [(name, message) for name, messages in field_errors(ApiKey, label=label).items()
                   for message in messages]

    customer_id, workflow_name = cells.get("customer", ""), cells.get("workflow", "")
    customer = lookups.customers.get(customer_id)
    workflow = None
    if customer_id and customer is None:
        errors.append(("customer", f"Unknown customer '{customer_id}'."))
    elif customer is not None and customer.contract_status == ContractStatus.ENDED:
        errors.append(("customer", f"The contract with customer '{customer_id}' has ended."))
    if customer is not None and workflow_name:
        workflow = lookups.workflows.get((customer_id, workflow_name))
        if workflow is None:
            errors.append(("workflow", f"Unknown workflow '{workflow_name}' for customer '{customer_id}'."))
        elif workflow.status == WorkflowStatus.DECOMMISSIONED:
            errors.append(("workflow", f"Workflow '{workflow_name}' is decommissioned: no new keys may be added to it."))

    system_name = cells.get("issuing_system", "")
    system = lookups.systems.get(system_name)
    if system_name and system is None:
        errors.append(("issuing_system", f"Unknown issuing system '{system_name}'."))

    owner = _person(cells.get("owner", ""), "owner", lookups, errors)
    steward = _person(cells.get("steward", ""), "steward", lookups, errors)
    if customer is not None:
        for name, messages in custody_errors(customer.pk, lookups.contacts, owner=owner, steward=steward).items():
            errors += [(name, message) for message in messages]

    risk_tier = cells.get("risk_tier", "").lower()
    if risk_tier and risk_tier not in RiskTier.values:
        errors.append(("risk_tier", f"Unknown risk tier '{cells['risk_tier']}'; use one of {', '.join(RiskTier.values)}."))

    status = cells.get("status", "").lower() or KeyStatus.ACTIVE
    if status not in IMPORTABLE_STATUSES:
        errors.append(("status", f"Status '{cells['status']}' cannot be imported; use one of {', '.join(IMPORTABLE_STATUSES)}."))

    dates = {}
    for name in ("issued_on", "expires_on", "next_review_on"):
        value = cells.get(name, "")
        if value:
            try:
                dates[name] = _parse_date(value)
            except ValueError:
                errors.append((name, f"'{value}' is not a date; use YYYY-MM-DD."))
    issued_on = dates.get("issued_on") or (None if cells.get("issued_on") else today)
    if issued_on and issued_on > today:
        errors.append(("issued_on", "The issue date is in the future."))
    for name, messages in validate_dates(issued_on, dates.get("expires_on"), dates.get("next_review_on")).items():
        errors += [(name, message) for message in messages]

    last_used_at = None
    if cells.get("last_used_at"):
        try:
            last_used_at = _parse_datetime(cells["last_used_at"])
        except ValueError:
            errors.append(("last_used_at", f"'{cells['last_used_at']}' is not a date and time; use ISO 8601."))
        else:
            if last_used_at > now:
                errors.append(("last_used_at", "The last use is in the future."))

    reference = cells.get("approval_reference", "")
    approved = status in (KeyStatus.ACTIVE, KeyStatus.SUSPENDED)
    if len(reference) > ApiKey._meta.get_field("approval_reference").max_length:
        errors.append(("approval_reference", "At most 200 characters."))
    if reference and status == KeyStatus.PENDING:
        errors.append(("approval_reference", "A pending key is not approved yet; leave this empty or import it as active."))
    if approved and owner is not None and owner.pk == actor.pk:
        errors.append(("owner", "You own this key and cannot approve it: import it as pending or ask another admin."))

    if errors:
        return None
    return ApiKey(
        workflow=workflow,
        issuing_system=system,
        label=label,
        pepper_version=current_pepper_version(),
        scopes=sorted(set(_SCOPE_SEPARATORS_RE.split(cells.get("scopes", ""))) - {""}),
        owner=owner,
        steward=steward,
        approved_by=actor if approved else None,
        approved_at=now if approved else None,
        approval_reference=(reference or DEFAULT_APPROVAL_REFERENCE) if approved else "",
        issued_on=issued_on,
        expires_on=dates.get("expires_on"),
        next_review_on=dates.get("next_review_on"),
        last_used_at=last_used_at,
        risk_tier=risk_tier,
        status=status,
        status_changed_at=now,
    )


def _person(username: str, column: str, lookups: _Lookups, errors: list):
    if not username:
        return None
    user = lookups.users.get(username)
    if user is None:
        errors.append((column, f"Unknown user '{username}'."))
        return None
    profile = getattr(user, "owner_profile", None)
    if not user.is_active or (profile is not None and not profile.is_active):
        errors.append((column, f"'{username}' is inactive or has left; name a current employee."))
        return None
    return user


@sealed_atomic
def _write(keys: list[ApiKey], rows: list[_Row], *, actor, reason: str) -> list[ApiKey]:
    keys = bulk_create_with_history(
        keys, ApiKey, batch_size=WRITE_BATCH, default_user=actor, default_change_reason=reason[:100]
    )
    lines = [row.line for row in rows]
    bulk_create_rows(
        [
            LifecycleEvent(
                key=key,
                action=LifecycleAction.IMPORT,
                to_status=key.status,
                actor=actor,
                reason=reason,
                details={"line": line, "approval_reference": key.approval_reference},
            )
            for key, line in zip(keys, lines, strict=True)
        ],
        LifecycleEvent,
        batch_size=WRITE_BATCH,
    )
    grant_owner_permissions(keys)
    return keys
