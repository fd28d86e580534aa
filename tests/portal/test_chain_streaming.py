"""Verification streams: it reads the chain in bounded chunks, finds the same problems whatever the chunk size,
and the faster canonical form is byte for byte the one every existing link was sealed in."""

import datetime
import decimal
import json
import math
import random
import re
import uuid
import zoneinfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from core import chain
from core.chain import sealed_atomic
from core.models import ChainHead, ChainLink
from keys.choices import LifecycleAction
from keys.models import ApiKey, LifecycleEvent
from tests import factories
from tests.portal.test_evidence_chain import everywhere, oldest_rows, problems, quote, tamper  # noqa: F401
from tests.postgres import requires_postgres

# The canonical form as it was first written (json.dumps of a dict, strftime): the reference the faster
# form must equal, byte for byte, or existing chains would stop verifying.


def reference_utc_iso(value):
    if value.tzinfo is None:
        return value.strftime("%Y-%m-%dT%H:%M:%S.%f")
    return value.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def reference_json_text(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


REFERENCE_AS_TEXT = {
    bool: lambda v: "true" if v else "false", int: str, float: repr, decimal.Decimal: str, uuid.UUID: str,
    datetime.datetime: reference_utc_iso, datetime.date: datetime.date.isoformat, datetime.time: datetime.time.isoformat,
    datetime.timedelta: lambda v: str(v // datetime.timedelta(microseconds=1)), bytes: bytes.hex,
    memoryview: lambda v: v.hex(), dict: reference_json_text, list: reference_json_text, tuple: reference_json_text,
}


def reference_payload(model_label, record_id, columns, row, *, form=1):
    fields = dict(zip(columns, [v if v is None or type(v) is str else REFERENCE_AS_TEXT.get(type(v), str)(v)
                                for v in row], strict=True))
    if form == 1:
        document = {"model": model_label, "history_id": str(record_id), "fields": fields}
    else:
        document = {"form": form, "model": model_label, "id": str(record_id), "fields": fields}
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class Opaque:
    def __str__(self):
        return "opaque \u00e9"


ZONES = [datetime.UTC, zoneinfo.ZoneInfo("Europe/Berlin"), zoneinfo.ZoneInfo("Asia/Kolkata"),
         datetime.timezone(datetime.timedelta(hours=-3, minutes=-30))]
TEXTS = ["", "plain", 'quote " and \\ backslash', "line\nbreak\ttab\x00nul\x1f", "caf\u00e9 \u2603 \U0001f511",
         "\u2028\u2029", "</script>", "null"]


def random_value(rng: random.Random):
    kind = rng.randrange(17)
    year = rng.choice([1, 45, 999, 1000, 1970, 2026, 9999])
    moment = datetime.datetime(year, rng.randint(1, 12), rng.randint(1, 28), rng.randint(0, 23), rng.randint(0, 59),
                               rng.randint(0, 59), rng.choice([0, 1, 999999, rng.randrange(10**6)]))
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice(TEXTS)
    if kind == 2:
        return rng.choice([True, False])
    if kind == 3:
        return rng.choice([0, -1, 2**63 - 1, rng.randrange(-10**12, 10**12)])
    if kind == 4:
        return rng.choice([0.1, -0.0, 1e300, math.inf, math.nan, rng.random()])
    if kind == 5:
        return decimal.Decimal(rng.choice(["1.10", "-0", "1E+3", "3.14159"]))
    if kind == 6:
        return uuid.UUID(int=rng.getrandbits(128))
    if kind == 7:
        if year < 2 or year > 9998:
            return moment  # an offset could carry it out of datetime's range
        return moment.replace(tzinfo=rng.choice(ZONES))
    if kind == 8:
        return moment
    if kind == 9:
        return moment.date()
    if kind == 10:
        return moment.time()
    if kind == 11:
        return datetime.timedelta(microseconds=rng.randrange(-10**12, 10**12))
    if kind == 12:
        return rng.randbytes(rng.randrange(8))
    if kind == 13:
        return {rng.choice(TEXTS): rng.choice(TEXTS), "n": rng.randrange(9), "nested": {"b": [1, None], "a": "\u00e9"},
                "when": moment}
    if kind == 14:
        return [rng.choice(TEXTS), 1, None, {"z": 1, "a": 2}]
    if kind == 15:
        return (1, rng.choice(TEXTS))
    return Opaque()


def test_the_canonical_form_is_byte_for_byte_the_json_dumps_form():
    rng = random.Random(20)
    names = ["id", "history_id", "label", "z", "a", "A", "_x", "\u00e9t\u00e9", 'qu"ote', "a b", "key_id", "10", "9"]
    for _ in range(3000):
        columns = rng.sample(names, rng.randint(1, len(names)))
        row = tuple(random_value(rng) for _ in columns)
        label = rng.choice(["keys.historicalapikey", "portal.accessrecord", "caf\u00e9.mod\u00e8le"])
        record_id = rng.choice([1, 10**15, -3])
        for form in (1, 2):
            assert chain.record_payload(label, record_id, columns, row, form=form) == \
                reference_payload(label, record_id, columns, row, form=form), (columns, row, form)
    # A repeated column name (a dict keeps its last value) and a list of columns take the general path.
    assert chain.record_payload("x.y", 1, ["a", "b", "a"], (1, 2, 3), form=2) == \
        reference_payload("x.y", 1, ["a", "b", "a"], (1, 2, 3), form=2)
    with pytest.raises(ValueError):
        chain.record_payload("x.y", 1, ["a", "b"], (1,))


def sealed_history(owner, actor, keys: int) -> int:
    """``keys`` keys imported in bulk (a history record and an event each), then each suspended on its own:
    links of two tables, in runs and interleaved. Returns how many links the evidence chain has."""
    template = factories.ApiKeyFactory(owner=owner)
    start = ApiKey.objects.count()
    made = [ApiKey(workflow=template.workflow, issuing_system=template.issuing_system, owner=owner, label=f"Key {i}",
                   prefix=f"sk_{i:04d}", fingerprint=f"{i:064x}", status="active", approved_by=actor,
                   approved_at=template.approved_at, issued_on=template.issued_on, expires_on=template.expires_on)
            for i in range(start, start + keys)]
    made = chain.bulk_create_with_history(made, ApiKey, default_user=actor, default_change_reason="import")
    chain.bulk_create_rows([LifecycleEvent(key=k, action=LifecycleAction.IMPORT, to_status="active", actor=actor,
                                           reason="import") for k in made], LifecycleEvent)
    from keys.services import lifecycle

    for key in made:
        lifecycle.suspend_key(key, actor=actor, reason="review")
    return ChainLink.objects.filter(chain=chain.EVIDENCE).count()


def link_chunk_queries(captured) -> int:
    """The walk's reads of links: one per chunk (and the empty one that ends each chain)."""
    table = ChainLink._meta.db_table
    return sum(1 for q in captured if f'"prev_digest" FROM "{table}"' in q["sql"] and "LIMIT" in q["sql"])


@pytest.mark.django_db
def test_verification_reads_the_chain_in_bounded_chunks(owner, compliance_user):
    links = sealed_history(owner, compliance_user, 12)
    assert links >= 48
    counts = {}
    for size in (5, 10, 1000):
        with CaptureQueriesContext(connection) as captured:
            result = chain.verify_chain(chunk_size=size, checkpoint=False)
        assert result.ok and result.checked == ChainLink.objects.count()
        assert link_chunk_queries(captured) == math.ceil(links / size) + 1 + 1  # the evidence chain, the access chain
        for query in captured:
            # No statement carries a long list of ids: a chunk's rows of a table are named only when they are few
            # (else read as their range, or joined to their chunk's links in the database).
            assert not re.search(rf"IN \(\d+(, \d+){{{chain.FEW_IDS},}}\)", query["sql"]), query["sql"][:300]
        counts[size] = len(captured)
    # Beyond a constant part (layouts, heads, the unsealed rows of each table), queries grow with records per
    # chunk: a link query and a row query per table in the chunk.
    assert counts[5] - counts[1000] > 1.7 * (counts[10] - counts[1000]) > 0
    more = sealed_history(owner, compliance_user, 24) - links
    with CaptureQueriesContext(connection) as captured:
        assert chain.verify_chain(chunk_size=5, checkpoint=False).ok
    assert link_chunk_queries(captured) == math.ceil((links + more) / 5) + 2


def everything_found(result) -> tuple:
    return (problems(result), result.checked, result.erased, result.purged, result.ok)


@pytest.mark.django_db
def test_a_small_chunk_finds_every_kind_of_problem_across_chunk_boundaries(everywhere):  # noqa: F811
    """Every chained table altered, a row deleted, a row inserted behind the application's back, a link
    removed and the head moved back; erasures and purges on record: the same findings whatever the chunk."""
    # Seal a few more records so the changes below sit in the middle of the chain, not at its ends.
    from keys.services import lifecycle

    for reason in ("one", "two", "three"):
        lifecycle.suspend_key(everywhere["key"], actor=everywhere["actor"], reason=reason)
        lifecycle.reinstate_key(everywhere["key"], actor=everywhere["actor"], reason=reason)
    # The erasure and the purge stay as recorded, so that erased and purged records are met on the way.
    rows = [row for row in oldest_rows() if row[0] not in ("portal.chainerasure", "portal.chainpurge")]
    altered = {(label, record_id) for label, model, record_id in rows[::2]}
    for _, model, record_id in rows[::2]:
        tamper(model, record_id)
    label, model, record_id = rows[1]
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {quote(model._meta.db_table)} WHERE {quote(model._meta.pk.column)} = %s",
                       [record_id])
        events = LifecycleEvent._meta.db_table
        cursor.execute(f"INSERT INTO {quote(events)} (key_id, action, from_status, to_status, actor_id, reason, details, at) "
                       f"SELECT key_id, action, from_status, to_status, actor_id, 'slipped in', details, at "
                       f"FROM {quote(events)} ORDER BY id LIMIT 1")
        middle = ChainLink.objects.filter(chain=chain.EVIDENCE).order_by("seq").values_list("pk", "seq")[
            ChainLink.objects.filter(chain=chain.EVIDENCE).count() // 2]
        cursor.execute(f"DELETE FROM {quote(ChainLink._meta.db_table)} WHERE id = %s", [middle[0]])
        cursor.execute(f"UPDATE {quote(ChainHead._meta.db_table)} SET seq = seq - 1 WHERE id = %s", [chain.EVIDENCE])
    inserted = LifecycleEvent.objects.order_by("-pk").values_list("pk", flat=True).first()

    whole = chain.verify_chain(checkpoint=False)
    found = problems(whole)
    assert altered <= {(p_label, p_id) for p_label, p_id, kind in found if kind == "altered"}
    assert (label, record_id, "deleted") in found
    assert ("keys.lifecycleevent", inserted, "inserted") in found
    assert any(kind == "out_of_order" for _, _, kind in found)
    assert any(kind == "head_mismatch" for _, _, kind in found)
    assert whole.erased and whole.purged
    for size in (1, 2, 3, 7):
        assert everything_found(chain.verify_chain(chunk_size=size, checkpoint=False)) == everything_found(whole), size
    since = everything_found(chain.verify_since_checkpoint(chunk_size=5000))
    for size in (1, 3):
        assert everything_found(chain.verify_since_checkpoint(chunk_size=size)) == since, size


@requires_postgres
@pytest.mark.django_db
def test_postgresql_writes_datetimes_in_the_form_they_were_sealed_in(owner, compliance_user):
    """The walk has PostgreSQL write aware datetimes as text: the same text sealing wrote from Python, also
    for years before 1000, offsets other than UTC and whole seconds."""
    key = factories.ApiKeyFactory(owner=owner)
    moments = [datetime.datetime(999, 3, 4, 5, 6, 7, tzinfo=datetime.UTC),
               datetime.datetime(1000, 1, 1, 0, 30, tzinfo=zoneinfo.ZoneInfo("Europe/Berlin")),  # 999 in UTC
               datetime.datetime(2026, 12, 7, 1, 2, 3, 456789, tzinfo=zoneinfo.ZoneInfo("Asia/Kolkata")),
               datetime.datetime(2026, 6, 1, tzinfo=datetime.UTC), datetime.datetime(9999, 12, 31, 23, 59, 59, 999999,
                                                                                     tzinfo=datetime.UTC)]
    with sealed_atomic():
        for moment in moments:
            LifecycleEvent.objects.create(key=key, action=LifecycleAction.ATTEST, actor=compliance_user,
                                          reason="dated", at=moment)
    result = chain.verify_chain(checkpoint=False)
    assert result.ok, result.problems
    assert result.checked == ChainLink.objects.count()
    # And a changed second is still a changed record.
    with connection.cursor() as cursor:
        cursor.execute("UPDATE keys_lifecycleevent SET at = at + interval '1 second' WHERE reason = 'dated' "
                       "AND at < '1001-01-01'")
    altered = {record_id for _, record_id, kind in problems(chain.verify_chain(checkpoint=False)) if kind == "altered"}
    assert len(altered) == 2


@requires_postgres
def test_a_walk_in_several_processes_finds_exactly_what_one_walk_finds(owner, compliance_user, transactional_db,
                                                                       monkeypatch):
    """The chain cut into segments walked by forked processes, each with its own connection: the same
    problems in the same order, the same counts and heads, with changes at and around the segments' edges."""
    links = sealed_history(owner, compliance_user, 16)
    segments = chain._segments(links, 2, 3)
    assert len(segments) == 8
    labels = dict(ChainLink.objects.filter(chain=chain.EVIDENCE).values_list("seq", "model_label"))
    ids = dict(ChainLink.objects.filter(chain=chain.EVIDENCE).values_list("seq", "record_id"))
    models = {label: model for label, (model, _) in chain.chained_models().items()}
    # Records altered here and there, the last record of the second segment among them, and the first link of
    # the fourth segment removed.
    for seq in (1, segments[1][1], segments[2][0] + 1, segments[5][1] - 1, links):
        tamper(models[labels[seq]], ids[seq])
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {quote(ChainLink._meta.db_table)} WHERE seq = %s AND chain = %s",
                       [segments[3][0], chain.EVIDENCE])

    one = chain.verify_chain(checkpoint=False)
    assert not one.ok and {p.kind for p in one.problems} >= {"altered", "out_of_order"}
    submitted = []

    class CountingPool(chain.ProcessPoolExecutor):
        def submit(self, *args, **kwargs):
            submitted.append(args[4:6])
            return super().submit(*args, **kwargs)

    monkeypatch.setattr(chain, "ProcessPoolExecutor", CountingPool)
    several = chain.verify_chain(checkpoint=False, workers=2, min_segment_links=3)
    assert [tuple(s) for s in submitted[:8]] == segments  # the evidence chain's segments went to the pool
    assert several.problems == one.problems
    assert (several.checked, several.erased, several.purged, several.heads) == (one.checked, one.erased, one.purged,
                                                                                 one.heads)


@requires_postgres
def test_an_intact_chain_walked_in_several_processes_leaves_a_checkpoint(owner, compliance_user, transactional_db):
    links = sealed_history(owner, compliance_user, 12)
    result = chain.verify_chain(workers=3, min_segment_links=5)
    assert result.ok and result.checked == links and result.checkpoint
    assert chain.verify_since_checkpoint().ok  # the checkpoint is usable: nothing changed since
    # Inside a transaction the processes could not see its writes: the walk stays in this process.
    from django.db import transaction

    with transaction.atomic():
        assert chain.verify_chain(workers=3, min_segment_links=5, checkpoint=False).checked == links


@pytest.mark.parametrize("links, workers, min_links", [(1_000_021, 2, 200_000), (10_000_021, 2, 200_000),
                                                       (10_000_021, 3, 200_000), (100, 4, 3), (5, 2, 3), (0, 2, 3)])
def test_segments_cover_the_chain_once_and_share_it_evenly(links, workers, min_links):
    segments = chain._segments(links, workers, min_links)
    covered = [seq for first, last in segments for seq in (first, last)]
    assert covered == sorted(covered)
    assert sum(last - first + 1 for first, last in segments) == links
    assert all(first == previous_last + 1 for (_, previous_last), (first, _) in zip(segments, segments[1:], strict=False))
    assert len(segments) <= 1 or len(segments) % workers == 0 or len(segments) < workers
    assert all(last - first + 1 >= min_links for first, last in segments) or len(segments) <= 1
