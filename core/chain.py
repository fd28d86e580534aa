"""The tamper-evident hash chain over every history record of the governed models.

One global chain: each link stores ``digest = SHA-256(prev_digest + canonical JSON of the record)``,
where the canonical JSON covers the model label, the history id and every concrete column of the
historical model as stored in the database (read back, so the digest is of what an auditor will read).
``ChainHead`` holds the last seq and digest; its row lock serialises sealing, so concurrent writers
cannot fork the chain.

Every service writes governed models inside ``sealed_atomic``, which seals the records written in it
(single saves reach it through simple-history's ``post_create_historical_record`` signal, bulk writes
through ``seal_ids``) as the last statement of its transaction. Nothing here seals rows it was not
told about, so a row inserted behind the application's back stays unsealed and ``verify_chain``
reports it.
"""

from __future__ import annotations

import datetime
import decimal
import functools
import hashlib
import json
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

from asgiref.local import Local
from django.apps import apps
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from core.errors import ServiceError
from core.models import ChainHead, ChainLink

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

class _Scope:
    """The records written inside this thread's open ``sealed_atomic`` blocks on one database."""

    def __init__(self):
        self.depth = 0
        self.records: list[tuple] = []  # (history model, history id)

    def take(self) -> dict:
        """{history model: {ids}}, and nothing left pending."""
        batch: dict = {}
        for history_model, history_id in self.records:
            batch.setdefault(history_model, set()).add(history_id)
        self.records.clear()
        return batch


_scopes = Local()


def _scope(using: str) -> _Scope:
    scopes = getattr(_scopes, "by_alias", None)
    if scopes is None:
        scopes = _scopes.by_alias = {}
    return scopes.setdefault(using, _Scope())


class SealedAtomic:
    """``transaction.atomic`` that seals the history records written inside it.

    The outermost ``sealed_atomic`` block seals, as its last statement and inside its transaction, every
    record written in it that still exists: a crash before the commit loses the records and their links
    together, never one without the other. Records of an inner block that raised are dropped; a record
    rolled back some other way (a plain savepoint) is no longer there to read, and is skipped.
    """

    def __init__(self, using: str | None, savepoint: bool, durable: bool):
        self.using, self.savepoint, self.durable = using or DEFAULT_DB_ALIAS, savepoint, durable
        self.atomic = transaction.atomic(using=self.using, savepoint=savepoint, durable=durable)

    def __call__(self, func):
        @functools.wraps(func)
        def sealed(*args, **kwargs):
            # A new block per call: the decorator is shared by every thread and by recursive calls.
            with SealedAtomic(self.using, self.savepoint, self.durable):
                return func(*args, **kwargs)

        return sealed

    def __enter__(self):
        self.atomic.__enter__()
        scope = _scope(self.using)
        self.mark = len(scope.records)
        scope.depth += 1
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        scope = _scope(self.using)
        scope.depth -= 1
        if exc_type is not None:
            del scope.records[self.mark:]
        elif scope.depth == 0:
            batch = scope.take()
            if not transaction.get_rollback(using=self.using):
                try:
                    _seal(batch, self.using)
                except BaseException as error:
                    self.atomic.__exit__(type(error), error, error.__traceback__)
                    raise
        return self.atomic.__exit__(exc_type, exc_value, traceback)


def sealed_atomic(using=None, *, savepoint: bool = True, durable: bool = False):
    """``transaction.atomic`` for every write of governed models: usable as ``@sealed_atomic``,
    ``@sealed_atomic(using=...)`` and ``with sealed_atomic():``. See ``SealedAtomic``."""
    if callable(using):
        return SealedAtomic(None, savepoint, durable)(using)
    return SealedAtomic(using, savepoint, durable)


def seal_ids(history_model, ids: Iterable[int], *, using: str = DEFAULT_DB_ALIAS) -> None:
    """Chain these history rows, written by the current transaction.

    Inside ``sealed_atomic`` they are sealed when its outermost block ends; elsewhere at once, inside
    the current transaction if there is one.
    """
    ids = list(ids)
    if not ids:
        return
    scope = _scope(using)
    if scope.depth:
        scope.records.extend((history_model, history_id) for history_id in ids)
        return
    with transaction.atomic(using=using):
        _seal({history_model: set(ids)}, using)


