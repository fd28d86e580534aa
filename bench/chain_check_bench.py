"""What an export's chain check costs, with 1x and 10x more history behind the last verified head.

    python bench/chain_check_bench.py [HISTORY] [NEW]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/keys_portal_bench_chain python bench/chain_check_bench.py

Uses (drops and recreates) the database keys_portal_bench_chain unless DATABASE_URL names another. For
each size (HISTORY records, default 20,000, then ten times as many), it writes that much sealed history
(keys imported in bulk and their lifecycle events), verifies it all once (the checkpoint an earlier export
left), then writes NEW records (default 200: decisions' worth of key changes and events, and a few
rows edited in SQL long behind the head) and times the check an export makes: from the last verified
head to now. Beside it, the anchor measured in the same run: the full walk of the same chain.
Goal: the export's check costs the same at 10x the history (ratio near 1), while the full walk grows.
"""

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _setup import setup_django  # noqa: E402

HISTORY = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
NEW = int(sys.argv[2]) if len(sys.argv) > 2 else 200
RUNS = 7


def main() -> None:
    setup_django("keys_portal_bench_chain")
    from django.db import connection

    from core import chain
    from core.chain import bulk_create_rows, bulk_create_with_history, sealed_atomic
    from core.models import ChainLink
    from keys.choices import LifecycleAction
    from keys.models import ApiKey, LifecycleEvent
    from keys.services import lifecycle
    from tests import factories

    actor = factories.ComplianceFactory(username="bench-compliance")
    owner = factories.OwnerFactory(username="bench-owner")
    template = factories.ApiKeyFactory(owner=owner)
    made = 0

    def grow(records: int) -> None:
        """Sealed history: half key history records, half lifecycle events, in bulk."""
        nonlocal made
        for start in range(0, records // 2, 5000):
            count = min(5000, records // 2 - start)
            keys = [ApiKey(workflow=template.workflow, issuing_system=template.issuing_system, owner=owner,
                           label=f"Bench {made + i}", prefix=f"bk_{made + i:08d}", fingerprint=f"{made + i:064x}",
                           status=template.status, approved_by=actor, approved_at=template.approved_at,
                           issued_on=template.issued_on, expires_on=template.expires_on)
                    for i in range(count)]
            made += count
            keys = bulk_create_with_history(keys, ApiKey, default_user=actor, default_change_reason="bench import")
            bulk_create_rows([LifecycleEvent(key=k, action=LifecycleAction.IMPORT, to_status=k.status, actor=actor,
                                             reason="bench import") for k in keys], LifecycleEvent)

    def new_work() -> None:
        """NEW records after the head (key suspensions: a history record and an event each), and three old
        rows changed in SQL, which the triggers' log brings back into the check."""
        keys = list(ApiKey.objects.filter(status="active").order_by("-pk")[:NEW // 2])
        for key in keys:
            with sealed_atomic():
                lifecycle.suspend_key(key, actor=actor, reason="bench")
        oldest = list(LifecycleEvent.objects.order_by("pk").values_list("pk", flat=True)[:3])
        with connection.cursor() as cursor:
            cursor.execute("UPDATE keys_lifecycleevent SET reason = reason WHERE id = ANY(%s)", [oldest])

    rows = []
    for size in (HISTORY, HISTORY * 10):
        grow(size - ChainLink.objects.count())
        chain.verify_chain()  # the checkpoint an earlier export left
        since, full = [], []
        for _ in range(RUNS):
            new_work()
            started = time.perf_counter()
            result = chain.verify_since_checkpoint()
            since.append(time.perf_counter() - started)
            assert result.ok, result.problems[:3]
            started = time.perf_counter()
            assert chain.verify_chain(checkpoint=False).ok
            full.append(time.perf_counter() - started)
            chain.verify_chain()  # back to a checkpoint just behind the next round's work
        links = ChainLink.objects.count()
        rows.append((links, statistics.median(since), statistics.median(full), result.checked))
        print(f"history {links:>9,} links: export check {statistics.median(since) * 1000:8.1f} ms "
              f"({result.checked} records) | full walk (anchor) {statistics.median(full) * 1000:9.1f} ms", flush=True)
    (small, since_small, full_small, _), (large, since_large, full_large, _) = rows
    print(f"10x history ({small:,} -> {large:,} links): export check x{since_large / since_small:.2f}, "
          f"full walk x{full_large / full_small:.2f}")


if __name__ == "__main__":
    main()
