"""Usage reports: batches of calls made with keys, counted once, aggregated per key per day.

Events are validated with plain Python (a batch is up to 10,000 of them), keys are resolved in one
query (with the flags the batch acts on), and each event is counted once: its id (or the batch's
idempotency key and its index) is recorded as a UsageEventReceipt under a digest of (key, id), and an
event whose receipt already exists is a duplicate. New events are added to UsageDaily (count, first/last seen, up to 50 distinct
sources) and move the key's ``last_used_at`` forward, never back, all in one transaction.

``last_used_at`` is telemetry: it is written with a plain UPDATE, so it creates no history record
(a busy key would otherwise add one per batch); the history shows its value as of each governed
change. Stale keys used again have their flag lifted through ``lifecycle.clear_stale_keys``, which records
each. On PostgreSQL a batch takes the same number of statements whatever its size.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone
from prometheus_client import Counter

from core.actors import system_user
from core.chain import sealed_atomic
from core.errors import ServiceError
from core.numbers import in_bigint_range
from keys.choices import OPEN_RELEASE_STATUSES
from keys.fingerprints import FINGERPRINT_RE
from keys.models import ApiKey, KeyRelease, UsageDaily, UsageEventReceipt
from keys.services import lifecycle, releases

MAX_EVENTS = 10_000
MAX_SOURCES = 50
MAX_SOURCE_LENGTH = 200
MAX_ID_LENGTH = 100
FUTURE_TOLERANCE = datetime.timedelta(minutes=5)
MAX_AGE = datetime.timedelta(days=400)
# Rows per statement where SQLite binds every value as a parameter.
SQLITE_CHUNK = 300

# Events reported, by outcome: the ingest rate for /metrics (events counted per minute is
# rate(portal_usage_events_total{outcome="accepted"}[1h]) * 60). Counted once the batch is written.
USAGE_OUTCOMES = ("accepted", "duplicate", "rejected")
USAGE_EVENTS = Counter("portal_usage_events", "Usage events reported, by outcome.", ["outcome"])
for _outcome in USAGE_OUTCOMES:
    USAGE_EVENTS.labels(_outcome)


class UsageError(ServiceError):
    """A batch refused as a whole (too large, not a list)."""


@dataclass
class UsageResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"accepted": self.accepted, "duplicates": self.duplicates, "rejected": self.rejected}


@dataclass(frozen=True, slots=True)
class _Event:
    index: int
    event_id: str
    key_ref: int | str
    at: datetime.datetime
    source: str


def ingest_usage(
    events: list[dict], *, scope=None, idempotency_key: str | None = None, actor=None
) -> UsageResult:
    """Count a batch of usage events once each.

    ``scope`` is the ApiKey queryset the reporter may report for (an integration token's keys);
    a key outside it is rejected exactly as an unknown key is. Every rejected event is reported
    by its index and reason; the others are counted, or reported as duplicates if already counted.
    """
    if not isinstance(events, list):
        raise UsageError("Send the events as a list.", field="events")
    if len(events) > MAX_EVENTS:
        raise UsageError(f"A batch holds at most {MAX_EVENTS} events; this one has {len(events)}.", field="events")
    idempotency_key = (idempotency_key or "").strip()
    if len(idempotency_key) > MAX_ID_LENGTH:
        raise UsageError(f"An idempotency key is at most {MAX_ID_LENGTH} characters.", field="idempotency_key")
    result = UsageResult()
    parsed = _validate(events, idempotency_key, result)
    keys = _resolve_keys(parsed, ApiKey.objects.all() if scope is None else scope)
    resolved: list[tuple[_Event, int]] = []
    for event in parsed:
        found = keys.get(event.key_ref)
        if isinstance(found, str):
            result.rejected.append({"index": event.index, "reason": found})
        elif found is None:
            result.rejected.append({"index": event.index, "reason": "key: no such key."})
        else:
            resolved.append((event, found.pk))
    result.rejected.sort(key=lambda row: row["index"])
    if not resolved:
        _count(result)
        return result
    flags = {key.pk: key for key in keys.values() if isinstance(key, _Key)}
    with sealed_atomic():
        counted = _record_receipts(resolved)
        result.accepted = len(counted)
        result.duplicates = len(resolved) - len(counted)
        if counted:
            _add_to_daily(counted)
            _move_last_used(counted, flags, actor)
            # Only keys with an open release (known from the resolving query) can have traffic to note.
            releases.note_traffic([(key_id, event.at, event.source) for event, key_id in counted
                                   if flags[key_id].open_release])
    _count(result)
    return result


def _count(result: UsageResult) -> None:
    for outcome, number in zip(USAGE_OUTCOMES, (result.accepted, result.duplicates, len(result.rejected)), strict=True):
        if number:
            USAGE_EVENTS.labels(outcome).inc(number)


def _validate(events: list, idempotency_key: str, result: UsageResult) -> list[_Event]:
    now = timezone.now()
    latest, earliest = now + FUTURE_TOLERANCE, now - MAX_AGE
    parsed = []
    for index, event in enumerate(events):
        if not isinstance(event, dict):
            result.rejected.append({"index": index, "reason": "An event is an object."})
            continue
        problems = [f"{name}: no NUL characters." for name in ("id", "key", "source")
                    if isinstance(event.get(name), str) and "\x00" in event[name]]
        if problems:
            result.rejected.append({"index": index, "reason": " ".join(problems)})
            continue
        event_id = event.get("id")
        if isinstance(event_id, int) and not isinstance(event_id, bool):
            event_id = str(event_id)
        if event_id is None or event_id == "":
            if idempotency_key:
                event_id = f"{idempotency_key}#{index}"
            else:
                problems.append("id: required (or send the batch with an Idempotency-Key header).")
        elif not isinstance(event_id, str) or len(event_id) > MAX_ID_LENGTH:
            problems.append(f"id: a string of at most {MAX_ID_LENGTH} characters.")
        key_ref = event.get("key")
        if isinstance(key_ref, bool) or not isinstance(key_ref, int | str) or key_ref == "":
            problems.append("key: the key's id, prefix or fingerprint.")
        elif isinstance(key_ref, int) and not in_bigint_range(key_ref):
            problems.append("key: no key has this id (ids are 64-bit whole numbers).")
        elif isinstance(key_ref, str):
            key_ref = key_ref.strip()
            if len(key_ref) > 64:
                problems.append("key: the key's id, prefix or fingerprint.")
            elif FINGERPRINT_RE.match(key_ref.lower()):
                key_ref = key_ref.lower()
        at = _parse_time(event.get("at"))
        if at is None:
            problems.append("at: an ISO-8601 date and time with a time zone.")
        elif at > latest:
            problems.append("at: more than 5 minutes in the future.")
        elif at < earliest:
            problems.append(f"at: older than {MAX_AGE.days} days.")
        source = event.get("source", "")
        if source is None:
            source = ""
        if not isinstance(source, str) or len(source) > MAX_SOURCE_LENGTH:
            problems.append(f"source: a string of at most {MAX_SOURCE_LENGTH} characters.")
        if problems:
            result.rejected.append({"index": index, "reason": " ".join(problems)})
            continue
        parsed.append(_Event(index, event_id, key_ref, at, source.strip()))
    return parsed


def _parse_time(value) -> datetime.datetime | None:
    if not isinstance(value, str) or not 10 <= len(value) <= 40:
        return None
    try:
        at = datetime.datetime.fromisoformat(value)
    except ValueError:
        return None
    if at.tzinfo is None or at.utcoffset() is None:
        return None
    return at.astimezone(datetime.UTC)


@dataclass(frozen=True, slots=True)
class _Key:
    """A resolved key: its id and the two flags the batch acts on."""

    pk: int
    stale: bool
    open_release: bool


def _resolve_keys(events: list[_Event], scope) -> dict[int | str, _Key | str]:
    """Map each key reference to its key, or to a rejection reason (an ambiguous prefix).

    Ids, fingerprints and prefixes are looked up in one query, which also reads whether each key is
    stale and whether it has an open release, so the batch needs no other query per key.
    """
    ids = {e.key_ref for e in events if isinstance(e.key_ref, int)}
    strings = {e.key_ref for e in events if isinstance(e.key_ref, str)}
    fingerprints = {s for s in strings if FINGERPRINT_RE.match(s)}
    prefixes = strings - fingerprints
    found: dict[int | str, _Key | str] = {}
    if not (ids or strings):
        return found
    wanted = Q()
    for lookup, values in (("pk__in", ids), ("fingerprint__in", fingerprints), ("prefix__in", prefixes)):
        if values:
            wanted |= Q(**{lookup: values})
    open_release = KeyRelease.objects.filter(key=OuterRef("pk"), status__in=OPEN_RELEASE_STATUSES)
    rows = scope.filter(wanted).order_by().annotate(open_release=Exists(open_release)).values_list(
        "pk", "prefix", "fingerprint", "stale", "open_release")
    by_prefix: dict[str, list[_Key]] = defaultdict(list)
    for pk, prefix, fingerprint, stale, has_open_release in rows:
        key = _Key(pk, stale, has_open_release)
        if pk in ids:
            found[pk] = key
        if fingerprint in fingerprints:
            found[fingerprint] = key
        if prefix in prefixes:
            by_prefix[prefix].append(key)
    for prefix, matches in by_prefix.items():
        found[prefix] = matches[0] if len(matches) == 1 else "key: this prefix matches several keys; send the id."
    # A numeric string that is nobody's prefix is taken as an id.
    numeric = {int(p): p for p in prefixes - set(by_prefix) if p.isdigit() and len(p) < 19}
    if numeric:
        rows = scope.filter(pk__in=numeric).order_by().annotate(open_release=Exists(open_release)).values_list(
            "pk", "stale", "open_release")
        for pk, stale, has_open_release in rows:
            found[numeric[pk]] = _Key(pk, stale, has_open_release)
    return found


def _receipt_id(key_id: int, event_id: str) -> str:
    # Ids are namespaced by key and hashed to a fixed width: two integrations' "1" do not collide.
    return hashlib.sha256(f"{key_id}:{event_id}".encode()).hexdigest()


def _record_receipts(resolved: list[tuple[_Event, int]]) -> list[tuple[_Event, int]]:
    """Insert a receipt per event; return the events whose receipt is new (counted now)."""
    by_receipt: dict[str, tuple[_Event, int]] = {}
    for event, key_id in resolved:
        by_receipt.setdefault(_receipt_id(key_id, event.event_id), (event, key_id))
    table = UsageEventReceipt._meta.db_table
    now = timezone.now()
    inserted: list[str] = []
    if connection.vendor == "postgresql":
        receipt_ids = sorted(by_receipt)
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} (event_id, key_id, received_at) "
                f"SELECT e, k, %s FROM unnest(%s::text[], %s::bigint[]) AS t(e, k) "
                f"ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
                [now, receipt_ids, [by_receipt[r][1] for r in receipt_ids]],
            )
            inserted = [row[0] for row in cursor.fetchall()]
    else:
        with connection.cursor() as cursor:
            received = connection.ops.adapt_datetimefield_value(now)
            items = list(by_receipt.items())
            for start in range(0, len(items), SQLITE_CHUNK):
                chunk = items[start:start + SQLITE_CHUNK]
                cursor.execute(
                    f"INSERT INTO {table} (event_id, key_id, received_at) VALUES "
                    + ", ".join(["(%s, %s, %s)"] * len(chunk))
                    + " ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
                    [value for receipt, (_, key_id) in chunk for value in (receipt, key_id, received)],
                )
                inserted += [row[0] for row in cursor.fetchall()]
    new = set(inserted)
    # In the batch's order, not the insert's: the order in which sources are first seen is kept.
    return [pair for receipt, pair in by_receipt.items() if receipt in new]


def _add_to_daily(counted: list[tuple[_Event, int]]) -> None:
    """Add the new events to their (key, day) rows, each row written once."""
    tz = timezone.get_current_timezone()
    totals: dict[tuple[int, datetime.date], list] = {}
    for event, key_id in counted:
        day = event.at.astimezone(tz).date()
        total = totals.get((key_id, day))
        if total is None:
            totals[(key_id, day)] = [1, event.at, event.at, {event.source: None} if event.source else {}]
        else:
            total[0] += 1
            if event.at < total[1]:
                total[1] = event.at
            if event.at > total[2]:
                total[2] = event.at
            if event.source and len(total[3]) < MAX_SOURCES:
                total[3][event.source] = None
    if connection.vendor == "postgresql":
        _upsert_daily_postgresql(totals)
    else:
        _upsert_daily_locked(totals)


# One statement: new (key, day) rows are inserted, existing ones updated in place under the row lock
# ON CONFLICT takes. Sources keep their first-seen order, distinct, at most MAX_SOURCES: the batch's
# sources (distinct, in order) not yet in the row are appended, as many as fit.
_UPSERT_DAILY_POSTGRESQL = """
INSERT INTO {table} AS d (key_id, day, count, first_seen, last_seen, sources)
SELECT k, dy, c, f, l, s::jsonb FROM unnest(%s::bigint[], %s::date[], %s::int[], %s::timestamptz[],
                                            %s::timestamptz[], %s::text[]) AS t(k, dy, c, f, l, s)
ON CONFLICT (key_id, day) DO UPDATE SET
    count = d.count + EXCLUDED.count,
    first_seen = LEAST(d.first_seen, EXCLUDED.first_seen),
    last_seen = GREATEST(d.last_seen, EXCLUDED.last_seen),
    sources = CASE
        WHEN jsonb_array_length(d.sources) >= {cap} OR EXCLUDED.sources <@ d.sources THEN d.sources
        ELSE d.sources || COALESCE((
            SELECT jsonb_agg(v ORDER BY n) FROM (
                SELECT v, n FROM jsonb_array_elements_text(EXCLUDED.sources) WITH ORDINALITY AS b(v, n)
                WHERE NOT d.sources ? v ORDER BY n LIMIT {cap} - jsonb_array_length(d.sources)
            ) AS added), '[]'::jsonb)
    END
"""


def _upsert_daily_postgresql(totals: dict) -> None:
    rows = sorted(totals.items(), key=lambda item: item[0])  # one lock order for concurrent batches
    with connection.cursor() as cursor:
        cursor.execute(
            _UPSERT_DAILY_POSTGRESQL.format(table=UsageDaily._meta.db_table, cap=MAX_SOURCES),
            [[k for (k, _), _ in rows], [d for (_, d), _ in rows], [t[0] for _, t in rows], [t[1] for _, t in rows],
             [t[2] for _, t in rows], [json.dumps(list(t[3])) for _, t in rows]],
        )


def _upsert_daily_locked(totals: dict) -> None:
    """Other databases (SQLite): insert the missing rows, lock them all, write each row once."""
    UsageDaily.objects.bulk_create(
        [UsageDaily(key_id=key_id, day=day, count=0, first_seen=t[1], last_seen=t[2], sources=[])
         for (key_id, day), t in totals.items()],
        ignore_conflicts=True, batch_size=500,
    )
    key_ids = {key_id for key_id, _ in totals}
    days = {day for _, day in totals}
    rows = (
        UsageDaily.objects.select_for_update()
        .filter(key_id__in=key_ids, day__in=days)
        .values_list("pk", "key_id", "day", "count", "first_seen", "last_seen", "sources")
    )
    updates = []
    adapt = connection.ops.adapt_datetimefield_value
    for pk, key_id, day, count, first_seen, last_seen, sources in rows:
        total = totals.get((key_id, day))
        if total is None:
            continue
        merged = list(dict.fromkeys([*(sources or []), *total[3]]))[:MAX_SOURCES]
        updates.append((
            count + total[0], adapt(min(first_seen, total[1])), adapt(max(last_seen, total[2])),
            json.dumps(merged), pk,
        ))
    with connection.cursor() as cursor:
        cursor.executemany(
            f"UPDATE {UsageDaily._meta.db_table} SET count = %s, first_seen = %s, last_seen = %s, sources = %s "
            "WHERE id = %s",
            updates,
        )


def _move_last_used(counted: list[tuple[_Event, int]], keys: dict[int, _Key], actor) -> None:
    """Move each key's last use forward to its latest new event; lift the stale flag of keys used again."""
    latest: dict[int, datetime.datetime] = {}
    for event, key_id in counted:
        if key_id not in latest or event.at > latest[key_id]:
            latest[key_id] = event.at
    table = ApiKey._meta.db_table
    if connection.vendor == "postgresql":
        key_ids = sorted(latest)
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET last_used_at = t.at FROM unnest(%s::bigint[], %s::timestamptz[]) AS t(id, at) "
                f"WHERE {table}.id = t.id AND ({table}.last_used_at IS NULL OR {table}.last_used_at < t.at)",
                [key_ids, [latest[k] for k in key_ids]],
            )
    else:
        with connection.cursor() as cursor:
            adapt = connection.ops.adapt_datetimefield_value
            cursor.executemany(
                f"UPDATE {table} SET last_used_at = %s WHERE id = %s AND (last_used_at IS NULL OR last_used_at < %s)",
                [(adapt(at), key_id, adapt(at)) for key_id, at in latest.items()],
            )
    # A report of old calls does not make a key fresh: only use within the stale window lifts the flag.
    # The flag as read when the keys were resolved picks the candidates; clear_stale_keys re-reads it under lock.
    fresh_after = timezone.now() - datetime.timedelta(days=settings.KEY_STALE_AFTER_DAYS)
    used_again = {key_id: f"Used again on {at.date().isoformat()} (usage report)"
                  for key_id, at in latest.items() if at >= fresh_after and keys[key_id].stale}
    if used_again:
        lifecycle.clear_stale_keys(used_again, actor=actor or system_user())
