"""Launch a campaign over N keys (default 100,000) and compare with a bare bulk insert of the items.

    python bench/campaign_launch_bench.py [N]      # PostgreSQL at 127.0.0.1 unless DATABASE_URL is set

Prints both times and their ratio (target: launch within 3x of the bare insert).
"""

import sys
import time

from _setup import setup_django

N = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
setup_django("keys_portal_bench_campaign")

from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from attestations.models import AttestationItem  # noqa: E402
from attestations.services import campaigns  # noqa: E402
from keys.choices import KeyStatus  # noqa: E402
from keys.fingerprints import fingerprint_secret  # noqa: E402
from keys.models import ApiKey, Customer, IssuingSystem, Workflow  # noqa: E402
from portal.celery import app  # noqa: E402
from tests.factories import ComplianceFactory  # noqa: E402

# Notifications are published to an in-memory broker, as they would go to Redis in production.
app.conf.task_always_eager = False


def make_keys(n: int) -> None:
    User = get_user_model()
    User.objects.bulk_create([User(username=f"bench-owner-{i}", password="!") for i in range(500)])
    owners = list(User.objects.filter(username__startswith="bench-owner-").order_by("pk"))
    system = IssuingSystem.objects.create(name="Bench gateway")
    customers = [Customer.objects.create(name=f"Bench customer {i}", external_id=f"B{i}") for i in range(50)]
    workflows = [
        Workflow.objects.create(customer=c, name=f"wf {c.pk}", purpose="bench", data_scope="bench",
                                environment="production", business_owner=owners[0])
        for c in customers
    ]
    today = timezone.localdate()
    batch = []
    for i in range(n):
        batch.append(ApiKey(workflow=workflows[i % 50], issuing_system=system, label=f"key {i}", prefix=f"sk_{i:08d}",
                            fingerprint=fingerprint_secret(f"bench-secret-{i:012d}"), owner=owners[i % 500],
                            status=KeyStatus.ACTIVE, issued_on=today))
        if len(batch) == 10_000:
            ApiKey.objects.bulk_create(batch)
            batch = []
    if batch:
        ApiKey.objects.bulk_create(batch)


def main() -> None:
    print(f"database: {connection.vendor}; keys: {N}")
    t = time.perf_counter()
    make_keys(N)
    print(f"set-up: {N} keys in {time.perf_counter() - t:.1f}s")
    compliance = ComplianceFactory(username="bench-compliance")

    bare_campaign = campaigns.create_campaign(actor=compliance, name="bare insert")
    rows = list(ApiKey.objects.order_by("pk").values_list("pk", "owner_id"))
    t = time.perf_counter()
    with transaction.atomic():
        AttestationItem.objects.bulk_create(
            [AttestationItem(campaign=bare_campaign, key_id=k, reviewer_id=o) for k, o in rows], batch_size=5000
        )
        bare = time.perf_counter() - t
        transaction.set_rollback(True)

    campaign = campaigns.create_campaign(actor=compliance, name="bench launch")
    t = time.perf_counter()
    created = campaigns.launch_campaign(campaign, actor=compliance)
    launch = time.perf_counter() - t
    assert created == N, created
    assert AttestationItem.history.filter(campaign_id=campaign.pk).count() == N
    t = time.perf_counter()
    again = campaigns.launch_campaign(campaign, actor=compliance)
    relaunch = time.perf_counter() - t
    print(f"bare bulk insert of {N} item rows: {bare:.2f}s")
    print(f"launch (items + history + object permissions): {launch:.2f}s ({N / launch:,.0f} items/s)")
    print(f"ratio launch / bare insert: {launch / bare:.2f}x (target <= 3x)")
    print(f"second launch: {again} items created in {relaunch * 1000:.0f} ms")


if __name__ == "__main__":
    main()
