"""Render the sampled campaign report of a 100,000-item campaign end to end, beside anchors from the same run.

    python bench/sampled_report_bench.py [N]      # PostgreSQL at 127.0.0.1 unless DATABASE_URL is set

Creates a throwaway database, bulk-loads N keys (default 100,000) and launches a campaign over them with
the real launch service, then sets its items' outcomes set-based as a closed campaign would have them:
almost every item confirmed on time, and about half a percent under an exception, released, reassigned,
revoked since, decided after the due date or after escalation, or closed by the default action.

Then requests the campaign report through ``exports.request_export`` with tasks run in-process (the
same tasks a worker runs: planning and fan-out, the front's measurement, every chunk, the assembly with
the whole population attached as CSV and JSON, storing), and checks the result: every item in the
attached CSV, the sample redrawn from it. Beside it, measured in the same run on the same rows:
- PostgreSQL COPY of the campaign's item rows out and back into a scratch table;
- writing the attached CSV from the same rows (``evidence.item_rows`` into ``evidence.to_csv``).
Target: the report in under 120 s on this machine. Tasks run one after another in this one process
(``CELERY_TASK_ALWAYS_EAGER``, the local default): the slowest arrangement, since the front's measurement
then runs before the chunks rather than beside them on another worker.
"""

import csv
import datetime
import hashlib
import io
import multiprocessing
import os
import resource
import sys
import time

from _setup import setup_django

N = int(next((a for a in sys.argv[1:] if not a.startswith("--")), 100_000))
setup_django("keys_portal_bench_sampled")

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection, connections  # noqa: E402
from django.db.models import F  # noqa: E402
from django.utils import timezone  # noqa: E402
from pypdf import PdfReader  # noqa: E402

from attestations.choices import CampaignStatus, DefaultAction, ItemStatus  # noqa: E402
from attestations.models import AttestationItem, Campaign, EvidenceExport, Notification  # noqa: E402
from attestations.services import campaigns, evidence, exports  # noqa: E402
from keys.choices import ExceptionStatus, KeyStatus  # noqa: E402
from keys.fingerprints import fingerprint_secret  # noqa: E402
from keys.models import ApiKey, Customer, IssuingSystem, Workflow  # noqa: E402
from tests.factories import ComplianceFactory, KeyExceptionFactory  # noqa: E402

OWNERS, CUSTOMERS = 500, 50
# Outcomes by item position (every STEP-th item from OFFSET): about 0.5 % of items are printed in full.
OUTCOMES = {"released": (1000, 1), "reassigned": (2000, 3), "late": (1000, 5), "escalated": (2000, 7),
            "default": (1000, 9), "revoked_since": (4000, 11)}
EXCEPTIONS = 50
EVIDENCE = {"last_used_at": "2026-11-30T08:12:00+00:00", "calls_30d": 1830, "calls_90d": 5212,
            "sources": ["10.20.0.4", "10.20.0.5"], "recommendation_label": ""}