def seal(history_records: Iterable, *, using: str = DEFAULT_DB_ALIAS) -> None:
    """Chain these history records (instances of one or more historical models); see ``seal_ids``."""
    by_model: dict = {}
    for record in history_records:
        by_model.setdefault(type(record), []).append(record.pk)
    for history_model, ids in by_model.items():
        seal_ids(history_model, ids, using=using)


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


def _payloads(batch: dict, using: str) -> Iterator[tuple[str, int, bytes]]:
    """(label, history id, canonical JSON) of every row of ``batch`` that exists, by label and id."""
    for history_model in sorted(batch, key=lambda m: m._meta.label_lower):
        label = history_model._meta.label_lower
        columns = _columns(history_model)
        for row in _fetch_rows(history_model, batch[history_model], using):
            yield label, row[0], record_payload(label, row[0], columns, row)


def _seal(batch: dict, using: str) -> int:
    """Lock the head and append one link per existing row of ``batch`` ({history model: ids}).

    The head lock is the last lock the transaction takes, just before it commits: a writer holding the
    head while it waits for a row lock held by a writer that waits for the head would deadlock (a
    campaign close racing reviewers' decisions does exactly that). A small batch (a decision, a key
    change) is read and serialised before the lock, so writers queue only for a hash and an insert.
    """
    if not any(batch.values()):
        return 0
    payloads = _payloads(batch, using)
    if sum(len(ids) for ids in batch.values()) <= PREPARED_LIMIT:
        payloads = list(payloads)
        if not payloads:
            return 0
    head = _locked_head(using)
    seq, digest = head.seq, head.digest
    sealed = 0
    links = []
    for label, history_id, payload in payloads:
        seq += 1
        prev, digest = digest, chained_digest(digest, payload)
        links.append(ChainLink(seq=seq, model_label=label, history_id=history_id, digest=digest, prev_digest=prev))
        if len(links) >= LINK_BATCH:
            sealed += len(ChainLink.objects.using(using).bulk_create(links))
            links = []
    if links:
        sealed += len(ChainLink.objects.using(using).bulk_create(links))
    if sealed:
        ChainHead.objects.using(using).filter(pk=HEAD_PK).update(seq=seq, digest=digest, updated_at=timezone.now())
    return sealed


def seal_existing_history(using: str = DEFAULT_DB_ALIAS) -> int:
    """Seal every history record of a database written before the chain existed, into an empty chain.

    Refused once the chain has a link: from then on an unsealed record means tampering, and sealing
    it would hide the evidence.
    """
    with transaction.atomic(using=using):
        head = _locked_head(using)
        if head.seq or ChainLink.objects.using(using).exists():
            raise ChainError(f"The chain already has {head.seq} links: unsealed records are not older than it.")
        batch = {m: set(m._base_manager.using(using).values_list("pk", flat=True)) for m in governed_history_models()}
        return _seal(batch, using)


def seal_created_record(sender, history_instance, using=None, **kwargs) -> None:
    """``post_create_historical_record`` receiver: every single save's history record is sealed."""
    seal_ids(sender, [history_instance.pk], using=using or DEFAULT_DB_ALIAS)


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
    with sealed_atomic(using=model._default_manager.db, savepoint=False):
        objs = model._default_manager.bulk_create(objs, batch_size=batch_size)
        if objs and objs[0].pk is None:
            raise DatabaseError("bulk_create did not return primary keys: the history chain needs SQLite 3.35+ or PostgreSQL.")
        records = model.history.bulk_history_create(objs, batch_size=batch_size, default_user=default_user,
                                                    default_change_reason=default_change_reason)
        seal(records or [])
    return objs


def bulk_update_with_history(objs, model, fields, *, default_user, default_change_reason: str, batch_size=None) -> int:
    """simple-history's ``bulk_update_with_history``, with the history records it writes sealed."""
    with sealed_atomic(using=model._default_manager.db, savepoint=False):
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
    """
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
