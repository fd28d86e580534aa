"""Usage ingestion on PostgreSQL: batches of events POSTed through the API, beside COPY of the same rows.

    python bench/usage_bench.py [EVENTS] [KEYS] [--batch N] [--profile]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/keys_portal_bench_usage python bench/usage_bench.py

Uses (drops and recreates) the database keys_portal_bench_usage unless DATABASE_URL names another.
Creates KEYS keys (default 1,000), then sends EVENTS events (default 200,000) in batches of N (default
10,000) to POST /api/v1/usage/ with an integration token through django.test.Client (DEBUG off, as in
production; one empty batch first, so the URL conf's import is not timed): parsing, authentication,
validation, key resolution, receipts, daily aggregates and last use, each batch in its transaction, all of
it rolled back at the end. The wall time is split into the service (``usage.ingest_usage``), its SQL
statements and the rest; ``--profile`` adds a cProfile listing.

Beside it, per batch and rolled back: COPY of the same rows the ingest writes (see ``_copy_floor``): the
receipts (COPY), the per-key daily rows (COPY into a staging table, then one INSERT ... ON CONFLICT adding
to the rows that exist), the keys' last use (COPY into a staging table, then one UPDATE ... FROM), and the
foreign-key checks a commit runs. Target (issue 20): the ingest within 3x of that.
"""

import cProfile
import datetime
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _copy_floor import (  # noqa: E402
    StatementClock,
    capture,
    columns_of,
    copy_rows,
    foreign_key_checks,
    median_parts,
    print_profile,
    print_split,
    replay,
    timed_sql,
)
from _setup import setup_django  # noqa: E402

BATCH = 10_000


def make_events(keys, count: int, now, *, prefix: str = "evt", seed: int = 4) -> list[dict]:
    """``count`` usage events as an issuing system reports them, over the last three days, each naming one of
    ``keys`` ((pk, prefix, fingerprint) tuples) by its id, prefix and fingerprint in turn."""
    rng = random.Random(seed)
    refs = ("pk", "prefix", "fingerprint")
    events = []
    for n in range(count):
        pk, key_prefix, fingerprint = keys[rng.randrange(len(keys))]
        ref = {"pk": pk, "prefix": key_prefix, "fingerprint": fingerprint}[refs[n % 3]]
        at = now - datetime.timedelta(seconds=rng.randrange(0, 3 * 86400))
        events.append({"id": f"{prefix}-{n:08d}", "key": ref, "at": at.isoformat(),
                       "source": f"10.0.{n % 7}.{n % 13}"})
    return events


def written_rows(events: list[dict], key_of: dict) -> dict:
    """The rows an ingest of ``events`` (all new, all valid) writes: receipts, daily totals, last use per key."""
    from django.utils import timezone

    from keys.services import usage

    tz = timezone.get_current_timezone()
    now = timezone.now()
    receipts, daily, last_use = [], {}, {}
    for event in events:
        key_id = key_of[event["key"]]
        at = datetime.datetime.fromisoformat(event["at"])
        receipts.append((usage._receipt_id(key_id, event["id"]), key_id, now))
        total = daily.setdefault((key_id, at.astimezone(tz).date()), [0, at, at, {}])
        total[0] += 1
        total[1], total[2] = min(total[1], at), max(total[2], at)
        if event["source"] and len(total[3]) < usage.MAX_SOURCES:
            total[3][event["source"]] = None
        last_use[key_id] = max(last_use.get(key_id, at), at)
    return {
        "receipts": receipts,
        "daily": [(k, d, t[0], t[1], t[2], json.dumps(list(t[3]))) for (k, d), t in sorted(daily.items())],
        "last_use": sorted(last_use.items()),
    }