def load_campaign(n: int):
    """Keys in bulk, a launch through the service, outcomes set-based: a closed campaign of ``n`` items."""
    User = get_user_model()
    User.objects.bulk_create([User(username=f"bench-owner-{i}", password="!") for i in range(OWNERS)])
    owners = list(User.objects.filter(username__startswith="bench-owner-").order_by("pk"))
    system = IssuingSystem.objects.create(name="Bench gateway")
    customers = [Customer.objects.create(name=f"Bench customer {i}", external_id=f"B{i}") for i in range(CUSTOMERS)]
    workflows = [Workflow.objects.create(customer=c, name=f"Settlement export {c.pk}", purpose="bench",
                                         data_scope="bench", environment="production", business_owner=owners[0])
                 for c in customers]
    today = timezone.localdate()
    for start in range(0, n, 10_000):
        ApiKey.objects.bulk_create([
            ApiKey(workflow=workflows[i % CUSTOMERS], issuing_system=system, label=f"Nightly settlement key {i}",
                   prefix=f"sk_live_{i:08d}", fingerprint=fingerprint_secret(f"bench-secret-{i:012d}"),
                   owner=owners[i % OWNERS], status=KeyStatus.ACTIVE, issued_on=today)
            for i in range(start, min(start + 10_000, n))])
    compliance = ComplianceFactory(username="bench-compliance")
    for key in ApiKey.objects.order_by("pk")[:EXCEPTIONS]:
        KeyExceptionFactory(key=key, requested_by=key.owner, status=ExceptionStatus.APPROVED, decided_by=compliance,
                            decided_at=timezone.now())
    campaign = campaigns.create_campaign(actor=compliance, name=f"Bench {n:,} items",
                                         default_action=DefaultAction.SUSPEND, escalation_days=10)
    campaigns.launch_campaign(campaign, actor=compliance)
    campaign.refresh_from_db()
    items = AttestationItem.objects.filter(campaign=campaign)
    first = items.order_by("pk").values_list("pk", flat=True).first()
    launched, due_end = campaign.launched_at, evidence.late_after(campaign)

    def every(name):
        step, offset = OUTCOMES[name]
        return items.annotate(n=(F("pk") - first) % step).filter(n=offset)

    decided = {"decided_by": F("reviewer"), "affirmed": True, "evidence": EVIDENCE, "batch_size": 1,
               "justification": "Still used by the nightly settlement export; scope reviewed with the customer."}
    items.update(status=ItemStatus.CONFIRMED, decided_at=launched + datetime.timedelta(hours=30), **decided)
    every("released").update(status=ItemStatus.RELEASED, justification="Integration retired with the old ledger.")
    every("reassigned").update(status=ItemStatus.REASSIGNED, reassigned_to=owners[1])
    every("late").update(decided_at=due_end + datetime.timedelta(hours=5))
    every("escalated").update(escalated_at=launched + datetime.timedelta(days=10), escalated_to=compliance,
                              decided_at=launched + datetime.timedelta(days=11))
    every("default").update(status=ItemStatus.EXPIRED, decided_by=None, decided_at=None, affirmed=False,
                            justification="", evidence={}, default_action_applied=DefaultAction.SUSPEND)
    ApiKey.objects.filter(attestation_items__in=every("released")).update(status=KeyStatus.REVOKED)
    ApiKey.objects.filter(attestation_items__in=every("revoked_since")).update(status=KeyStatus.REVOKED)
    ApiKey.objects.filter(attestation_items__in=every("default")).update(status=KeyStatus.SUSPENDED)
    Notification.objects.bulk_create([
        Notification(campaign=campaign, kind=Notification.Kind.REMINDER, recipient=owner, sequence=day,
                     item_count=n // OWNERS, sent_at=launched + datetime.timedelta(days=day))
        for owner in owners[:200] for day in (3, 7)])
    Campaign.objects.filter(pk=campaign.pk).update(status=CampaignStatus.CLOSED, closed_by=compliance,
                                                   closed_at=launched + datetime.timedelta(days=15))
    campaign.refresh_from_db()
    # What autovacuum does within a minute of a bulk load; without it the planner takes 100,000 rows for 500.
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return campaign, compliance


def copy_anchor(campaign) -> float:
    """PostgreSQL COPY of the campaign's item rows out, and back into a scratch table."""
    table = connection.ops.quote_name(AttestationItem._meta.db_table)
    start = time.perf_counter()
    with connection.cursor() as cursor:
        raw = cursor.connection.cursor()
        buffer = io.BytesIO()
        with raw.copy(f"COPY (SELECT * FROM {table} WHERE campaign_id = {int(campaign.pk)}) TO STDOUT") as copy:
            for data in copy:
                buffer.write(data)
        raw.execute(f"CREATE TEMPORARY TABLE bench_copy (LIKE {table})")
        with raw.copy("COPY bench_copy FROM STDIN") as copy:
            copy.write(buffer.getvalue())
        raw.execute("DROP TABLE bench_copy")
    return time.perf_counter() - start


def csv_anchor(campaign) -> tuple[float, int]:
    """Writing the attached CSV from the same rows: the floor of what the report must do with them."""
    start = time.perf_counter()
    content = evidence.to_csv(evidence.ITEM_COLUMNS, evidence.item_rows(campaign))
    return time.perf_counter() - start, len(content.encode())


def render(actor_id: int, campaign_id: int, queue) -> None:
    """The export, in a process of its own so that its peak memory is the renderer's alone."""
    connections.close_all()
    actor, campaign = get_user_model().objects.get(pk=actor_id), Campaign.objects.get(pk=campaign_id)
    start = time.perf_counter()
    export = exports.request_export(actor=actor, kind="campaign", campaign=campaign)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    queue.put((export.pk, time.perf_counter() - start, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024))


def check(export: EvidenceExport, n: int, size: int) -> dict:
    with export.file.open("rb") as f:
        pdf = PdfReader(io.BytesIO(f.read()))
    # Both attachments decode within pypdf's default limit of 75 MB per stream.
    attached = {name: content[0] for name, content in pdf.attachments.items()}
    (name,) = [a for a in attached if a.endswith(".csv")]
    rows = list(csv.DictReader(io.StringIO(attached[name].decode())))
    assert len(rows) == n, (len(rows), n)
    seed = export.parameters["sample_seed"]
    confirmed = [r["item_id"] for r in rows if r["status"] == "confirmed"]
    redrawn = sorted(confirmed, key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).hexdigest())[:size]
    body = " ".join(pdf.pages[i].extract_text() for i in range(len(pdf.pages)))
    listed = body.split("The result must be these items, in this order", 1)[1]
    assert all(f"#{item_id}" in listed for item_id in redrawn)
    return {"pages": len(pdf.pages), "attached_rows": len(rows), "confirmed": len(confirmed),
            "attached_mb": {a.rsplit(".", 1)[1]: len(content) / 1e6 for a, content in attached.items()}}


