"""The tamper-evident chains over the evidence: every history record and every append-only evidence row.

One hash rule for both inputs: each link stores ``digest = SHA-256(prev_digest + canonical JSON of the
record)``, where the canonical JSON covers the model label, the record's id and its columns as stored in
the database (read back, so the digest is of what an auditor will read). Which columns, and in which form,
is the link's ``ChainLayout``: a column added to a table later does not change what earlier links cover.
Personal fields (a contact's name and email, the name on an access record) enter the canonical JSON as a
digest salted per record, so the values can be erased on request and the record stays verifiable.

Two chains, each with its own ``ChainHead`` whose row lock serialises sealing: the evidence chain
(history records, lifecycle events, notifications, erasures, purges) and the access chain (access
records, written on every API call and failed sign-in, which must not queue behind decisions).

Every service writes chained models inside ``sealed_atomic``, which seals the records written in it
(single saves reach it through simple-history's ``post_create_historical_record`` signal and
``post_save``, bulk writes through ``seal_ids``) as the last statement of its transaction. Nothing here
seals rows it was not told about, so a row inserted behind the application's back stays unsealed and
verification reports it. Database triggers log every UPDATE, DELETE and TRUNCATE of a chained table
(``ChainTouch``): the application never does either outside a recorded erasure or purge, and
incremental verification re-checks the rows they name however old they are.
"""

from __future__ import annotations

import datetime
import decimal
import functools
import hashlib
import json
import multiprocessing
import operator
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import NamedTuple

from asgiref.local import Local
from django.apps import apps
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, transaction
from django.db.models import CharField, Exists, Func, JSONField, Max, OuterRef, Subquery, TextField
from django.db.models.functions import Cast
from django.db.models.signals import post_save
from django.utils import timezone

from core.errors import ServiceError
from core.models import ChainCheckpoint, ChainErasure, ChainHead, ChainLayout, ChainLink, ChainPurge, ChainTouch

GENESIS = "0" * 64
EVIDENCE, ACCESS = 1, 2
CHAINS = {EVIDENCE: "evidence", ACCESS: "access"}
HEAD_PK = EVIDENCE
FORM = 2  # the canonical form new links are sealed in; form 1 is the form before layouts had personal fields
LINK_BATCH = 5000
FEW_IDS = 100  # a chunk's records of one table read by naming their ids, up to this many
# Batches up to this size are serialised before the head lock is taken (bounded memory above it).
PREPARED_LIMIT = 200


class ChainError(ServiceError):
    """A refused chain operation."""


# What is chained ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Personal:
    fields: tuple[str, ...]
    salt_column: str


_rows: dict[str, tuple] = {}        # label -> (model, chain) of append-only evidence rows
_personal: dict[str, Personal] = {}  # label -> personal fields of a model (and of its history model)


def chain_rows(model, *, chain: int = EVIDENCE) -> None:
    """Chain every row of an append-only ``model`` on ``chain``: each row is sealed when it is created."""
    label = model._meta.label_lower
    _rows[label] = (model, chain)
    post_save.connect(_seal_created_row, sender=model, dispatch_uid=f"chain-row-{label}")


def declare_personal(model, fields: Iterable[str], *, salt_column: str) -> None:
    """The chain covers ``fields`` of ``model`` (and of its history records) as digests salted with the
    record's ``salt_column``, so the values can be erased (``erase_personal``) and stay verifiable."""
    personal = Personal(tuple(fields), salt_column)
    _personal[model._meta.label_lower] = personal
    manager_name = getattr(model._meta, "simple_history_manager_attribute", None)
    if manager_name:
        _personal[getattr(model, manager_name).model._meta.label_lower] = personal


def governed_history_models() -> list:
    """The historical models of every model with ``HistoricalRecords``, in a stable order."""
    found = []
    for model in apps.get_models():
        manager_name = getattr(model._meta, "simple_history_manager_attribute", None)
        if manager_name:
            found.append(getattr(model, manager_name).model)
    return sorted(found, key=lambda m: m._meta.label_lower)


def chained_models() -> dict[str, tuple]:
    """{label: (model, chain)} of every chained table: history records and append-only rows."""
    found = {m._meta.label_lower: (m, EVIDENCE) for m in governed_history_models()}
    found.update(_rows)
    return dict(sorted(found.items()))


def chain_of(model) -> int:
    return _rows.get(model._meta.label_lower, (None, EVIDENCE))[1]


# The canonical form -------------------------------------------------------------------------------

def _utc_iso(value: datetime.datetime) -> str:
    # isoformat is the strftime below, several times faster; strftime stays for years before 1000, which
    # it does not pad to four digits.
    if value.tzinfo is None:
        if value.year < 1000:
            return value.strftime("%Y-%m-%dT%H:%M:%S.%f")
        return value.isoformat(timespec="microseconds")
    value = value.astimezone(datetime.UTC)
    if value.year < 1000:
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return value.isoformat(timespec="microseconds")[:-6] + "Z"  # without its "+00:00"


# json.dumps with these arguments builds the same encoder on every call: built once, the same output.
_CANONICAL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
_VALUE_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _json_text(value) -> str:
    return _VALUE_JSON.encode(value)


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


def _text(value):
    return value if value is None or type(value) is str else _AS_TEXT.get(type(value), str)(value)


def salted_digest(salt: str, value) -> str | None:
    """The form a personal value takes in the chain: SHA-256 of the record's salt and the value."""
    if value is None:
        return None
    return "salted-sha256:" + hashlib.sha256(f"{salt}:{_text(value)}".encode()).hexdigest()


def chained_digest(prev_digest: str, payload: bytes) -> str:
    return hashlib.sha256(prev_digest.encode("ascii") + payload).hexdigest()


def record_payload(model_label: str, record_id: int, columns: Sequence[str], row: tuple, *, form: int = 1) -> bytes:
    """The record's canonical JSON (sorted keys, values as strings), UTF-8 encoded.

    ``row`` holds the values of ``columns`` in the form the chain covers (personal values as their
    salted digests, see ``Layout.values``).
    """
    if len(row) != len(columns):
        raise ValueError(f"{len(columns)} columns, {len(row)} values")
    keys = _sorted_keys(tuple(columns))
    if keys is None or type(form) is not int:
        return _generic_payload(model_label, record_id, columns, row, form)
    return _sorted_payload(keys, model_label, record_id, row, form)