def copy_usage(batches: list[dict]) -> dict:
    """COPY of the rows the ingest writes, batch by batch (one transaction, rolled back by the caller)."""
    from keys.models import ApiKey, UsageDaily, UsageEventReceipt

    daily, keys = UsageDaily._meta.db_table, ApiKey._meta.db_table
    parts = dict.fromkeys(("receipts (COPY)", "daily rows (COPY to staging + one upsert)",
                           "keys' last use (COPY to staging + one UPDATE)", "foreign-key checks at commit"), 0.0)
    timed_sql("CREATE TEMP TABLE daily_floor (key_id bigint, day date, count integer, first_seen timestamptz, "
              "last_seen timestamptz, sources jsonb) ON COMMIT DROP")
    timed_sql("CREATE TEMP TABLE last_use_floor (id bigint, at timestamptz) ON COMMIT DROP")
    for rows in batches:
        timed_sql("SAVEPOINT floor_batch")  # each batch of the ingest is its own transaction
        parts["receipts (COPY)"] += copy_rows(UsageEventReceipt._meta.db_table, ["event_id", "key_id", "received_at"],
                                              rows["receipts"])
        parts["daily rows (COPY to staging + one upsert)"] += copy_rows(
            "daily_floor", ["key_id", "day", "count", "first_seen", "last_seen", "sources"], rows["daily"]
        ) + timed_sql(
            f"INSERT INTO {daily} AS d (key_id, day, count, first_seen, last_seen, sources) "
            f"SELECT key_id, day, count, first_seen, last_seen, sources FROM daily_floor "
            f"ON CONFLICT (key_id, day) DO UPDATE SET count = d.count + EXCLUDED.count, "
            f"first_seen = LEAST(d.first_seen, EXCLUDED.first_seen), "
            f"last_seen = GREATEST(d.last_seen, EXCLUDED.last_seen), sources = EXCLUDED.sources"
        )
        parts["keys' last use (COPY to staging + one UPDATE)"] += copy_rows(
            "last_use_floor", ["id", "at"], rows["last_use"]
        ) + timed_sql(
            f"UPDATE {keys} SET last_used_at = f.at FROM last_use_floor f "
            f"WHERE {keys}.id = f.id AND ({keys}.last_used_at IS NULL OR {keys}.last_used_at < f.at)"
        )
        parts["foreign-key checks at commit"] += foreign_key_checks()
        timed_sql("SET CONSTRAINTS ALL DEFERRED")
        timed_sql("TRUNCATE daily_floor, last_use_floor")
        timed_sql("RELEASE SAVEPOINT floor_batch")
    return parts


def chained_marks() -> dict:
    """Where the key history, the lifecycle events and the evidence chain stand before the ingest."""
    from django.db.models import Max

    from core.chain import EVIDENCE
    from core.models import ChainHead
    from keys.models import ApiKey, LifecycleEvent

    return {"history": ApiKey.history.aggregate(m=Max("history_id"))["m"] or 0,
            "events": LifecycleEvent.objects.aggregate(m=Max("pk"))["m"] or 0,
            "seq": ChainHead.objects.filter(pk=EVIDENCE).values_list("seq", flat=True).first() or 0}


def capture_chained(marks: dict) -> dict:
    """The key history records, lifecycle events and evidence chain links written since ``marks``."""
    from core.chain import EVIDENCE
    from core.models import ChainLink
    from keys.models import ApiKey, LifecycleEvent

    history = ApiKey.history.model
    parts = [(history, f"history_id > {int(marks['history'])}"), (LifecycleEvent, f"id > {int(marks['events'])}"),
             (ChainLink, f"chain = {EVIDENCE} AND seq > {int(marks['seq'])}")]
    captured = [(m._meta.db_table, columns_of(m), capture(m._meta.db_table, columns_of(m), where)) for m, where in parts]
    rows = (history.objects.filter(history_id__gt=marks["history"]).count()
            + LifecycleEvent.objects.filter(pk__gt=marks["events"]).count()
            + ChainLink.objects.filter(chain=EVIDENCE, seq__gt=marks["seq"]).count())
    return {"parts": captured, "rows": rows}


def replay_chained(recorded: dict) -> dict:
    return {"records of stale keys used again: history, lifecycle events, chain links (COPY)":
            sum(replay(table, columns, data) for table, columns, data in recorded["parts"])}


