"""The tamper-evident hash chain over every history record of the governed models.

One global chain: each link stores ``digest = SHA-256(prev_digest + canonical JSON of the record)``,
where the canonical JSON covers the model label, the history id and every concrete column of the
historical model as stored in the database. ``ChainHead`` holds the last seq and digest; its row lock
serialises sealing, so concurrent writers cannot fork the chain.

Records are sealed by the transaction that writes them, just before it commits: single saves through
simple-history's ``post_create_historical_record`` signal, from the row their ``INSERT … RETURNING``
gave back (``portal.history``), bulk writes (which send no signals) by an explicit ``seal_ids`` at the
write site, read back before sealing. Taking the head lock at commit time rather than at the first
write matters: a transaction holding the head while waiting for a row lock held by another transaction
that waits for the head would deadlock (a campaign close racing reviewers' decisions does exactly that).
Nothing here seals rows it was not told about, so a row inserted behind the application's back stays
unsealed and ``verify_chain`` reports it.
"""

from __future__ import annotations

import datetime
import decimal
import hashlib
import json
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

from django.apps import apps
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from .errors import ServiceError
from .models import ChainHead, ChainLink

GENESIS = "0" * 64
HEAD_PK = 1
LINK_BATCH = 5000
# Batches up to this size are serialised before the head lock is taken (bounded memory above it).
PREPARED_LIMIT = 200


class ChainError(ServiceError):
    """A refused chain operation."""


def governed_history_models() -> list:
    """The historical models of every model with ``HistoricalRecords``, in a stable order."""
    found = []
    for model in apps.get_models():
        manager_name = getattr(model._meta, "simple_history_manager_attribute", None)
        if manager_name:
            found.append(getattr(model, manager_name).model)
    return sorted(found, key=lambda m: m._meta.label_lower)


def _columns(history_model) -> list[str]:
    """Every concrete column of the historical model, its primary key (history_id) first."""
    pk = history_model._meta.pk.attname
    return [pk] + [f.attname for f in history_model._meta.concrete_fields if f.attname != pk]