def _sorted_payload(keys: _SortedKeys, model_label: str, record_id: int, row: tuple, form: int) -> bytes:
    # json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False), written out: the keys
    # are sorted and encoded once per layout, every value is a string or null. Twice as fast, the same bytes
    # (tests/portal/test_chain_streaming.py holds the two side by side).
    as_text, encode = _AS_TEXT.get, _encode_string
    fields = ",".join([key + "null" if value is None else
                       key + encode(value if type(value) is str else as_text(type(value), str)(value))
                       for key, value in zip(keys.keys, keys.pick(row), strict=True)])
    if form == 1:
        text = f'{{"fields":{{{fields}}},"history_id":{encode(str(record_id))},"model":{encode(model_label)}}}'
    else:
        text = f'{{"fields":{{{fields}}},"form":{form},"id":{encode(str(record_id))},"model":{encode(model_label)}}}'
    return text.encode("utf-8")


# json's own string encoder (ensure_ascii=False), the one json.dumps above uses.
_encode_string = json.encoder.encode_basestring


class _SortedKeys(NamedTuple):
    keys: tuple[str, ...]  # each column's JSON key and colon, in sort_keys order
    indexes: tuple[int, ...]  # where each of them is in the row
    pick: Callable[[tuple], tuple]  # the row's values in that order


@functools.lru_cache(maxsize=512)
def _sorted_keys(columns: tuple[str, ...]) -> _SortedKeys | None:
    """The keys of the record's fields as json.dumps sorts and writes them; None if a name repeats (a dict
    keeps the last value: the generic path does it)."""
    if len(set(columns)) != len(columns):
        return None
    indexes = tuple(sorted(range(len(columns)), key=columns.__getitem__))
    pick = operator.itemgetter(*indexes) if len(indexes) > 1 else (lambda row: tuple(row[i] for i in indexes))
    return _SortedKeys(tuple(_encode_string(columns[index]) + ":" for index in indexes), indexes, pick)


def _generic_payload(model_label: str, record_id: int, columns: Sequence[str], row: tuple, form) -> bytes:
    fields = dict(zip(columns, [_text(v) for v in row], strict=True))
    if form == 1:
        document = {"model": model_label, "history_id": str(record_id), "fields": fields}
    else:
        document = {"form": form, "model": model_label, "id": str(record_id), "fields": fields}
    return _CANONICAL_JSON.encode(document).encode("utf-8")


def record_digest(prev_digest: str, model_label: str, history_id: int, columns: list[str], row: tuple) -> str:
    """The digest of a form-1 record (every column as stored, no personal fields)."""
    return chained_digest(prev_digest, record_payload(model_label, history_id, columns, row))


@dataclass(frozen=True)
class Layout:
    """A ``ChainLayout`` in memory: the columns a link covers and how to read them."""

    id: int
    model_label: str
    form: int
    columns: tuple[str, ...]
    personal: tuple[str, ...]
    salt_column: str

    @property
    def fetched(self) -> list[str]:
        """The columns read from the table: the covered ones, then the salt if there is one."""
        return [*self.columns, self.salt_column] if self.salt_column else list(self.columns)

    def values(self, row: tuple, erased: dict | None = None) -> tuple:
        """The covered values of a fetched row, personal ones as salted digests (or as recorded at erasure)."""
        if not self.personal:
            return row
        values = list(row[:len(self.columns)])
        salt = row[-1]
        for index, name in enumerate(self.columns):
            if name in self.personal:
                values[index] = erased[name] if erased and name in erased else salted_digest(salt, values[index])
        return tuple(values)

    def payload(self, row: tuple, erased: dict | None = None) -> bytes:
        keys = self.sorted_keys
        if keys is None or type(self.form) is not int or len(row) != len(self.fetched):
            return record_payload(self.model_label, row[0], self.columns, self.values(row, erased), form=self.form)
        return _sorted_payload(keys, self.model_label, row[0], self.values(row, erased), self.form)

    @functools.cached_property
    def sorted_keys(self) -> _SortedKeys | None:
        return _sorted_keys(tuple(self.columns))


def _current_columns(model, salt_column: str) -> tuple[str, ...]:
    """Every concrete column of the model, its primary key first, without the salt."""
    pk = model._meta.pk.attname
    return tuple([pk] + [f.attname for f in model._meta.concrete_fields if f.attname not in (pk, salt_column)])


def layout_signature(label: str, form: int, columns, personal, salt_column: str) -> str:
    return hashlib.sha256(_json_text([label, form, list(columns), list(personal), salt_column]).encode()).hexdigest()


_layouts = Local()


def _known_layouts(using: str) -> dict:
    known = getattr(_layouts, "by_alias", None)
    if known is None:
        known = _layouts.by_alias = {}
    return known.setdefault(using, {})


def forget_layouts(**kwargs) -> None:
    """``post_migrate``: the layouts of a flushed or migrated database are looked up again."""
    _layouts.by_alias = {}


def current_layout(model, using: str = DEFAULT_DB_ALIAS) -> Layout:
    """The layout new links of ``model`` are sealed in, created on first use."""
    label = model._meta.label_lower
    known = _known_layouts(using)
    if label in known:
        return known[label]
    personal = _personal.get(label, Personal((), ""))
    columns = _current_columns(model, personal.salt_column)
    signature = layout_signature(label, FORM, columns, personal.fields, personal.salt_column)
    layouts = ChainLayout.objects.using(using)
    row = layouts.filter(signature=signature).first()
    if row is None:
        layouts.bulk_create([ChainLayout(model_label=label, form=FORM, columns=list(columns),
                                         personal=list(personal.fields), salt_column=personal.salt_column,
                                         signature=signature)], ignore_conflicts=True)
        row = layouts.get(signature=signature)
    known[label] = layout = _as_layout(row)
    return layout


def _as_layout(row: ChainLayout) -> Layout:
    return Layout(row.pk, row.model_label, row.form, tuple(row.columns), tuple(row.personal or ()), row.salt_column)


def ensure_layouts(using: str = DEFAULT_DB_ALIAS, **kwargs) -> None:
    """``post_migrate``: record the current layout of every chained table (outside any test's transaction)."""
    forget_layouts()
    for model, _ in chained_models().values():
        current_layout(model, using)


def _fetch_rows(model, columns: list[str], ids: Iterable[int], using: str) -> Iterator[tuple]:
    """The stored rows for ``ids`` in id order, as tuples of ``columns`` (the primary key first)."""
    pk = model._meta.pk.attname
    ids = sorted(set(ids))
    # SQLite's parameter limit is 999 on older builds.
    step = 900 if connections[using].vendor == "sqlite" else LINK_BATCH
    rows = model._base_manager.using(using).order_by(pk).values_list(*columns)
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
        self.records: list[tuple] = []  # (model, record id)

    def take(self) -> dict:
        """{model: {ids}}, and nothing left pending."""
        batch: dict = {}
        for model, record_id in self.records:
            batch.setdefault(model, set()).add(record_id)
        self.records.clear()
        return batch


_scopes = Local()


