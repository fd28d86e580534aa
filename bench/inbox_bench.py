"""The owner's inbox with 500 pending items among N keys (default 100,000) in one active campaign.

    python bench/inbox_bench.py [N]      # PostgreSQL at 127.0.0.1 unless DATABASE_URL is set

GETs /inbox/ 30 times as that owner and prints the query count of each request (target: constant,
and the same as with a handful of items) and the median / p95 server time (target: median < 100 ms),
with the CPU time of this process per request and the slowest queries (wall-clock times move with the
machine's other load; the CPU time less so). Runs with the project's local settings (DEBUG on).
"""

import datetime
import statistics
import sys
import time

from _setup import setup_django

N = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
MINE = 500
RUNS = 30
setup_django("keys_portal_bench_inbox")

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402

from attestations.models import AttestationItem  # noqa: E402
from attestations.services import campaigns  # noqa: E402
from keys.choices import KeyStatus  # noqa: E402
from keys.fingerprints import fingerprint_secret  # noqa: E402
from keys.models import ApiKey, Customer, IssuingSystem, Workflow  # noqa: E402
from portal.celery import app  # noqa: E402
from tests.factories import ComplianceFactory, OwnerFactory  # noqa: E402

# Notifications are published to an in-memory broker, as they would go to Redis in production.
app.conf.task_always_eager = False


def make_keys(n: int, me) -> None:
    """``me`` owns MINE keys spread through the table; the rest go round 499 other owners."""
    others = [OwnerFactory(username=f"bench-owner-{i}") for i in range(499)]
    system = IssuingSystem.objects.create(name="Bench gateway")
    customers = [Customer.objects.create(name=f"Bench customer {i}", external_id=f"B{i}") for i in range(50)]
    workflows = [
        Workflow.objects.create(customer=c, name=f"wf {c.pk}", purpose="Nightly export of screening results",
                                data_scope="screening results", environment="production", business_owner=others[0])
        for c in customers
    ]
    today = timezone.localdate()
    every = n // MINE
    batch = []
    for i in range(n):
        owner = me if i % every == 0 and i // every < MINE else others[i % len(others)]
        batch.append(ApiKey(workflow=workflows[(i + i // every) % 50], issuing_system=system, label=f"key {i}",
                            prefix=f"sk_{i:08d}",
                            fingerprint=fingerprint_secret(f"bench-secret-{i:012d}"), owner=owner,
                            scopes=["read:cases", "write:reports"], status=KeyStatus.ACTIVE,
                            issued_on=today - datetime.timedelta(days=i % 400)))
        if len(batch) == 10_000:
            ApiKey.objects.bulk_create(batch)
            batch = []
    if batch:
        ApiKey.objects.bulk_create(batch)


def timed_get(client, url, query_times=None, cpu_times=None):
    with CaptureQueriesContext(connection) as queries:
        t, cpu = time.perf_counter(), time.process_time()
        response = client.get(url)
        elapsed, cpu = time.perf_counter() - t, time.process_time() - cpu
    assert response.status_code == 200, response.status_code
    if cpu_times is not None:
        cpu_times.append(cpu)
    if query_times is not None:
        for position, query in enumerate(queries.captured_queries):
            query_times.setdefault(position, (query["sql"], []))[1].append(float(query["time"]))
    return elapsed, len(queries.captured_queries), response


def main() -> None:
    # Not setup_test_environment(): its template instrumentation would be timed with the page.
    settings.ALLOWED_HOSTS = ["testserver"]
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # 500 users to create
    print(f"database: {connection.vendor}; keys: {N}")
    me = OwnerFactory(username="bench-inbox-owner")
    t = time.perf_counter()
    make_keys(N, me)
    print(f"set-up: {N} keys in {time.perf_counter() - t:.1f}s")
    compliance = ComplianceFactory(username="bench-compliance")
    campaign = campaigns.create_campaign(actor=compliance, name="bench inbox")
    t = time.perf_counter()
    created = campaigns.launch_campaign(campaign, actor=compliance)
    print(f"launch: {created} items in {time.perf_counter() - t:.1f}s")
    pending = AttestationItem.objects.decidable_by(me).filter(status="pending").count()
    assert pending == MINE, pending
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")

    client = Client()
    client.force_login(me)
    timed_get(client, "/inbox/")  # warm-up: template compilation, connection
    times, counts, query_times, cpu_times = [], set(), {}, []
    for _ in range(RUNS):
        elapsed, count, response = timed_get(client, "/inbox/", query_times, cpu_times)
        times.append(elapsed)
        counts.add(count)
    assert response.content.count(b'<article class="inbox-item') == 50
    times.sort()
    p95 = times[max(0, round(0.95 * len(times)) - 1)]
    print(f"owner with {pending} pending items among {AttestationItem.objects.count()} items")
    print(f"GET /inbox/ x{RUNS}: queries per request {sorted(counts)} (target: one constant count)")
    print(f"server time: median {statistics.median(times) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms (target: median < 100 ms)")
    print(f"CPU of this process (Django; PostgreSQL is another process): median {statistics.median(cpu_times) * 1000:.1f} ms "
          "per request")
    in_queries = sum(statistics.median(t) for _, t in query_times.values())
    print(f"of which in the database (median of each query, summed): {in_queries * 1000:.1f} ms; the slowest:")
    for sql, spent in sorted(query_times.values(), key=lambda entry: -statistics.median(entry[1]))[:3]:
        print(f"  {statistics.median(spent) * 1000:6.1f} ms  {' '.join(sql.split())[:160]}")

    _, filtered_count, _ = timed_get(client, f"/inbox/?status=pending&customer={Customer.objects.first().pk}&page=2")
    print(f"filtered second page: {filtered_count} queries")


if __name__ == "__main__":
    main()