def _utc_iso(value: datetime.datetime) -> str:
    if value.tzinfo is None:
        return value.strftime("%Y-%m-%dT%H:%M:%S.%f")
    return value.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _json_text(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


# How each stored Python value becomes a string; strings and None are taken as they are.
_AS_TEXT = {
    bool: lambda v: "true" if v else "false",
    int: str,
    float: repr,
    decimal.Decimal: str,
    uuid.UUID: str,
    datetime.datetime: _utc_iso,
    datetime.date: datetime.date.isoformat,
    datetime.time: datetime.time.isoformat,
    datetime.timedelta: lambda v: str(v // datetime.timedelta(microseconds=1)),
    bytes: bytes.hex,
    memoryview: lambda v: v.hex(),
    dict: _json_text,
    list: _json_text,
    tuple: _json_text,
}


def record_digest(prev_digest: str, model_label: str, history_id: int, columns: list[str], row: tuple) -> str:
    """SHA-256 over the previous digest and the record's canonical JSON (sorted keys, values as strings)."""
    return chained_digest(prev_digest, record_payload(model_label, history_id, columns, row))


def chained_digest(prev_digest: str, payload: bytes) -> str:
    return hashlib.sha256(prev_digest.encode("ascii") + payload).hexdigest()


def record_payload(model_label: str, history_id: int, columns: list[str], row: tuple) -> bytes:
    """The record's canonical JSON (sorted keys, values as strings), UTF-8 encoded."""
    document = {
        "model": model_label,
        "history_id": str(history_id),
        "fields": dict(zip(columns, [
            v if v is None or type(v) is str else _AS_TEXT.get(type(v), str)(v) for v in row
        ], strict=True)),
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _fetch_rows(history_model, ids: Iterable[int], using: str) -> Iterator[tuple]:
    """The stored rows for ``ids`` in history id order, as (history_id, columns...) tuples."""
    columns = _columns(history_model)
    pk = history_model._meta.pk.attname
    ids = sorted(set(ids))
    # SQLite's parameter limit is 999 on older builds.
    step = 900 if connections[using].vendor == "sqlite" else LINK_BATCH
    rows = history_model._base_manager.using(using).order_by(pk).values_list(*columns)
    for start in range(0, len(ids), step):
        chunk = ids[start:start + step]
        if chunk[-1] - chunk[0] < 2 * len(chunk):
            # Mostly contiguous (a bulk write): a range scan is much cheaper than a long IN list.
            wanted = set(chunk)
            yield from (row for row in rows.filter(pk__gte=chunk[0], pk__lte=chunk[-1]) if row[0] in wanted)
        else:
            yield from rows.filter(pk__in=chunk)


# Sealing ------------------------------------------------------------------------------------------

class _Pending:
    """What the current transaction wrote and has not sealed yet: (history model, id, stored row or None).

    A savepoint that is rolled back takes its records with it: the list is cut back to its length when
    the savepoint was taken, so only records that exist at commit are sealed.
    """

    def __init__(self):
        self.records: list[tuple] = []
        self.marks: dict[str, int] = {}

    def __bool__(self):
        return bool(self.records)

    def take(self) -> dict:
        """{history model: {id: stored row or None}}, and nothing left pending."""
        batch: dict = {}
        for history_model, history_id, row in self.records:
            rows = batch.setdefault(history_model, {})
            if row is not None or history_id not in rows:
                rows[history_id] = row
        self.clear()
        return batch

    def clear(self):
        self.records.clear()
        self.marks.clear()


def _pending(connection) -> _Pending:
    if not hasattr(connection, "_history_chain_pending"):
        connection._history_chain_pending = _Pending()
    return connection._history_chain_pending


def seal_ids(history_model, ids: Iterable[int], *, using: str = DEFAULT_DB_ALIAS) -> None:
    """Chain these history rows, written by the current transaction, just before it commits.

    Outside a transaction (autocommit) they are sealed at once. Rows of a savepoint that is rolled
    back are not sealed.
    """
    _queue(history_model, [(history_id, None) for history_id in ids], using)


def _queue(history_model, records: list[tuple], using: str) -> None:
    if not records:
        return
    connection = connections[using]
    if connection.get_autocommit() and not connection.in_atomic_block:
        with transaction.atomic(using=using):
            _seal_now({history_model: dict(records)}, using)
        return
    _pending(connection).records.extend((history_model, history_id, row) for history_id, row in records)


def seal(history_records: Iterable, *, using: str = DEFAULT_DB_ALIAS) -> None:
    """Chain these history records (instances of one or more historical models); see ``seal_ids``."""
    by_model: dict = {}
    for record in history_records:
        by_model.setdefault(type(record), []).append(record.pk)
    for history_model, ids in by_model.items():
        seal_ids(history_model, ids, using=using)


def seal_pending(using: str = DEFAULT_DB_ALIAS) -> int:
    """Seal now what the current transaction has written so far (normally done at commit)."""
    pending = _pending(connections[using])
    if not pending:
        return 0
    batch = pending.take()
    with transaction.atomic(using=using):
        return _seal_now(batch, using)


def _locked_head(using: str) -> ChainHead:
    connection = connections[using]
    if connection.vendor == "postgresql":
        # Django's foreign keys are DEFERRABLE INITIALLY DEFERRED: checked at COMMIT, they would lock
        # referenced rows (FOR KEY SHARE) after the head. Run them now so the head is the last lock taken.
        connection.check_constraints()
    heads = ChainHead.objects.using(using).select_for_update()
    head = heads.filter(pk=HEAD_PK).first()
    if head is None:
        # ON CONFLICT DO NOTHING: a concurrent creator wins and we lock its row.
        ChainHead.objects.using(using).bulk_create([ChainHead(pk=HEAD_PK)], ignore_conflicts=True)
        head = heads.get(pk=HEAD_PK)
    return head


def _rows(history_model, records: dict, using: str) -> Iterator[tuple]:
    """The batch's rows of one model in history id order: as the INSERT returned them, or read back.

    Rows read back are those written without ``RETURNING`` (bulk writes); a row that is gone (deleted
    in the same transaction) is skipped.
    """
    unknown = [history_id for history_id, row in records.items() if row is None]
    fetched = {row[0]: row for row in _fetch_rows(history_model, unknown, using)} if unknown else {}
    for history_id in sorted(records):
        row = records[history_id] if records[history_id] is not None else fetched.get(history_id)
        if row is not None:
            yield row


def _seal_now(batch: dict, using: str) -> int:
    """Lock the head and append one link per existing row of ``batch`` ({history model: {id: row or None}})."""
    if sum(len(records) for records in batch.values()) <= PREPARED_LIMIT:
        return _seal_prepared(batch, using)
    head = _locked_head(using)
    seq, digest = head.seq, head.digest
    sealed = 0
    links = []
    for history_model in sorted(batch, key=lambda m: m._meta.label_lower):
        label = history_model._meta.label_lower
        columns = _columns(history_model)
        for row in _rows(history_model, batch[history_model], using):
            seq += 1
            prev, digest = digest, record_digest(digest, label, row[0], columns, row)
            links.append((seq, label, row[0], digest, prev))
            if len(links) >= LINK_BATCH:
                sealed += _insert_links(links, using)
                links = []
    if links:
        sealed += _insert_links(links, using)
    if sealed:
        ChainHead.objects.using(using).filter(pk=HEAD_PK).update(seq=seq, digest=digest)
    return sealed


# PostgreSQL appends a small batch in one statement (migration portal 0005): it runs the transaction's
# deferred constraint checks, locks the head, chains the payloads with sha256() exactly as
# ``chained_digest`` does, writes the links and moves the head. The lock is held for that statement and
# the COMMIT that follows, not for a round trip per step.
APPEND_SQL = "SELECT portal_chain_append(%s::text[], %s::bigint[], %s::bytea[], %s)"


def _seal_prepared(batch: dict, using: str) -> int:
    """A small batch (one decision, one key change): its records are serialised before the head is
    locked, so every writer in the queue behind the lock waits only for a hash, an insert and a commit."""
    prepared = []
    for history_model in sorted(batch, key=lambda m: m._meta.label_lower):
        label = history_model._meta.label_lower
        columns = _columns(history_model)
        prepared.extend((label, row[0], record_payload(label, row[0], columns, row))
                        for row in _rows(history_model, batch[history_model], using))
    if not prepared:
        return 0
    connection = connections[using]
    if connection.vendor == "postgresql":
        labels, ids, payloads = (list(column) for column in zip(*prepared, strict=True))
        with connection.cursor() as cursor:
            cursor.execute(APPEND_SQL, [labels, ids, payloads, timezone.now()])
        return len(prepared)
    head = _locked_head(using)
    seq, digest = head.seq, head.digest
    links = []
    for label, history_id, payload in prepared:
        seq += 1
        prev, digest = digest, chained_digest(digest, payload)
        links.append((seq, label, history_id, digest, prev))
    _insert_links(links, using)
    ChainHead.objects.using(using).filter(pk=HEAD_PK).update(seq=seq, digest=digest)
    return len(links)


def _insert_links(links: list[tuple], using: str) -> int:
    """Insert (seq, model_label, history_id, digest, prev_digest) rows: COPY on PostgreSQL, else executemany."""
    connection = connections[using]
    table = connection.ops.quote_name(ChainLink._meta.db_table)
    columns = "seq, model_label, history_id, digest, prev_digest, sealed_at"
    now = timezone.now()
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for link in links:
                    copy.write_row((*link, now))
        else:
            sealed_at = connection.ops.adapt_datetimefield_value(now)
            cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES (%s, %s, %s, %s, %s, %s)",
                               [(*link, sealed_at) for link in links])
    return len(links)


def seal_existing_history(using: str = DEFAULT_DB_ALIAS) -> int:
    """Seal every history record of a database written before the chain existed, into an empty chain.

    Refused once the chain has a link: from then on an unsealed record means tampering, and sealing
    it would hide the evidence.
    """
    with transaction.atomic(using=using):
        head = _locked_head(using)
        if head.seq or ChainLink.objects.using(using).exists():
            raise ChainError(f"The chain already has {head.seq} links: unsealed records are not older than it.")
        batch = {m: dict.fromkeys(m._base_manager.using(using).values_list("pk", flat=True))
                 for m in governed_history_models()}
        return _seal_now(batch, using)


def seal_created_record(sender, history_instance, using=None, **kwargs) -> None:
    """``post_create_historical_record`` receiver: every single save's history record is sealed, from the
    row its INSERT returned when there is one (``portal.history``)."""
    _queue(sender, [(history_instance.pk, history_instance._chain_row)], using or DEFAULT_DB_ALIAS)


def install_commit_hook(sender, connection, **kwargs) -> None:
    """``connection_created`` receiver: seal the transaction's pending records right before it commits.

    Django has no pre-commit signal; ``Atomic.__exit__`` and ``transaction.commit()`` both go
    through ``connection.commit()``, and an error raised here rolls the whole transaction back.
    """
    _pending(connection).clear()
    if getattr(connection, "_history_chain_hooked", False):
        return
    commit, rollback = connection.commit, connection.rollback
    savepoint, savepoint_rollback, savepoint_commit = (
        connection._savepoint, connection._savepoint_rollback, connection._savepoint_commit)

    def sealing_commit():
        pending = _pending(connection)
        if pending:
            batch = pending.take()
            try:
                _seal_now(batch, connection.alias)
            except DatabaseError:
                raise
            except Exception as exc:  # Atomic.__exit__ rolls back only on DatabaseError
                raise DatabaseError(f"sealing the history chain failed: {exc}") from exc
        commit()

    def clearing_rollback():
        _pending(connection).clear()
        rollback()

    def marking_savepoint(sid):
        pending = _pending(connection)
        pending.marks[sid] = len(pending.records)
        savepoint(sid)

    def cutting_savepoint_rollback(sid):
        savepoint_rollback(sid)
        pending = _pending(connection)
        if sid in pending.marks:
            del pending.records[pending.marks[sid]:]

    def releasing_savepoint(sid):
        savepoint_commit(sid)
        _pending(connection).marks.pop(sid, None)

    connection.commit = sealing_commit
    connection.rollback = clearing_rollback
    connection._savepoint = marking_savepoint
    connection._savepoint_rollback = cutting_savepoint_rollback
    connection._savepoint_commit = releasing_savepoint
    connection._history_chain_hooked = True


def connect_signals() -> None:
    """Seal every single save's history record; bulk writes call ``seal_ids`` themselves."""
    from simple_history.signals import post_create_historical_record

    for history_model in governed_history_models():
        post_create_historical_record.connect(seal_created_record, sender=history_model,
                                              dispatch_uid=f"history-chain-{history_model._meta.label}")


def bulk_create_with_history(objs, model, *, default_user, default_change_reason: str, batch_size=None) -> list:
    """simple-history's ``bulk_create_with_history``, with the history records it writes sealed.

    Needs a database that returns the created primary keys (PostgreSQL, SQLite 3.35+).
    """
    with transaction.atomic(using=model._default_manager.db, savepoint=False):
        objs = model._default_manager.bulk_create(objs, batch_size=batch_size)
        if objs and objs[0].pk is None:
            raise DatabaseError("bulk_create did not return primary keys: the history chain needs SQLite 3.35+ or PostgreSQL.")
        records = model.history.bulk_history_create(objs, batch_size=batch_size, default_user=default_user,
                                                    default_change_reason=default_change_reason)
        seal(records or [])
    return objs


def bulk_update_with_history(objs, model, fields, *, default_user, default_change_reason: str, batch_size=None) -> int:
    """simple-history's ``bulk_update_with_history``, with the history records it writes sealed."""
    with transaction.atomic(using=model._default_manager.db, savepoint=False):
        rows = model._default_manager.bulk_update(objs, fields, batch_size=batch_size) if fields else 0
        records = model.history.bulk_history_create(objs, batch_size=batch_size, update=True, default_user=default_user,
                                                    default_change_reason=default_change_reason)
        seal(records or [])
    return rows


# Verification -------------------------------------------------------------------------------------

class ChainProblem(NamedTuple):
    model_label: str
    history_id: int
    kind: str  # altered | inserted | deleted | out_of_order | head_mismatch
    message: str


@dataclass
class ChainVerification:
    ok: bool
    head_seq: int
    head_digest: str
    checked: int
    problems: list[ChainProblem] = field(default_factory=list)

    def as_dict(self) -> dict:
        data = asdict(self)
        data["problems"] = [p._asdict() for p in self.problems]
        return data


def verify_chain(*, chunk_size: int = 5000, using: str = DEFAULT_DB_ALIAS) -> ChainVerification:
    """Walk the links in seq order and name every history record altered, inserted or deleted in SQL.

    Each link is checked on its own (its stored digest against the recomputed one, its prev_digest
    against the previous link's digest), so one altered row is reported as exactly that row. Memory
    stays bounded: links are read ``chunk_size`` at a time by seq, their rows per model by id.
    Records the current transaction wrote but has not sealed yet are sealed first.
    """
    seal_pending(using)
    models_by_label = {m._meta.label_lower: m for m in governed_history_models()}
    problems: list[ChainProblem] = []

    def report(label: str, history_id: int, kind: str, message: str) -> None:
        problems.append(ChainProblem(label, history_id, kind, f"{label} #{history_id}: {message}"))

    prev_seq, prev_digest, checked = 0, GENESIS, 0
    last = None
    links = ChainLink.objects.using(using).order_by("seq")
    while True:
        chunk = list(links.filter(seq__gt=prev_seq).values_list("seq", "model_label", "history_id", "digest",
                                                                "prev_digest")[:chunk_size])
        if not chunk:
            break
        rows: dict[tuple[str, int], tuple] = {}
        wanted: dict[str, list[int]] = {}
        for _, label, history_id, _, _ in chunk:
            wanted.setdefault(label, []).append(history_id)
        for label, ids in wanted.items():
            if label in models_by_label:
                for row in _fetch_rows(models_by_label[label], ids, using):
                    rows[(label, row[0])] = row
        for seq, label, history_id, digest, link_prev in chunk:
            checked += 1
            if seq != prev_seq + 1:
                report(label, history_id, "out_of_order", f"link {seq} follows link {prev_seq}: links in between are missing")
            elif link_prev != prev_digest:
                report(label, history_id, "out_of_order", f"link {seq} does not continue the digest of link {prev_seq}")
            row = rows.get((label, history_id))
            if row is None:
                report(label, history_id, "deleted", f"sealed as link {seq}, the record is gone")
            elif record_digest(link_prev, label, history_id, _columns(models_by_label[label]), row) != digest:
                report(label, history_id, "altered", f"the record no longer matches link {seq}: changed after it was sealed")
            prev_seq, prev_digest = seq, digest
            last = (label, history_id)
    for label, history_model in models_by_label.items():
        unsealed = history_model._base_manager.using(using).filter(
            ~Exists(ChainLink.objects.filter(model_label=label, history_id=OuterRef("pk")))
        ).order_by("pk").values_list("pk", flat=True)
        for history_id in unsealed.iterator(chunk_size=chunk_size):
            report(label, history_id, "inserted", "the record is in no link: written behind the application's back")
    head = ChainHead.objects.using(using).filter(pk=HEAD_PK).first()
    head_seq, head_digest = (head.seq, head.digest) if head else (0, GENESIS)
    if (head_seq, head_digest) != (prev_seq, prev_digest):
        label, history_id = last or ("portal.chainhead", 0)
        report(label, history_id, "head_mismatch",
               f"the head is seq {head_seq} / {head_digest}, the last link seq {prev_seq} / {prev_digest}")
    return ChainVerification(ok=not problems, head_seq=head_seq, head_digest=head_digest, checked=checked,
                             problems=problems)