def _scope(using: str) -> _Scope:
    scopes = getattr(_scopes, "by_alias", None)
    if scopes is None:
        scopes = _scopes.by_alias = {}
    return scopes.setdefault(using, _Scope())


class SealedAtomic:
    """``transaction.atomic`` that seals the chained records written inside it.

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
    """``transaction.atomic`` for every write of chained models: usable as ``@sealed_atomic``,
    ``@sealed_atomic(using=...)`` and ``with sealed_atomic():``. See ``SealedAtomic``."""
    if callable(using):
        return SealedAtomic(None, savepoint, durable)(using)
    return SealedAtomic(using, savepoint, durable)


def seal_ids(model, ids: Iterable[int], *, using: str = DEFAULT_DB_ALIAS) -> None:
    """Chain these rows of a chained model (history records or append-only rows), written by the current
    transaction.

    Inside ``sealed_atomic`` they are sealed when its outermost block ends; elsewhere at once, inside
    the current transaction if there is one.
    """
    ids = list(ids)
    if not ids:
        return
    scope = _scope(using)
    if scope.depth:
        scope.records.extend((model, record_id) for record_id in ids)
        return
    with transaction.atomic(using=using):
        _seal({model: set(ids)}, using)


def seal(records: Iterable, *, using: str = DEFAULT_DB_ALIAS) -> None:
    """Chain these records (instances of one or more chained models); see ``seal_ids``."""
    by_model: dict = {}
    for record in records:
        by_model.setdefault(type(record), []).append(record.pk)
    for model, ids in by_model.items():
        seal_ids(model, ids, using=using)


def _locked_head(chain: int, using: str) -> ChainHead:
    connection = connections[using]
    if connection.vendor == "postgresql":
        # Django's foreign keys are DEFERRABLE INITIALLY DEFERRED: checked at COMMIT, they would lock
        # referenced rows (FOR KEY SHARE) after the head. Run them now so the head is the last lock taken.
        connection.check_constraints()
    heads = ChainHead.objects.using(using).select_for_update()
    head = heads.filter(pk=chain).first()
    if head is None:
        # ON CONFLICT DO NOTHING: a concurrent creator wins and we lock its row.
        ChainHead.objects.using(using).bulk_create([ChainHead(pk=chain)], ignore_conflicts=True)
        head = heads.get(pk=chain)
    return head


def _payloads(batch: dict, using: str) -> Iterator[tuple[Layout, int, bytes]]:
    """(layout, record id, canonical JSON) of every row of ``batch`` that exists, by label and id."""
    for model in sorted(batch, key=lambda m: m._meta.label_lower):
        layout = current_layout(model, using)
        for row in _fetch_rows(model, layout.fetched, batch[model], using):
            yield layout, row[0], layout.payload(row)


def _seal(batch: dict, using: str) -> int:
    """Append one link per existing row of ``batch`` ({model: ids}) to the chain of its model.

    The head locks are the last locks the transaction takes, just before it commits (evidence before
    access, always in that order): a writer holding a head while it waits for a row lock held by a
    writer that waits for the head would deadlock (a campaign close racing reviewers' decisions does
    exactly that). A small batch (a decision, a key change) is read and serialised before the lock, so
    writers queue only for a hash and an insert.
    """
    by_chain: dict[int, dict] = {}
    for model, ids in batch.items():
        if ids:
            by_chain.setdefault(chain_of(model), {})[model] = ids
    sealed = 0
    small = sum(len(ids) for ids in batch.values()) <= PREPARED_LIMIT
    prepared = {chain: list(_payloads(models, using)) if small else None for chain, models in by_chain.items()}
    for chain in sorted(by_chain):
        payloads = prepared[chain] if small else _payloads(by_chain[chain], using)
        if small and not payloads:
            continue
        sealed += _append(chain, payloads, using)
    return sealed


def _append(chain: int, payloads, using: str) -> int:
    head = _locked_head(chain, using)
    seq, digest = head.seq, head.digest
    sealed = 0
    links = []
    for layout, record_id, payload in payloads:
        seq += 1
        prev, digest = digest, chained_digest(digest, payload)
        links.append(ChainLink(chain=chain, seq=seq, model_label=layout.model_label, record_id=record_id,
                               layout_id=layout.id, digest=digest, prev_digest=prev))
        if len(links) >= LINK_BATCH:
            sealed += len(ChainLink.objects.using(using).bulk_create(links))
            links = []
    if links:
        sealed += len(ChainLink.objects.using(using).bulk_create(links))
    if sealed:
        ChainHead.objects.using(using).filter(pk=chain).update(seq=seq, digest=digest, updated_at=timezone.now())
    return sealed


def seal_existing_history(using: str = DEFAULT_DB_ALIAS) -> int:
    """Seal every chained record of a database written before the chain existed, into empty chains.

    Refused once a chain has a link: from then on an unsealed record means tampering, and sealing
    it would hide the evidence.
    """
    with transaction.atomic(using=using):
        heads = [_locked_head(chain, using) for chain in sorted(CHAINS)]
        if any(head.seq for head in heads) or ChainLink.objects.using(using).exists():
            raise ChainError(f"The chain already has {heads[0].seq} links: unsealed records are not older than it.")
        batch = {m: set(m._base_manager.using(using).values_list("pk", flat=True)) for m, _ in chained_models().values()}
        return _seal(batch, using)


def seal_created_record(sender, history_instance, using=None, **kwargs) -> None:
    """``post_create_historical_record`` receiver: every single save's history record is sealed."""
    seal_ids(sender, [history_instance.pk], using=using or DEFAULT_DB_ALIAS)


def _seal_created_row(sender, instance, created, raw=False, using=None, **kwargs) -> None:
    """``post_save`` receiver of append-only rows: a created row is sealed (a fixture load is not)."""
    if created and not raw:
        seal_ids(sender, [instance.pk], using=using or DEFAULT_DB_ALIAS)


def connect_signals() -> None:
    """Seal every single save's history record and the chain's own records; bulk writes call ``seal_ids``."""
    from simple_history.signals import post_create_historical_record

    for history_model in governed_history_models():
        post_create_historical_record.connect(seal_created_record, sender=history_model,
                                              dispatch_uid=f"history-chain-{history_model._meta.label}")
    chain_rows(ChainErasure)
    chain_rows(ChainPurge)


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


def bulk_create_rows(objs, model, *, batch_size=None) -> list:
    """``bulk_create`` of an append-only chained model, its rows sealed."""
    with sealed_atomic(using=model._default_manager.db, savepoint=False):
        objs = model._default_manager.bulk_create(objs, batch_size=batch_size)
        if objs and objs[0].pk is None:
            raise DatabaseError("bulk_create did not return primary keys: the chain needs SQLite 3.35+ or PostgreSQL.")
        seal(objs)
    return objs