def main() -> None:
    print(f"database: {connection.vendor}; items: {N:,}; CPUs: {os.cpu_count()}; "
          f"load average before: {os.getloadavg()[0]:.1f} (other processes share the CPUs)")
    assert settings.CELERY_TASK_ALWAYS_EAGER, "tasks run in-process here: unset CELERY_BROKER_URL"
    t = time.perf_counter()
    campaign, actor = load_campaign(N)
    print(f"set-up: {N:,} keys, a launched campaign and its outcomes in {time.perf_counter() - t:.1f} s")

    copy_seconds = copy_anchor(campaign)
    csv_seconds, csv_bytes = csv_anchor(campaign)

    connections.close_all()
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    process = context.Process(target=render, args=(actor.pk, campaign.pk, queue))
    process.start()
    export_id, seconds, cpu_seconds, peak_mb = queue.get()
    process.join()
    export = EvidenceExport.objects.get(pk=export_id)
    assert export.status == EvidenceExport.Status.DONE, export.error
    print(f"{'anchor: PostgreSQL COPY out and in':44} {copy_seconds:7.1f} s   ({N:,} item rows)")
    print(f"{'anchor: writing the attached CSV':44} {csv_seconds:7.1f} s   ({csv_bytes / 1e6:.1f} MB)")
    print(f"{'sampled campaign report, end to end':44} {seconds:7.1f} s   ({cpu_seconds:.1f} s CPU in its process, "
          f"peak {peak_mb:.0f} MB, {export.page_count} pages in {export.chunks_total} chunk(s) and the front, "
          f"{export.size / 1e6:.1f} MB file)")
    print(f"report / COPY: {seconds / copy_seconds:.0f}x; report / CSV: {seconds / csv_seconds:.1f}x")
    plan = evidence.plan_report(campaign, evidence.plan_rows(campaign), **evidence.sampling_options(export))
    result = check(export, N, plan.size)
    attached = ", ".join(f"{kind} {mb:.1f} MB" for kind, mb in result["attached_mb"].items())
    print(f"check: {result['attached_rows']:,} rows attached ({attached}), {result['confirmed']:,} confirmed, "
          f"{plan.printed_in_full} printed in full, the printed sample of {plan.size} redrawn from the attached CSV")
    print(f"target (< 120 s): {'met' if seconds < 120 else 'MISSED'}")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
