"""Launch a campaign over N keys (default 100,000) beside COPY of the same rows it writes.

    python bench/campaign_launch_bench.py [N] [--profile]   # PostgreSQL at 127.0.0.1 unless DATABASE_URL is set

Uses (drops and recreates) the database keys_portal_bench_campaign unless DATABASE_URL names another.
Creates N live keys over 500 owners, then launches a campaign over all of them through
``campaigns.launch_campaign`` (rolled back; DEBUG off, as in production) and times, part by part, COPY of
the rows the launch wrote (read back before the rollback; see ``_copy_floor``): the items, their history
records, their links in the evidence chain, and the foreign-key checks a commit runs. The launch's wall
time is split into SQL statements and Python; ``--profile`` adds a cProfile listing of the launch.
Target (issue 20): the launch within 10x of COPY of the same rows.
"""

import cProfile
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _copy_floor import (  # noqa: E402
    StatementClock,
    capture,
    columns_of,
    foreign_key_checks,
    median_parts,
    print_profile,
    print_split,
    replay,
)
from _setup import setup_django  # noqa: E402


def make_keys(n: int) -> None:
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from keys.choices import KeyStatus
    from keys.fingerprints import fingerprint_secret
    from keys.models import ApiKey, Customer, IssuingSystem, Workflow

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


def launch_beside_copy(campaign, actor, *, runs: int = 3, profile: cProfile.Profile | None = None) -> dict:
    """Launch ``campaign`` (rolled back), then COPY the rows it wrote, part by part, ``runs`` times (rolled back).

    Returns the launch's seconds, its ``StatementClock``, the number of items, the rows of each part and the
    median seconds of each part of the floor (with ``"total"``).
    """
    from django.db import connection, transaction
    from django.test.utils import override_settings

    from attestations.models import AttestationItem
    from attestations.services import campaigns
    from core.chain import EVIDENCE
    from core.jobs import registered_task
    from core.models import ChainHead, ChainLink

    history = AttestationItem.history.model
    tables = {
        "items (COPY)": (AttestationItem._meta.db_table, columns_of(AttestationItem), f"campaign_id = {int(campaign.pk)}"),
        "item history records (COPY)": (history._meta.db_table, columns_of(history), f"campaign_id = {int(campaign.pk)}"),
    }
    # A process discovers the task modules once, at its first enqueue (Celery's Django fixup then runs the system
    # checks, which import the URL conf): seconds that belong to the process's start, not to a launch.
    registered_task("attestations.tasks.notify_campaign_launched")
    clock = StatementClock()
    # DEBUG off as in production: with it on, every statement is also formatted into connection.queries.
    with override_settings(DEBUG=False), transaction.atomic():
        head = ChainHead.objects.filter(pk=EVIDENCE).values_list("seq", flat=True).first() or 0
        started = time.perf_counter()
        with connection.execute_wrapper(clock):
            if profile:
                profile.enable()
            created = campaigns.launch_campaign(campaign, actor=actor)
            if profile:
                profile.disable()
        seconds = time.perf_counter() - started
        tables["evidence chain links (COPY)"] = (ChainLink._meta.db_table, columns_of(ChainLink),
                                          f"chain = {EVIDENCE} AND seq > {int(head)}")
        captured = {name: (table, columns, capture(table, columns, where))
                    for name, (table, columns, where) in tables.items()}
        rows = {"items (COPY)": created,
                "item history records (COPY)": history.objects.filter(campaign_id=campaign.pk).count(),
                "evidence chain links (COPY)": ChainLink.objects.filter(chain=EVIDENCE, seq__gt=head).count()}
        transaction.set_rollback(True)

    def copy_all() -> dict:
        parts = {name: replay(table, columns, data) for name, (table, columns, data) in captured.items()}
        parts["foreign-key checks at commit"] = foreign_key_checks()
        return parts

    with override_settings(DEBUG=False):
        floor = median_parts(copy_all, runs)
    return {"seconds": seconds, "clock": clock, "created": created, "rows": rows, "floor": floor}


def print_launch(result: dict) -> None:
    floor = result["floor"]
    print_split(f"launch over {result['created']:,} keys (items, history, sealing; rolled back)", result["seconds"],
                result["clock"])
    print("COPY of the same rows (median of 3, rolled back):")
    for name, seconds in floor.items():
        if name != "total":
            rows = result["rows"].get(name)
            print(f"    {seconds:7.3f} s  {name}" + (f" ({rows:,} rows)" if rows is not None else ""))
    print(f"    {floor['total']:7.3f} s  in all")
    print(f"launch / COPY of the same rows: {result['seconds'] / floor['total']:.2f}x (target: within 10x); "
          f"launch / COPY of the items alone: {result['seconds'] / floor['items (COPY)']:.2f}x")


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    n = int(args[0]) if args else 100_000
    setup_django("keys_portal_bench_campaign")
    from django.db import connection

    from attestations.services import campaigns
    from portal.celery import app
    from tests.factories import ComplianceFactory

    # Notifications are published to an in-memory broker, as they would go to Redis in production.
    app.conf.task_always_eager = False
    print(f"database: {connection.vendor}; keys: {n}")
    started = time.perf_counter()
    make_keys(n)
    print(f"set-up: {n} keys in {time.perf_counter() - started:.1f}s")
    compliance = ComplianceFactory(username="bench-compliance")
    campaign = campaigns.create_campaign(actor=compliance, name="bench launch")
    profile = cProfile.Profile() if "--profile" in sys.argv else None
    result = launch_beside_copy(campaign, compliance, profile=profile)
    assert result["created"] == n, result["created"]
    print_launch(result)
    if profile:
        print_profile(profile)


if __name__ == "__main__":
    main()