# Erasure and retention ----------------------------------------------------------------------------

ERASED = "[erased]"


def erase_personal(records: dict, *, actor, reason: str, subject: str, replacement=None) -> ChainErasure:
    """Erase the personal fields of chained records, keeping them verifiable.

    ``records`` is {model: [ids]} of models with declared personal fields. Inside one sealed
    transaction: the salted digests the chain covers are computed from the values as they are and
    recorded in a chained ``ChainErasure``; then the values and their salts are overwritten
    (``replacement(model, field, record_id)`` gives the new value; ``ERASED`` by default). The
    erasure itself is the only change the application ever makes to a chained row in place.
    """
    replacement = replacement or (lambda model, name, record_id: ERASED)
    digests: dict[str, dict[str, dict]] = {}
    with sealed_atomic():
        # Records written earlier in this transaction are sealed now, as they are, before their values go.
        _seal(_scope(DEFAULT_DB_ALIAS).take(), DEFAULT_DB_ALIAS)
        for model, ids in records.items():
            label = model._meta.label_lower
            personal = _personal[label]
            columns = [model._meta.pk.attname, *personal.fields, personal.salt_column]
            for row in _fetch_rows(model, columns, ids, DEFAULT_DB_ALIAS):
                record_id, salt = row[0], row[-1]
                if not salt:
                    continue  # erased before
                digests.setdefault(label, {})[str(record_id)] = {
                    name: salted_digest(salt, value) for name, value in zip(personal.fields, row[1:-1], strict=True)}
        erasure = ChainErasure.objects.create(actor=actor, reason=reason, subject=subject, digests=digests)
        for model in records:
            label = model._meta.label_lower
            personal = _personal[label]
            for record_id in digests.get(label, {}):
                values = {name: replacement(model, name, int(record_id)) for name in personal.fields}
                model._base_manager.filter(pk=int(record_id)).update(**values, **{personal.salt_column: ""})
    return erasure


def purge_rows(model, *, older_than: datetime.datetime, time_field: str, reason: str) -> ChainPurge | None:
    """Delete the append-only rows of ``model`` older than ``older_than``, recorded in a chained ``ChainPurge``.

    Deletes by id up to the first row that is not old enough, so the purge is one range any verifier
    can check: every row up to ``up_to_id`` is gone, every later one is kept.
    """
    label = model._meta.label_lower
    rows = model._base_manager.all()
    first_kept = rows.filter(**{f"{time_field}__gte": older_than}).order_by("pk").values_list("pk", flat=True).first()
    doomed = rows.filter(pk__lt=first_kept) if first_kept is not None else rows
    up_to_id = doomed.aggregate(top=Max("pk"))["top"]
    if up_to_id is None:
        return None
    with sealed_atomic():
        count = doomed.filter(pk__lte=up_to_id).count()
        purge = ChainPurge.objects.create(model_label=label, up_to_id=up_to_id, count=count, older_than=older_than,
                                          reason=reason)
        model._base_manager.filter(pk__lte=up_to_id).delete()
    return purge


def purge_records(model, ids: Iterable[int], *, reason: str) -> ChainPurge | None:
    """Record that these chained rows of ``model`` are about to be deleted on purpose (deleting their
    parent, for example); call inside the transaction that deletes them."""
    ids = sorted(set(ids))
    if not ids:
        return None
    return ChainPurge.objects.create(model_label=model._meta.label_lower, record_ids=ids, count=len(ids), reason=reason)


# Change log triggers ------------------------------------------------------------------------------

TOUCH_TABLE = ChainTouch._meta.db_table


def _watched_tables() -> list[tuple[str, str]]:
    """(table, primary key column) of every chained table and of the links themselves."""
    tables = [(m._meta.db_table, m._meta.pk.column) for m, _ in chained_models().values()]
    return [*tables, (ChainLink._meta.db_table, ChainLink._meta.pk.column)]


def install_touch_triggers(using: str = DEFAULT_DB_ALIAS, **kwargs) -> None:
    """``post_migrate``: a trigger on each chained table logs every UPDATE, DELETE and TRUNCATE to ``ChainTouch``.

    Idempotent (a migration that rebuilds a table drops its triggers; the next migrate puts them back).
    """
    connection = connections[using]
    with connection.cursor() as cursor:
        quote = connection.ops.quote_name
        if connection.vendor == "postgresql":
            cursor.execute(
                "CREATE OR REPLACE FUNCTION portal_chain_touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF TG_OP = 'TRUNCATE' THEN INSERT INTO {TOUCH_TABLE} (table_name, row_id, operation, at) "
                "VALUES (TG_TABLE_NAME, NULL, TG_OP, now()); "
                f"ELSE INSERT INTO {TOUCH_TABLE} (table_name, row_id, operation, at) "
                "VALUES (TG_TABLE_NAME, (to_jsonb(OLD) ->> TG_ARGV[0])::bigint, TG_OP, now()); END IF; "
                "RETURN NULL; END $$")
            for table, pk in _watched_tables():
                cursor.execute(f"CREATE OR REPLACE TRIGGER portal_chain_touch AFTER UPDATE OR DELETE ON {quote(table)} "
                               f"FOR EACH ROW EXECUTE FUNCTION portal_chain_touch('{pk}')")
                cursor.execute(f"CREATE OR REPLACE TRIGGER portal_chain_truncate AFTER TRUNCATE ON {quote(table)} "
                               f"FOR EACH STATEMENT EXECUTE FUNCTION portal_chain_touch('{pk}')")
        elif connection.vendor == "sqlite":
            for table, pk in _watched_tables():
                for operation in ("UPDATE", "DELETE"):
                    cursor.execute(
                        f"CREATE TRIGGER IF NOT EXISTS {quote(f'chain_touch_{operation.lower()}_{table}')} "
                        f"AFTER {operation} ON {quote(table)} BEGIN INSERT INTO {TOUCH_TABLE} "
                        f"(table_name, row_id, operation, at) VALUES ('{table}', OLD.{quote(pk)}, '{operation}', "
                        "CURRENT_TIMESTAMP); END")


# Verification -------------------------------------------------------------------------------------

class ChainProblem(NamedTuple):
    model_label: str
    record_id: int
    kind: str  # altered | inserted | deleted | out_of_order | head_mismatch | rewritten | overdue
    message: str


