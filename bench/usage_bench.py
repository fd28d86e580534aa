"""Usage ingestion throughput on PostgreSQL: batches of 10,000 events POSTed through the API,
beside a bare bulk insert of the same events.

    python bench/usage_bench.py [EVENTS] [KEYS]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/keys_portal_bench_usage python bench/usage_bench.py

Uses (drops and recreates) the database keys_portal_bench_usage unless DATABASE_URL names another.
Creates KEYS keys (default 1,000), then sends EVENTS events (default 200,000) in batches of 10,000
to POST /api/v1/usage/ with an integration token through django.test.Client: parsing, validation,
key resolution, receipts, daily aggregates and last use, each batch in its transaction. Then it
times the bare insert: the same events' receipts with bulk_create, and their daily rows.
Targets: at least 20,000 events/s through the API and within 3x of the bare insert.
"""

import datetime
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
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


def main() -> None:
    events_count = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    keys_count = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000
    setup_django("keys_portal_bench_usage")
    from django.db import connection, transaction
    from django.test import Client
    from django.utils import timezone

    from keys.fingerprints import fingerprint_secret
    from keys.models import ApiKey, IssuingSystem, UsageDaily, UsageEventReceipt
    from tests import factories
    from tests.integration_tokens import make_token

    system = IssuingSystem.objects.create(name="Bench gateway")
    owner = factories.OwnerFactory(username="bench-owner", password=None)
    workflows = [factories.WorkflowFactory(business_owner=owner) for _ in range(20)]
    ApiKey.objects.bulk_create([
        ApiKey(workflow=workflows[i % 20], issuing_system=system, label=f"Bench key {i}", prefix=f"sk_bench_{i:05d}",
               fingerprint=fingerprint_secret(f"sk_bench_{i:05d}_fakeSecretForBenchmarks"), owner=owner,
               status="active")
        for i in range(keys_count)
    ])
    keys = list(ApiKey.objects.values_list("pk", "prefix", "fingerprint"))
    _, plaintext = make_token(issuing_system=system, name="Bench gateway sync")

    now = timezone.now()
    events = make_events(keys, events_count, now)
    bodies = [json.dumps({"events": events[i:i + BATCH]}) for i in range(0, events_count, BATCH)]

    client = Client(HTTP_AUTHORIZATION=f"Token {plaintext}")
    accepted = 0
    slowest = 0.0
    started = time.perf_counter()
    for body in bodies:
        batch_started = time.perf_counter()
        response = client.post("/api/v1/usage/", body, content_type="application/json")
        slowest = max(slowest, time.perf_counter() - batch_started)
        assert response.status_code == 200, response.content[:300]
        result = response.json()
        assert not result["rejected"], result["rejected"][:3]
        accepted += result["accepted"]
    api_seconds = time.perf_counter() - started
    assert accepted == events_count, accepted
    assert sum(UsageDaily.objects.values_list("count", flat=True)) == events_count

    resend_started = time.perf_counter()
    duplicates = client.post("/api/v1/usage/", bodies[0], content_type="application/json").json()["duplicates"]
    resend_seconds = time.perf_counter() - resend_started

    # The bare insert: the same events' receipts (one row each) and daily rows, straight through bulk_create.
    UsageEventReceipt.objects.all().delete()
    UsageDaily.objects.all().delete()
    by_prefix = {prefix: pk for pk, prefix, _ in keys}
    by_fingerprint = {fingerprint: pk for pk, _, fingerprint in keys}
    resolved = [(e["id"], e["key"] if isinstance(e["key"], int) else by_prefix.get(e["key"]) or by_fingerprint[e["key"]],
                 datetime.datetime.fromisoformat(e["at"])) for e in events]
    started = time.perf_counter()
    for i in range(0, events_count, BATCH):
        chunk = resolved[i:i + BATCH]
        with transaction.atomic():
            UsageEventReceipt.objects.bulk_create(
                [UsageEventReceipt(event_id=event_id, key_id=key_id, received_at=now) for event_id, key_id, _ in chunk]
            )
            days = {}
            for _, key_id, at in chunk:
                days.setdefault((key_id, at.date()), at)
            UsageDaily.objects.bulk_create(
                [UsageDaily(key_id=k, day=d, count=1, first_seen=at, last_seen=at) for (k, d), at in days.items()],
                ignore_conflicts=True,
            )
    bare_seconds = time.perf_counter() - started

    api_rate = events_count / api_seconds
    bare_rate = events_count / bare_seconds
    print(f"database: {connection.vendor} ({connection.settings_dict['NAME']})")
    print(f"keys: {keys_count}; events: {events_count} in batches of {BATCH} (key by id, prefix and fingerprint in turn)")
    print(f"through the API:  {api_seconds:7.2f} s  {api_rate:9,.0f} events/s  (slowest batch {slowest:.2f} s)")
    print(f"bare bulk insert: {bare_seconds:7.2f} s  {bare_rate:9,.0f} events/s")
    print(f"API / bare: {api_seconds / bare_seconds:.2f}x slower   (targets: >= 20,000 events/s, <= 3x)")
    print(f"re-sent batch: {duplicates} duplicates, nothing counted twice ({resend_seconds:.2f} s)")


if __name__ == "__main__":
    main()