def ingest_beside_copy(keys, events: list[dict], plaintext: str, *, batch: int = BATCH, runs: int = 3,
                       profile: cProfile.Profile | None = None) -> dict:
    """POST ``events`` in batches through the API (rolled back), beside COPY of the rows it writes (rolled back).

    ``keys`` are the (pk, prefix, fingerprint) the events name. Returns the seconds through the API, in the
    service, their ``StatementClock``, the rows written and the median seconds of each part of the floor.
    """
    from django.db import connection, transaction
    from django.test import Client
    from django.test.utils import override_settings

    from keys.services import usage

    key_of = {ref: pk for pk, prefix, fingerprint in keys for ref in (pk, prefix, fingerprint)}
    chunks = [events[i:i + batch] for i in range(0, len(events), batch)]
    bodies = [json.dumps({"events": chunk}) for chunk in chunks]
    client = Client(HTTP_AUTHORIZATION=f"Token {plaintext}")
    clock = StatementClock()
    in_service = [0.0]
    real_ingest = usage.ingest_usage

    def timed_ingest(*args, **kwargs):
        started = time.perf_counter()
        try:
            return real_ingest(*args, **kwargs)
        finally:
            in_service[0] += time.perf_counter() - started

    with override_settings(DEBUG=False, ALLOWED_HOSTS=["testserver"]):
        warm = client.post("/api/v1/usage/", json.dumps({"events": []}), content_type="application/json")
        assert warm.status_code == 200, warm.content[:300]
        rows = [written_rows(chunk, key_of) for chunk in chunks]
        usage.ingest_usage = timed_ingest
        try:
            with transaction.atomic():
                marks = chained_marks()
                accepted, slowest = 0, 0.0
                started = time.perf_counter()
                with connection.execute_wrapper(clock):
                    if profile:
                        profile.enable()
                    for body in bodies:
                        batch_started = time.perf_counter()
                        response = client.post("/api/v1/usage/", body, content_type="application/json")
                        slowest = max(slowest, time.perf_counter() - batch_started)
                        assert response.status_code == 200, response.content[:300]
                        result = response.json()
                        assert not result["rejected"], result["rejected"][:3]
                        accepted += result["accepted"]
                    if profile:
                        profile.disable()
                seconds = time.perf_counter() - started
                service = in_service[0]
                assert accepted == len(events), accepted
                # Stale keys used again are recorded (history, lifecycle event, chain link): rows of the path too.
                recorded = capture_chained(marks)
                resend = client.post("/api/v1/usage/", bodies[0], content_type="application/json").json()
                assert resend["accepted"] == 0 and resend["duplicates"] == len(chunks[0]), resend
                transaction.set_rollback(True)
        finally:
            usage.ingest_usage = real_ingest
        floor = median_parts(lambda: {**copy_usage(rows), **replay_chained(recorded)}, runs)
    counts = {"receipts": sum(len(r["receipts"]) for r in rows), "daily": sum(len(r["daily"]) for r in rows),
              "last_use": sum(len(r["last_use"]) for r in rows), "recorded": recorded["rows"]}
    return {"seconds": seconds, "service": service, "clock": clock, "floor": floor, "counts": counts,
            "events": len(events), "batch": batch, "batches": len(chunks), "slowest": slowest}


def print_ingest(result: dict) -> None:
    floor, counts = result["floor"], result["counts"]
    events, seconds = result["events"], result["seconds"]
    print_split(f"ingest through the API, {events:,} events in {result['batches']} batches of {result['batch']:,} "
                f"({events / seconds:,.0f} events/s, slowest batch {result['slowest']:.2f} s)", seconds, result["clock"])
    print(f"    of which in usage.ingest_usage: {result['service']:.2f} s (the rest: HTTP, JSON, authentication, "
          f"access record)")
    print(f"COPY of the same rows, batch by batch (median of 3, rolled back): {counts['receipts']:,} receipts, "
          f"{counts['daily']:,} daily rows, {counts['last_use']:,} keys' last use, {counts['recorded']:,} records")
    for name, spent in floor.items():
        if name != "total":
            print(f"    {spent:7.3f} s  {name}")
    print(f"    {floor['total']:7.3f} s  in all")
    print(f"ingest / COPY of the same rows: {seconds / floor['total']:.2f}x through the API, "
          f"{result['service'] / floor['total']:.2f}x in the service (target: within 3x); "
          f"ingest / COPY of the receipts alone: {seconds / floor['receipts (COPY)']:.1f}x")


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    batch = int(sys.argv[sys.argv.index("--batch") + 1]) if "--batch" in sys.argv else BATCH
    if "--batch" in sys.argv:
        args.remove(str(batch))
    events_count = int(args[0]) if args else 200_000
    keys_count = int(args[1]) if len(args) > 1 else 1_000
    setup_django("keys_portal_bench_usage")
    from django.db import connection
    from django.utils import timezone

    from keys.fingerprints import fingerprint_secret
    from keys.models import ApiKey, IssuingSystem
    from tests import factories
    from tests.integration_tokens import make_token

    system = IssuingSystem.objects.create(name="Bench gateway")
    owner = factories.OwnerFactory(username="bench-owner", password=None)
    workflows = [factories.WorkflowFactory(business_owner=owner) for _ in range(20)]
    for start in range(0, keys_count, 10_000):
        ApiKey.objects.bulk_create([
            ApiKey(workflow=workflows[i % 20], issuing_system=system, label=f"Bench key {i}",
                   prefix=f"sk_bench_{i:07d}", fingerprint=fingerprint_secret(f"sk_bench_{i:07d}_fakeSecretForBenchmarks"),
                   owner=owner, status="active")
            for i in range(start, min(keys_count, start + 10_000))
        ])
    keys = list(ApiKey.objects.values_list("pk", "prefix", "fingerprint"))
    _, plaintext = make_token(issuing_system=system, name="Bench gateway sync")
    events = make_events(keys, events_count, timezone.now())
    profile = cProfile.Profile() if "--profile" in sys.argv else None
    print(f"database: {connection.vendor} ({connection.settings_dict['NAME']}); keys: {keys_count:,}")
    result = ingest_beside_copy(keys, events, plaintext, batch=batch, profile=profile)
    print_ingest(result)
    print(f"re-sent batch: {result['batch']:,} duplicates, nothing counted twice")
    if profile:
        print_profile(profile)


if __name__ == "__main__":
    main()