@dataclass
class ChainVerification:
    ok: bool
    head_seq: int
    head_digest: str
    checked: int
    problems: list[ChainProblem] = field(default_factory=list)
    heads: dict[str, tuple[int, str]] = field(default_factory=dict)
    scope: str = ChainCheckpoint.Scope.FULL
    since: dict | None = None  # the checkpoint an incremental check started from
    erased: int = 0
    purged: int = 0
    checkpoint: int | None = None

    def as_dict(self) -> dict:
        return {
            "ok": self.ok, "scope": self.scope, "head_seq": self.head_seq, "head_digest": self.head_digest,
            "heads": {name: {"seq": seq, "digest": digest} for name, (seq, digest) in self.heads.items()},
            "checked": self.checked, "erased": self.erased, "purged": self.purged, "since": self.since,
            "checkpoint": self.checkpoint, "problems": [p._asdict() for p in self.problems],
        }


class _CanonicalUtc(Func):
    """An aware datetime column as ``_utc_iso`` writes it, written by PostgreSQL: ``FMYYYY`` as strftime's
    unpadded ``%Y`` (before year 1000), microseconds always."""

    template = "to_char(%(expressions)s AT TIME ZONE 'UTC', 'FMYYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
    output_field = CharField()


class _IsoDate(Func):
    """A date column as ``date.isoformat`` writes it (four-digit year), whatever the server's DateStyle."""

    template = "to_char(%(expressions)s, 'YYYY-MM-DD')"
    output_field = CharField()


# Columns PostgreSQL casts to text exactly as ``_text`` writes their Python values: integers and booleans.
_INTEGER_TYPES = {"IntegerField", "BigIntegerField", "SmallIntegerField", "PositiveIntegerField",
                  "PositiveBigIntegerField", "PositiveSmallIntegerField", "AutoField", "BigAutoField", "SmallAutoField"}


def _as_text_in_sql(field_) -> bool:
    if hasattr(field_, "from_db_value"):
        return False
    kind = field_.get_internal_type()
    if kind == "ForeignKey":
        target = field_.target_field
        return not hasattr(target, "from_db_value") and target.get_internal_type() in _INTEGER_TYPES
    return kind == "BooleanField" or kind in _INTEGER_TYPES


