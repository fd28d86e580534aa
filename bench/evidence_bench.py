"""Render the campaign report of a 10,000-item campaign with every item printed, and compare with plain WeasyPrint.

    python bench/evidence_bench.py [N] [--workers=1,2] [--skip-plain]   # PostgreSQL at 127.0.0.1 unless DATABASE_URL is set

The export asks for every item to be printed ("print every item"), the heaviest report; a sampled
report of a campaign this size prints a few dozen pages (``bench/sampled_report_bench.py``).
Measurements in the same run, each in fresh processes so peak memory is per renderer:
- plain: the same item rows in one WeasyPrint document (no cover, no attachments, no chunks);
- chunked, 1 worker and 2 workers: the real export tasks as ``render_export`` runs them. Serial: the plan
  (which items, in which chunks), then after every part the assembly (cover and contents, merge, page
  numbers, signature). Parallel: ``render_export_front`` (the front's body and the attached data) and
  ``render_export_chunk`` for every chunk of 500 items, in a multiprocessing pool standing in for Celery
  workers (each part on whichever process is free, as on a broker's queue).
Prints time, peak RSS of the rendering processes, pages and pages per second; and for each run its
serial part S and the work of its parallel part P (wall and CPU seconds), so that the time on N workers
is about S + P/N (Amdahl's law; with no more workers than CPUs). Targets: under 60 s, under 1 GB, at
least the plain rate, and 2 workers at least 1.3x faster than 1.
Other processes share the CPUs of a development machine: compare ratios within one run, and the CPU
seconds, which contention does not inflate as much as the wall-clock seconds.
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
SKIP_PLAIN = "--skip-plain" in sys.argv
os.environ.setdefault("LOG_LEVEL", "WARNING")  # WeasyPrint and fontTools log every page and glyph at INFO
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
    # The pool stands in for the workers of the parallel part; the assembly it would enqueue is run and
    # timed apart, as the serial part.
    tasks.assemble_export.delay = lambda export_id: None


def _run_task(args):
    start, cpu = time.perf_counter(), time.process_time()
    if args[0] == "front":
        tasks.render_export_front.run(args[1])
    else:
        tasks.render_export_chunk.run(*args)
    return time.perf_counter() - start, time.process_time() - cpu, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _assemble(export_pk, queue):
    connections.close_all()
    start, cpu = time.perf_counter(), time.process_time()
    tasks.assemble_export.run(export_pk)
    queue.put((time.perf_counter() - start, time.process_time() - cpu, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))


def chunked(campaign, actor, workers: int) -> dict:
    export = EvidenceExport.objects.create(
        kind="campaign", campaign=campaign, requested_by=actor,
        parameters={"kind": "campaign", "campaign": campaign.pk, "subject": campaign.name, "print_all_items": True,
                    "sample_seed": evidence.new_sample_seed()})
    start, cpu, own_cpu = time.perf_counter(), _children_cpu(), time.process_time()
    # Serial, before the parts: what render_export does.
    chunks = len(evidence_pdf.plan_campaign_report(export).chunks)
    EvidenceExport.objects.filter(pk=export.pk).update(status="rendering", chunks_total=chunks)
    plan_seconds, plan_cpu = time.perf_counter() - start, time.process_time() - own_cpu
    connections.close_all()
    ctx = multiprocessing.get_context("fork")
    parallel_start = time.perf_counter()
    with ctx.Pool(workers, initializer=_child_init) as pool:
        # As render_export enqueues them: the front's body first, then every chunk.
        jobs = [("front", export.pk)] + [(export.pk, i) for i in range(chunks)]
        parts = pool.map(_run_task, jobs, chunksize=1)
        pool.close()
        pool.join()
    parallel_seconds = time.perf_counter() - parallel_start
    export.refresh_from_db()
    assert export.progress == tasks.ASSEMBLY_QUEUED, (export.status, export.progress_note, export.error)
    # Serial, after the parts: the assembly, in a process of its own (forked without this process's connection).
    connections.close_all()
    queue = ctx.Queue()
    process = ctx.Process(target=_assemble, args=(export.pk, queue))
    process.start()
    assembly = queue.get()
    process.join()
    elapsed, cpu = time.perf_counter() - start, _children_cpu() - cpu + plan_cpu
    export.refresh_from_db()
    assert export.status == "done", export.error
    return {"seconds": elapsed, "cpu": cpu, "pages": export.page_count,
            "peak_mb": max(rss for _, _, rss in [*parts, assembly]) / MB, "chunks": chunks, "mb": export.size / 1e6,
            "serial": plan_seconds + assembly[0], "serial_cpu": plan_cpu + assembly[1], "plan": plan_seconds,
            "assembly": assembly[0], "parallel_work": sum(p[0] for p in parts),
            "parallel_cpu": sum(p[1] for p in parts), "parallel_seconds": parallel_seconds,
            "longest_part": max(p[0] for p in parts), "parts": len(parts)}


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
    if "serial" in r:
        print(f"{'':22} serial S: plan {r['plan']:.1f} s + assembly {r['assembly']:.1f} s = {r['serial']:.1f} s "
              f"({r['serial_cpu']:.1f} s CPU)")
        print(f"{'':22} parallel P: {r['parts']} parts, {r['parallel_work']:.1f} s of work ({r['parallel_cpu']:.1f} s CPU) "
              f"done in {r['parallel_seconds']:.1f} s; the longest part {r['longest_part']:.1f} s")


def amdahl(results: dict) -> None:
    """The time on N workers from each run's parts, and the measured speed-up."""
    for name, r in results.items():
        if "serial" not in r:
            continue
        s, p, s_cpu, p_cpu = r["serial"], r["parallel_work"], r["serial_cpu"], r["parallel_cpu"]
        predicted = ", ".join(f"{n}: {s + p / n:.1f} s" for n in (1, 2, 4, 8))
        predicted_cpu = ", ".join(f"{n}: {s_cpu + p_cpu / n:.1f} s" for n in (1, 2, 4, 8))
        print(f"{name}: serial fraction {s / (s + p):.1%} (CPU {s_cpu / (s_cpu + p_cpu):.1%}); T(N) = S + P/N = "
              f"{s:.1f} + {p:.1f}/N -> {predicted}; from CPU seconds {s_cpu:.1f} + {p_cpu:.1f}/N -> {predicted_cpu}")
    one, two = results.get("chunked, 1 worker"), results.get("chunked, 2 workers")
    if one and two:
        speedup = one["seconds"] / two["seconds"]
        print(f"2 workers against 1: {one['seconds']:.1f} s -> {two['seconds']:.1f} s, {speedup:.2f}x "
              f"({'meets' if speedup >= 1.3 else 'MISSES'} the 1.3x target; Amdahl's bound from the 1-worker run: "
              f"{(one['serial'] + one['parallel_work']) / (one['serial'] + one['parallel_work'] / 2):.2f}x)")


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
    amdahl(results)
    if not SKIP_PLAIN:
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
