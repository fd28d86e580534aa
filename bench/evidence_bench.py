"""Render the campaign report of a 10,000-item campaign with every item printed, and compare with plain WeasyPrint.

    python bench/evidence_bench.py [N] [--workers 1,2]   # PostgreSQL at 127.0.0.1 unless DATABASE_URL is set

The export asks for every item to be printed ("print every item"), the heaviest report; a sampled
report of a campaign this size prints a few dozen pages (``bench/sampled_report_bench.py``).
Three measurements in the same run, each in fresh processes so peak memory is per renderer:
- plain: the same item rows in one WeasyPrint document (no cover, no attachments, no chunks);
- chunked, 1 worker and 2 workers: the real export tasks (``measure_export_front``, then
  ``render_export_chunk`` for every chunk of 500 items, the last one assembling: front matter, merge,
  page numbers, attachments, chain verification) run in a multiprocessing pool standing in for Celery workers,
  after the plan that ``render_export`` makes first.
Prints time, peak RSS of the rendering processes, pages and pages per second. Targets: under 60 s,
under 1 GB, and at least the plain rate.
"""

import multiprocessing
import os
import resource
import sys
import time

from _setup import setup_django

ARGS = [a for a in sys.argv[1:] if not a.startswith("--")]
N = int(ARGS[0]) if ARGS else 10_000
WORKERS = [int(w) for w in next((a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--workers=")), "1,2").split(",")]
setup_django("keys_portal_bench_evidence")

from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connections  # noqa: E402
from django.db.models import F  # noqa: E402
from django.utils import timezone  # noqa: E402

from attestations import tasks  # noqa: E402
from attestations.choices import DefaultAction, ItemStatus  # noqa: E402
from attestations.models import AttestationItem, EvidenceExport  # noqa: E402
from attestations.services import campaigns, evidence, evidence_pdf  # noqa: E402
from keys.choices import KeyStatus  # noqa: E402
from keys.fingerprints import fingerprint_secret  # noqa: E402
from keys.models import ApiKey, Customer, IssuingSystem, Workflow  # noqa: E402
from tests.factories import ComplianceFactory  # noqa: E402

MB = 1024  # ru_maxrss is in KiB on Linux


def make_campaign(n: int):
    User = get_user_model()
    User.objects.bulk_create([User(username=f"bench-owner-{i}", password="!") for i in range(500)])
    owners = list(User.objects.filter(username__startswith="bench-owner-").order_by("pk"))
    system = IssuingSystem.objects.create(name="Bench gateway")
    customers = [Customer.objects.create(name=f"Bench customer {i}", external_id=f"B{i}") for i in range(50)]
    workflows = [Workflow.objects.create(customer=c, name=f"wf {c.pk}", purpose="bench", data_scope="bench",
                                         environment="production", business_owner=owners[0]) for c in customers]
    today = timezone.localdate()
    ApiKey.objects.bulk_create([
        ApiKey(workflow=workflows[i % 50], issuing_system=system, label=f"key {i}", prefix=f"sk_{i:08d}",
               fingerprint=fingerprint_secret(f"bench-secret-{i:012d}"), owner=owners[i % 500],
               status=KeyStatus.ACTIVE, issued_on=today)
        for i in range(n)
    ], batch_size=5000)
    compliance = ComplianceFactory(username="bench-compliance")
    campaign = campaigns.create_campaign(actor=compliance, name="Bench 10k", default_action=DefaultAction.SUSPEND)
    campaigns.launch_campaign(campaign, actor=compliance)
    campaign.refresh_from_db()  # launched: its due date is set
    # Two thirds decided, with a justification each, so rows look like a real campaign's.
    decided = AttestationItem.objects.filter(campaign=campaign).annotate(m=F("pk") % 3).exclude(m=0)
    AttestationItem.objects.filter(pk__in=decided.values("pk")).update(
        status=ItemStatus.CONFIRMED, decided_by=F("reviewer"), decided_at=timezone.now(), affirmed=True,
        justification="Still used by the nightly settlement export; scope reviewed with the customer.")
    return campaign, compliance


def _child_init():
    connections.close_all()  # each forked worker opens its own database connection


def _run_task(args):
    if args[0] == "front":
        tasks.measure_export_front.run(args[1])
    else:
        tasks.render_export_chunk.run(*args)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def chunked(campaign, actor, workers: int) -> dict:
    export = EvidenceExport.objects.create(
        kind="campaign", campaign=campaign, requested_by=actor,
        parameters={"kind": "campaign", "campaign": campaign.pk, "subject": campaign.name, "print_all_items": True,
                    "sample_seed": evidence.new_sample_seed()})
    start, cpu = time.perf_counter(), _children_cpu()
    chunks = len(evidence_pdf.plan_campaign_report(export).chunks)
    EvidenceExport.objects.filter(pk=export.pk).update(status="rendering", chunks_total=chunks)
    connections.close_all()
    with multiprocessing.get_context("fork").Pool(workers, initializer=_child_init) as pool:
        # As render_export enqueues them: the front's measurement first, then every chunk.
        jobs = [("front", export.pk)] + [(export.pk, i) for i in range(chunks)]
        peaks = pool.map(_run_task, jobs, chunksize=1)
        pool.close()
        pool.join()
    elapsed, cpu = time.perf_counter() - start, _children_cpu() - cpu
    export.refresh_from_db()
    assert export.status == "done", export.error
    return {"seconds": elapsed, "cpu": cpu, "pages": export.page_count, "peak_mb": max(peaks) / MB,
            "chunks": chunks, "mb": export.size / 1e6}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _plain(campaign_pk, queue):
    import io

    from django.template.loader import render_to_string
    from pypdf import PdfReader
    from weasyprint import CSS, HTML

    from attestations.services.evidence_pdf import PRINT_CSS

    connections.close_all()
    from attestations.models import Campaign

    campaign = Campaign.objects.get(pk=campaign_pk)
    export = EvidenceExport(pk=0, kind="campaign", campaign=campaign, requested_by=campaign.created_by,
                            parameters={"subject": campaign.name})
    start = time.perf_counter()
    rows = list(evidence.item_rows(campaign))
    html = render_to_string("evidence/campaign_items.html", {"export": export, "identity": "plain", "rows": rows,
                                                              "section": "all", "section_start": True})
    pdf = HTML(string=html).write_pdf(stylesheets=[CSS(filename=str(PRINT_CSS))])
    elapsed = time.perf_counter() - start
    queue.put({"seconds": elapsed, "pages": len(PdfReader(io.BytesIO(pdf)).pages),
               "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / MB, "mb": len(pdf) / 1e6})


def plain(campaign) -> dict:
    connections.close_all()
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    cpu = _children_cpu()
    process = ctx.Process(target=_plain, args=(campaign.pk, queue))
    process.start()
    result = queue.get()
    process.join()
    return {**result, "cpu": _children_cpu() - cpu}


def report(name: str, r: dict) -> None:
    rate = r["pages"] / r["seconds"]
    print(f"{name:22} {r['seconds']:7.1f} s ({r['cpu']:6.1f} s CPU)  peak {r['peak_mb']:7.0f} MB  {r['pages']:5d} pages  "
          f"{rate:5.2f} pages/s  {r['mb']:.1f} MB file" + (f"  ({r['chunks']} chunks)" if "chunks" in r else ""))


def main() -> None:
    print(f"database: {connections['default'].vendor}; items: {N}; CPUs: {multiprocessing.cpu_count()}; "
          f"load average before: {os.getloadavg()[0]:.1f} (other processes share the CPUs)")
    t = time.perf_counter()
    campaign, actor = make_campaign(N)
    print(f"set-up: {N} keys and a launched campaign in {time.perf_counter() - t:.1f}s")
    results = {}
    for workers in WORKERS:
        results[f"chunked, {workers} worker{'s' if workers > 1 else ''}"] = chunked(campaign, actor, workers)
        report(*list(results.items())[-1])
    results["plain WeasyPrint"] = plain(campaign)
    report("plain WeasyPrint", results["plain WeasyPrint"])
    plain_rate = results["plain WeasyPrint"]["pages"] / results["plain WeasyPrint"]["seconds"]
    for name, r in results.items():
        if name.startswith("chunked"):
            ok = r["seconds"] < 60 and r["peak_mb"] < 1024 and r["pages"] / r["seconds"] >= plain_rate
            print(f"{name}: {'meets' if ok else 'MISSES'} the targets (<60 s, <1 GB, >= plain rate)")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