class _Verifier:
    """What every verification shares: the tables, layouts, erasures and purges, and the problems found."""

    def __init__(self, using: str, chunk_size: int):
        self.using, self.chunk_size = using, chunk_size
        self.models = {label: model for label, (model, _) in chained_models().items()}
        self.by_table = {model._meta.db_table: label for label, model in self.models.items()}
        self.layouts = {row.pk: _as_layout(row) for row in ChainLayout.objects.using(using)}
        self.erased = self._erasures()
        self.purges = self._purges()
        self.problems: list[ChainProblem] = []
        self.reported: set[tuple[str, int, str]] = set()
        self.checked = self.erased_seen = self.purged_seen = 0
        self.selects: dict[tuple[str, int], list] = {}
        self.json_at: dict[tuple[str, int], tuple[int, ...]] = {}
        # A full walk counts, per table, the rows it found up to each table's high-water mark (see unsealed).
        self.tally: dict[str, int] | None = None
        self.found: dict[str, int] = {}
        self.server_datetimes = settings.USE_TZ and connections[using].vendor == "postgresql"

    def _erasures(self) -> dict[tuple[str, int], dict]:
        erased = {}
        for digests in ChainErasure.objects.using(self.using).values_list("digests", flat=True):
            for label, records in (digests or {}).items():
                for record_id, fields in records.items():
                    erased[(label, int(record_id))] = fields
        return erased

    def _purges(self) -> dict[str, tuple[int, set]]:
        """{label: (every id up to this one, and these ids)} deleted by a recorded purge."""
        purges: dict[str, tuple[int, set]] = {}
        for label, up_to_id, record_ids in ChainPurge.objects.using(self.using).values_list(
                "model_label", "up_to_id", "record_ids"):
            top, ids = purges.get(label, (0, set()))
            purges[label] = (max(top, up_to_id or 0), ids | {int(i) for i in record_ids or ()})
        return purges

    def purged(self, label: str, record_id: int) -> bool:
        top, ids = self.purges.get(label, (0, set()))
        return record_id <= top or record_id in ids

    def report(self, label: str, record_id: int, kind: str, message: str) -> None:
        self.add(ChainProblem(label, record_id, kind, f"{label} #{record_id}: {message}"))

    def add(self, problem: ChainProblem) -> None:
        """Keep ``problem`` unless the same kind was reported of the same record already."""
        key = (problem.model_label, problem.record_id, problem.kind)
        if key not in self.reported:
            self.reported.add(key)
            self.problems.append(problem)

    def rows_for(self, links: list[tuple]) -> dict[tuple[str, int], tuple]:
        """The stored rows of ``links`` ((label, record id, layout id) ...), fetched per table and layout."""
        wanted: dict[tuple[str, int], list[int]] = {}
        for label, record_id, layout_id in links:
            wanted.setdefault((label, layout_id), []).append(record_id)
        rows = {}
        for (label, layout_id), ids in wanted.items():
            layout = self.layouts.get(layout_id)
            if label not in self.models or layout is None:
                continue
            try:
                for row in _fetch_rows(self.models[label], layout.fetched, ids, self.using):
                    rows[(label, row[0])] = row
            except DatabaseError:
                # A column the layout covers is gone from the table: every record of it fails below.
                continue
        return rows

    def rows_of_links(self, chain: int, first_seq: int, last_seq: int, groups: dict) -> dict[tuple[str, int], tuple]:
        """The stored rows of the links ``first_seq``..``last_seq`` of ``chain``, whose record ids ``groups`` holds
        per (label, layout id): per table and layout one query, chosen by the ids' shape. A few ids are named
        (a join would cost a parallel plan for a handful of rows); ids close together are read as their range
        (one pass over the table's pages rather than a probe per id); others by joining the chunk's links in
        the database (no long id list travels, whatever the ids' spread)."""
        rows = {}
        for (label, layout_id), ids in sorted(groups.items()):
            layout = self.layouts.get(layout_id)
            model = self.models.get(label)
            if model is None or layout is None:
                continue
            found = model._base_manager.using(self.using).order_by()  # by id: no model's default order
            low, high, wanted = min(ids), max(ids), None
            if len(ids) <= FEW_IDS:
                found = found.filter(pk__in=ids)
            elif high - low < 2 * len(ids):
                found, wanted = found.filter(pk__gte=low, pk__lte=high), set(ids)
            else:
                links = ChainLink.objects.using(self.using).filter(
                    chain=chain, seq__gte=first_seq, seq__lte=last_seq, model_label=label, layout_id=layout_id)
                found = found.filter(pk__in=links.values("record_id"))
            try:
                for row in self.stored_rows(model, layout, found.values_list(*self.selected(model, layout))):
                    if wanted is None or row[0] in wanted:
                        rows[(label, row[0])] = row
            except DatabaseError:
                # A column the layout covers is gone from the table: every record of it fails below.
                continue
        return rows

    def selected(self, model, layout: Layout) -> list:
        """What the walk selects for the columns of ``layout``: the columns, except that on PostgreSQL the
        database writes aware datetimes in their canonical form (``_utc_iso``) and JSON as its text; loading
        datetimes through the driver and formatting them again costs a third of the walk, and JSON is read
        back below without a converter per row."""
        key = (model._meta.label_lower, layout.id)
        if key not in self.selects:
            fields = {f.attname: f for f in model._meta.concrete_fields}
            selects, json_at = [], []
            for index, name in enumerate(layout.fetched):
                field_ = fields.get(name) if self.server_datetimes else None
                if field_ is None:
                    selects.append(name)
                elif field_.get_internal_type() == "DateTimeField" and not hasattr(field_, "from_db_value"):
                    selects.append(_CanonicalUtc(name))
                elif index and _as_text_in_sql(field_):
                    selects.append(Cast(name, TextField()))
                elif field_.get_internal_type() == "DateField" and not hasattr(field_, "from_db_value"):
                    selects.append(_IsoDate(name))
                elif isinstance(field_, JSONField) and field_.decoder is None and type(field_).from_db_value is \
                        JSONField.from_db_value:
                    selects.append(Cast(name, TextField()))
                    json_at.append(index)
                else:
                    selects.append(name)
            self.selects[key] = selects
            self.json_at[key] = tuple(json_at)
        return self.selects[key]

    def stored_rows(self, model, layout: Layout, rows) -> Iterator[tuple]:
        """``rows`` selected as ``selected`` says, each JSON value in the text form the chain covers: the
        value JSONField would load, written as ``_text`` writes it."""
        json_at = self.json_at[(model._meta.label_lower, layout.id)]
        if not json_at:
            yield from rows
            return
        loads = json.loads
        for row in rows:
            row = list(row)
            for index in json_at:
                if row[index] is not None:
                    row[index] = _text(loads(row[index]))
            yield tuple(row)

    def check_record(self, seq: int, chain: int, label: str, record_id: int, layout_id: int, digest: str,
                     prev: str, row: tuple | None) -> None:
        self.checked += 1
        layout = self.layouts.get(layout_id)
        erased = self.erased.get((label, record_id)) if self.erased else None
        if row is not None and layout is not None and erased is None and not (layout.salt_column and not row[-1]):
            # The common case, kept short: it runs for every record verified.
            if chained_digest(prev, layout.payload(row)) != digest:
                self.report(label, record_id, "altered", f"the record no longer matches {self.where(seq, chain)}: "
                                                         "changed after it was sealed")
            return
        where = self.where(seq, chain)
        if row is None:
            if self.purged(label, record_id):
                self.purged_seen += 1
            else:
                self.report(label, record_id, "deleted", f"sealed as {where}, the record is gone")
            return
        if layout is None:
            self.report(label, record_id, "altered", f"{where} names a layout that no longer exists")
            return
        if layout.salt_column and not row[-1] and erased is None:
            self.report(label, record_id, "altered", f"its personal data was removed without a recorded erasure ({where})")
            return
        if erased is not None:
            self.erased_seen += 1
            if not layout.personal:
                # Sealed before its personal fields were salted (form 1): the recorded erasure vouches for it.
                return
        if chained_digest(prev, layout.payload(row, erased)) != digest:
            self.report(label, record_id, "altered", f"the record no longer matches {where}: changed after it was sealed")

    @staticmethod
    def where(seq: int, chain: int) -> str:
        return f"link {seq} of the {CHAINS.get(chain, chain)} chain"

    def walk(self, chain: int, after_seq: int, after_digest: str, up_to_seq: int | None = None) -> tuple[int, str]:
        """Check every link of ``chain`` after ``after_seq`` (up to ``up_to_seq``); returns the last (seq, digest).

        Streams in keyset chunks by seq (no server-side cursor, so it works behind a transaction pooler):
        memory holds one chunk of links and their rows, whatever the length of the chain.
        """
        prev_seq, prev_digest = after_seq, after_digest
        links = ChainLink.objects.using(self.using).filter(chain=chain).order_by("seq")
        if up_to_seq is not None:
            links = links.filter(seq__lte=up_to_seq)
        while True:
            chunk = list(links.filter(seq__gt=prev_seq).values_list(
                "seq", "model_label", "record_id", "layout_id", "digest", "prev_digest")[:self.chunk_size])
            if not chunk:
                break
            groups: dict[tuple[str, int], list[int]] = {}
            for _, label, record_id, layout_id, _, _ in chunk:
                groups.setdefault((label, layout_id), []).append(record_id)
            rows = self.rows_of_links(chain, chunk[0][0], chunk[-1][0], groups)
            if self.tally is not None:
                for label, record_id in rows:
                    if record_id <= self.tally.get(label, 0):
                        self.found[label] = self.found.get(label, 0) + 1
            for seq, label, record_id, layout_id, digest, link_prev in chunk:
                if seq != prev_seq + 1:
                    self.report(label, record_id, "out_of_order",
                                f"link {seq} follows link {prev_seq}: links in between are missing")
                elif link_prev != prev_digest:
                    self.report(label, record_id, "out_of_order",
                                f"link {seq} does not continue the digest of link {prev_seq}")
                self.check_record(seq, chain, label, record_id, layout_id, digest, link_prev,
                                  rows.get((label, record_id)))
                prev_seq, prev_digest = seq, digest
        return prev_seq, prev_digest

    def unsealed(self, high_water: dict[str, int] | None = None, counted: dict[str, int] | None = None) -> None:
        """Rows in no link (above each table's high-water mark when given): written behind the application's back.

        After a full walk, ``counted`` holds each table's rows up to its high-water mark, counted before the
        walk: a table where the walk found as many rows has none unsealed below the mark (each row has at most
        one link), and only the rows above it are looked up. Any other table is searched row by row (the
        anti-join costs a probe per row: 70 s at ten million). Keyset chunks by id, like the walk: no
        server-side cursor, and each query resumes where the last ended.
        """
        for label, model in self.models.items():
            rows = model._base_manager.using(self.using)
            after = high_water.get(label, 0) if high_water is not None else None
            if counted is not None and self.tally is not None and counted.get(label) == self.found.get(label, 0):
                after = self.tally.get(label, 0)
            unsealed = rows.filter(
                ~Exists(ChainLink.objects.filter(model_label=label, record_id=OuterRef("pk")))
            ).order_by("pk").values_list("pk", flat=True)
            while True:
                chunk = list((unsealed if after is None else unsealed.filter(pk__gt=after))[:self.chunk_size])
                for record_id in chunk:
                    self.report(label, record_id, "inserted",
                                "the record is in no link: written behind the application's back")
                if len(chunk) < self.chunk_size:
                    break
                after = chunk[-1]

    def touched(self, after_id: int, up_to_id: int) -> None:
        """Re-check every row the triggers saw updated or deleted (a truncated table: all its links)."""
        touches = (ChainTouch.objects.using(self.using).filter(pk__gt=after_id, pk__lte=up_to_id)
                   .values_list("table_name", "row_id", "operation").distinct())
        by_label: dict[str, set] = {}
        for table, row_id, operation in touches:
            if table == ChainLink._meta.db_table:
                self.report("portal.chainlink", row_id or 0, "rewritten",
                            f"a link was {'deleted' if operation != 'UPDATE' else 'changed'} in SQL")
                continue
            label = self.by_table.get(table)
            if label is None:
                continue
            if row_id is None:
                by_label[label] = None  # truncated: every link of the table
            elif by_label.get(label, set()) is not None:
                by_label.setdefault(label, set()).add(row_id)
        for label, ids in by_label.items():
            links = ChainLink.objects.using(self.using).filter(model_label=label)
            if ids is None:
                self.recheck_links(label, links, collect=False)
                continue
            ids = sorted(ids)
            for start in range(0, len(ids), self.chunk_size):
                chunk = ids[start:start + self.chunk_size]
                found = self.recheck_links(label, links.filter(record_id__in=chunk))
                reported = {record_id for reported_label, record_id, _ in self.reported if reported_label == label}
                for record_id in set(chunk) - found - reported:
                    self.report(label, record_id, "inserted", "changed in SQL, and in no link")

    def recheck_links(self, label: str, links, *, collect: bool = True) -> set[int]:
        """Check the records of these links of one table, a chunk at a time; returns the record ids they name
        (unless not ``collect``: a truncated table's links may be millions)."""
        found: set[int] = set()
        last = 0
        while True:
            chunk = list(links.filter(pk__gt=last).order_by("pk").values_list(
                "pk", "seq", "chain", "record_id", "layout_id", "digest", "prev_digest")[:self.chunk_size])
            if not chunk:
                return found
            rows = self.rows_for([(label, record_id, layout_id) for _, _, _, record_id, layout_id, _, _ in chunk])
            for _, seq, chain, record_id, layout_id, digest, prev in chunk:
                if collect:
                    found.add(record_id)
                self.check_record(seq, chain, label, record_id, layout_id, digest, prev, rows.get((label, record_id)))
            last = chunk[-1][0]

# Walking in parallel -------------------------------------------------------------------------------

# A walk is split into segments of at least this many links; a shorter chain is walked in one process.
MIN_SEGMENT_LINKS = 200_000
SEGMENTS_PER_WORKER = 4  # more segments than processes, so that one slow segment does not hold the rest


@dataclass
class _Segment:
    """What one process found walking links ``first_seq``..``last_seq`` of ``chain``."""

    chain: int
    reached: tuple[int, str]
    problems: list[ChainProblem]
    checked: int
    erased: int
    purged: int
    found: dict[str, int]


def _walk_segment(using: str, chunk_size: int, chain: int, first_seq: int, last_seq: int,
                  tally: dict[str, int] | None) -> _Segment:
    """Walk one segment in a process of its own. It starts from the stored digest of the link before it, which the
    segment before checks against its record: together the segments check exactly what one walk checks."""
    verifier = _Verifier(using, chunk_size)
    verifier.tally = tally
    before = (ChainLink.objects.using(using).filter(chain=chain, seq__lt=first_seq).order_by("-seq")
              .values_list("seq", "digest").first()) or (0, GENESIS)
    reached = verifier.walk(chain, before[0], before[1], up_to_seq=last_seq)
    connections.close_all()  # the process may be ended before it walks another segment
    return _Segment(chain, reached, verifier.problems, verifier.checked, verifier.erased_seen,
                    verifier.purged_seen, verifier.found)


def _segments(up_to_seq: int, workers: int, min_links: int) -> list[tuple[int, int]]:
    """Seq ranges covering 1..up_to_seq: up to SEGMENTS_PER_WORKER per process and as many for each, none under
    ``min_links``."""
    count = max(1, min(workers * SEGMENTS_PER_WORKER, up_to_seq // max(min_links, 1)))
    if count > workers:
        count -= count % workers  # every process walks as many segments: none is left alone at the end
    bounds = [round(up_to_seq * i / count) for i in range(count + 1)]
    return [(bounds[i] + 1, bounds[i + 1]) for i in range(count) if bounds[i + 1] > bounds[i]]


def _walk_chains(verifier: _Verifier, heads: dict, workers: int, min_links: int) -> dict[int, tuple[int, str]]:
    """Walk every chain up to its head, in ``workers`` processes when the chains are long enough (PostgreSQL
    only, outside a transaction: each process reads through a connection of its own)."""
    using = verifier.using
    jobs = [(chain, first, last) for chain in sorted(CHAINS)
            for first, last in _segments(heads[chain][0], workers, min_links)]
    parallel = (workers > 1 and len(jobs) > len(CHAINS) and connections[using].vendor == "postgresql"
                and not connections[using].in_atomic_block)
    if not parallel:
        return {chain: verifier.walk(chain, 0, GENESIS, up_to_seq=heads[chain][0]) for chain in sorted(CHAINS)}
    # The processes are forked: none may inherit an open connection (they would talk over the same socket).
    connections.close_all()
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork")) as pool:
        futures = [pool.submit(_walk_segment, using, verifier.chunk_size, chain, first, last, verifier.tally)
                   for chain, first, last in jobs]
        segments = [future.result() for future in futures]
    reached = {chain: (0, GENESIS) for chain in CHAINS}
    for segment in segments:  # in chain and seq order, as one walk would have reported them
        for problem in segment.problems:
            verifier.add(problem)
        verifier.checked += segment.checked
        verifier.erased_seen += segment.erased
        verifier.purged_seen += segment.purged
        for label, count in segment.found.items():
            verifier.found[label] = verifier.found.get(label, 0) + count
        reached[segment.chain] = segment.reached
    return reached


def _heads(using: str) -> dict[int, tuple[int, str]]:
    heads = {chain: (0, GENESIS) for chain in CHAINS}
    for pk, seq, digest in ChainHead.objects.using(using).values_list("pk", "seq", "digest"):
        heads[pk] = (seq, digest)
    return heads


def _high_water(models: dict, using: str) -> dict[str, int]:
    return {label: model._base_manager.using(using).aggregate(top=Max("pk"))["top"] or 0
            for label, model in models.items()}


def _last_touch(using: str) -> int:
    return ChainTouch.objects.using(using).aggregate(top=Max("pk"))["top"] or 0


def _result(verifier: _Verifier, heads: dict, reached: dict, scope: str, since: dict | None) -> ChainVerification:
    """Compare where each walk ended with its head, and record a checkpoint when all is intact."""
    for chain in heads:
        # One statement, one snapshot: a link is never committed without its head moving past it.
        beyond = ChainLink.objects.using(verifier.using).filter(
            chain=chain, seq__gt=Subquery(ChainHead.objects.filter(pk=chain).values("seq")[:1]))
        first = beyond.order_by("seq").values_list("seq", "model_label", "record_id").first()
        if first:
            verifier.report(first[1], first[2], "head_mismatch",
                            f"link {first[0]} of the {CHAINS[chain]} chain lies beyond its head: the head was moved back")
    for chain, (seq, digest) in heads.items():
        if reached[chain] != (seq, digest):
            verifier.report(f"portal.chainhead.{CHAINS[chain]}", chain, "head_mismatch",
                            f"the {CHAINS[chain]} head is seq {seq} / {digest}, the last link seq "
                            f"{reached[chain][0]} / {reached[chain][1]}")
    result = ChainVerification(
        ok=not verifier.problems, head_seq=heads[EVIDENCE][0], head_digest=heads[EVIDENCE][1], checked=verifier.checked,
        problems=verifier.problems, heads={CHAINS[c]: heads[c] for c in sorted(heads)}, scope=scope, since=since,
        erased=verifier.erased_seen, purged=verifier.purged_seen)
    return result


def _save_checkpoint(result: ChainVerification, heads: dict, high_water: dict, touch_id: int, using: str) -> None:
    if result.ok:
        checkpoint = ChainCheckpoint.objects.using(using).create(
            scope=result.scope, heads={str(c): list(h) for c, h in heads.items()}, high_water=high_water,
            touch_id=touch_id, checked=result.checked)
        result.checkpoint = checkpoint.pk


def verify_chain(*, chunk_size: int = 5000, using: str = DEFAULT_DB_ALIAS, checkpoint: bool = True, workers: int = 1,
                 min_segment_links: int = MIN_SEGMENT_LINKS) -> ChainVerification:
    """Walk every link of every chain and name every record altered, inserted or deleted in SQL.

    Each link is checked on its own (its stored digest against the recomputed one, its prev_digest
    against the previous link's digest), so one altered row is reported as exactly that row. Memory
    stays bounded: links are read ``chunk_size`` at a time by seq, their rows per table by id. When all
    is intact, a checkpoint records where the heads stood, for incremental checks to start from.

    With ``workers`` above 1 (on PostgreSQL, outside a transaction), long chains are cut into segments of at
    least ``min_segment_links`` links walked by that many processes; the result is the same.
    """
    verifier = _Verifier(using, chunk_size)
    touch_id = _last_touch(using)
    heads = _heads(using)
    high_water = _high_water(verifier.models, using)
    counted = {label: model._base_manager.using(using).filter(pk__lte=high_water[label]).count()
               for label, model in verifier.models.items()}
    verifier.tally = high_water
    # Up to the heads as they stood when the check began: links sealed meanwhile wait for the next check.
    reached = _walk_chains(verifier, heads, workers, min_segment_links)
    verifier.unsealed(counted=counted)
    result = _result(verifier, heads, reached, ChainCheckpoint.Scope.FULL, None)
    if checkpoint:
        _save_checkpoint(result, heads, high_water, touch_id, using)
    return result


def last_checkpoint(using: str = DEFAULT_DB_ALIAS) -> ChainCheckpoint | None:
    return ChainCheckpoint.objects.using(using).order_by("-pk").first()


def verify_since_checkpoint(*, chunk_size: int = 5000, using: str = DEFAULT_DB_ALIAS) -> ChainVerification:
    """Verify what changed since the last intact checkpoint: its cost follows what was written since, not
    all history behind it.

    Checks that the checkpoint's head links are unchanged, every link sealed after them (continuity and
    record), every row inserted above the checkpoint's high-water marks without a link, and every row
    the triggers saw updated, deleted or truncated since, however old. Without a checkpoint, walks
    everything. ``verify_chain`` still walks everything on request.
    """
    base = last_checkpoint(using)
    if base is None:
        return verify_chain(chunk_size=chunk_size, using=using)
    verifier = _Verifier(using, chunk_size)
    touch_id = _last_touch(using)
    heads = _heads(using)
    high_water = _high_water(verifier.models, using)
    reached = {}
    for chain in sorted(CHAINS):
        seq, digest = base.heads.get(str(chain), [0, GENESIS])
        if seq:
            link = ChainLink.objects.using(using).filter(chain=chain, seq=seq).values_list("digest", flat=True).first()
            if link != digest:
                verifier.report(f"portal.chainlink.{CHAINS[chain]}", seq, "rewritten",
                                f"link {seq} of the {CHAINS[chain]} chain is not the one checkpoint {base.pk} verified")
        reached[chain] = verifier.walk(chain, seq, digest, up_to_seq=heads[chain][0])
    verifier.unsealed(base.high_water)
    verifier.touched(base.touch_id, touch_id)
    since = {"checkpoint": base.pk, "made_at": base.made_at.isoformat(), "scope": base.scope,
             "heads": {CHAINS[int(c)]: h for c, h in base.heads.items() if int(c) in CHAINS}}
    result = _result(verifier, heads, reached, ChainCheckpoint.Scope.SINCE, since)
    _save_checkpoint(result, heads, high_water, touch_id, using)
    return result


def verify_against_head(seq: int, digest: str, *, chain: int = EVIDENCE, chunk_size: int = 5000,
                        using: str = DEFAULT_DB_ALIAS) -> ChainVerification:
    """Prove that nothing up to a head printed in an old report has changed since: every link up to ``seq``
    still matches its record and the chain still reaches ``digest`` at ``seq``."""
    verifier = _Verifier(using, chunk_size)
    reached_seq, reached_digest = verifier.walk(chain, 0, GENESIS, up_to_seq=seq)
    if (reached_seq, reached_digest) != (seq, digest):
        verifier.report(f"portal.chainhead.{CHAINS[chain]}", seq, "head_mismatch",
                        f"the {CHAINS[chain]} chain reaches seq {reached_seq} / {reached_digest}, "
                        f"not the head given (seq {seq} / {digest})")
    return ChainVerification(ok=not verifier.problems, head_seq=seq, head_digest=digest, checked=verifier.checked,
                             problems=verifier.problems, heads={CHAINS[chain]: (reached_seq, reached_digest)},
                             scope="against_head", erased=verifier.erased_seen, purged=verifier.purged_seen)
