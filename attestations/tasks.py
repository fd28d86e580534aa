"""Celery tasks of attestations: thin, idempotent wrappers over attestations.services (safe to run twice).

Campaigns: launches, reminders, escalations, closes and successions. Evidence exports: a campaign report
decides which items it prints (``evidence.plan_report``: the exceptions and other items an auditor must
see, and a sample of the confirmed decisions), then fans out into one task per chunk of those and one for
the body of the front matter (with the attached data), run by whichever workers are free; the part that
completes the set (counted under the export's row lock, from the part files present, so a part rendered
twice is counted once) enqueues the small assembly. With ``acks_late`` a task may run again after a worker
dies: a part already whole is not rendered again, and a finished export is left alone.
"""

from __future__ import annotations

import logging

from celery import group, shared_task
from django.contrib.auth import get_user_model
from django.utils import timezone

from attestations.choices import CampaignStatus
from attestations.models import Campaign, CampaignSchedule, EvidenceExport, Notification, OwnershipTransfer
from attestations.services import campaigns, evidence, evidence_pdf, exports, notifications, progress, reminders
from core.actors import system_user
from core.chain import sealed_atomic

log = logging.getLogger(__name__)
User = get_user_model()


@shared_task
def launch_scheduled_campaign(schedule_id: int) -> int | None:
    schedule = CampaignSchedule.objects.filter(pk=schedule_id).first()
    if schedule is None:
        return None
    campaign = campaigns.launch_due_schedule(schedule, actor=system_user())
    return campaign.pk if campaign else None


@shared_task
def launch_due_schedules() -> list[int]:
    launched = []
    for schedule_id in CampaignSchedule.objects.filter(is_active=True, next_launch_on__lte=timezone.localdate()) \
            .values_list("pk", flat=True):
        campaign_id = launch_scheduled_campaign(schedule_id)
        if campaign_id:
            launched.append(campaign_id)
    return launched


@shared_task
def notify_campaign_launched(campaign_id: int) -> int:
    campaign = Campaign.objects.get(pk=campaign_id)
    sent = 0
    for user_id, count in reminders.reviewers_with_pending(campaign).items():
        if reminders.record_notification(campaign, Notification.Kind.LAUNCHED, user_id, 0, count):
            notifications.campaign_launched(campaign, User.objects.get(pk=user_id), count)
            sent += 1
    return sent


def _active_campaigns(campaign_id: int | None):
    """Every active campaign, or the one named if it is active."""
    active = Campaign.objects.filter(status=CampaignStatus.ACTIVE)
    return active.filter(pk=campaign_id) if campaign_id else active


@shared_task
def send_reminders(campaign_id: int | None = None) -> int:
    """Remind reviewers who still have pending items, once per reminder day."""
    today = timezone.localdate()
    sent = 0
    for campaign in _active_campaigns(campaign_id):
        day = reminders.due_reminder_day(campaign, today)
        if day is None:
            continue
        for user_id, count in reminders.reviewers_with_pending(campaign).items():
            if reminders.record_notification(campaign, Notification.Kind.REMINDER, user_id, day, count):
                notifications.reminder(campaign, User.objects.get(pk=user_id), count)
                sent += 1
    return sent


@shared_task
def escalate_overdue(campaign_id: int | None = None) -> int:
    """Send pending items past the escalation day to the owner's manager (or compliance)."""
    today = timezone.localdate()
    actor = system_user()
    sent = 0
    for campaign in _active_campaigns(campaign_id):
        for user_id, items in reminders.escalation_targets(campaign, today, actor=actor).items():
            notifications.escalation(campaign, User.objects.get(pk=user_id), items)
            sent += 1
    return sent


@shared_task
def close_campaign(campaign_id: int, actor_id: int | None = None) -> dict:
    campaign = Campaign.objects.get(pk=campaign_id)
    actor = User.objects.get(pk=actor_id) if actor_id else system_user()
    result = campaigns.close_campaign(campaign, actor=actor)
    log.info("campaign %s closed: %s", campaign_id, result)
    return result


@shared_task
def end_due_stages() -> dict:
    """Every day: settle the items of each campaign stage whose window has ended (the last stage ends with the close)."""
    from attestations.services import review_stages

    actor = system_user()
    settled = {}
    for campaign in Campaign.objects.filter(status=CampaignStatus.ACTIVE):
        if len(campaign.stages) < 2:
            continue
        result = review_stages.end_due_stages(campaign, actor=actor)
        if result:
            settled[campaign.pk] = result
    return settled


@shared_task
def close_due_campaigns() -> list[int]:
    today = timezone.localdate()
    end_due_stages()
    closed = []
    for campaign_id in Campaign.objects.filter(status=CampaignStatus.ACTIVE, due_on__lt=today).values_list("pk", flat=True):
        close_campaign(campaign_id)
        closed.append(campaign_id)
    return closed


@shared_task
def notify_transfer_requested(transfer_id: int) -> None:
    transfer = OwnershipTransfer.objects.select_related("key", "to_user", "from_user", "requested_by").get(pk=transfer_id)
    notifications.transfer_requested(transfer)


@shared_task
def lapse_due_successions() -> dict:
    """Every hour: successions of departed owners' keys unaccepted at their deadline get their default action."""
    from attestations.services import successions

    result = successions.lapse_due_successions()
    if result["lapsed"]:
        log.info("successions lapsed: %s", result)
    return result


Status = EvidenceExport.Status
Kind = EvidenceExport.Kind


def _fail(export_id: int, error: Exception) -> None:
    log.exception("evidence export %s failed", export_id)
    exports.record_state(export_id, "failed", status=Status.FAILED, error=f"{type(error).__name__}: {error}"[:2000],
                         progress_note="Failed", finished_at=timezone.now())


def _finish(export: EvidenceExport, pdf: bytes, chain: evidence.ChainResult) -> None:
    exports.set_progress(export.pk, 95, "Signing and storing")
    fields = evidence_pdf.store(export, pdf)
    exports.record_state(export.pk, "done", status=Status.DONE, progress=100, progress_note="Done",
                         finished_at=timezone.now(), error="", chain_ok=chain.ok, chain_seq=chain.head_seq,
                         chain_head=chain.head_digest, **fields)


@shared_task
def render_export(export_id: int) -> None:
    """Start an export: small reports render at once, campaign reports fan out into part tasks."""
    export = EvidenceExport.objects.select_related("campaign", "key", "customer", "requested_by").get(pk=export_id)
    if export.status in (Status.DONE, Status.FAILED):
        return
    try:
        if export.kind == Kind.CAMPAIGN:
            if export.status == Status.RENDERING and evidence_pdf.plan_exists(export):
                # Run again (redelivered): the plan stands, the progress too; parts already whole are not rendered
                # again, and the assembly is enqueued once.
                plan = evidence_pdf.load_plan(export)
            else:
                plan = evidence_pdf.plan_campaign_report(export)
                exports.set_progress(export.pk, 3, f"Rendering {len(plan.chunks)} chunk(s) of the {plan.printed} "
                                     "item(s) printed", status=Status.RENDERING, chunks_total=len(plan.chunks),
                                     chunks_done=0)
            chunks = len(plan.chunks)
            # One message per part, sent together; whichever worker is free takes the next. The front's body
            # goes first: it is the longest part when few items are printed.
            group([render_export_front.si(export.pk), *(render_export_chunk.si(export.pk, i) for i in range(chunks))]
                  ).apply_async()
            return
        exports.set_progress(export.pk, 10, "Verifying the history chain", status=Status.RENDERING)
        chain = evidence.verify_history_chain()
        generated_at = evidence.generated_at()
        exports.set_progress(export.pk, 40, "Rendering the PDF")
        if export.kind == Kind.KEY:
            pdf = evidence_pdf.render_key_dossier(export, chain, generated_at)
        else:
            pdf = evidence_pdf.render_customer_report(export, chain, generated_at)
        _finish(export, pdf, chain)
    except Exception as error:
        _fail(export_id, error)


# Progress while the parts render runs up to PARTS_RENDERED; the part that completes the set raises it to
# ASSEMBLY_QUEUED under the export's row lock, so only one enqueues the assembly.
PARTS_RENDERED = 83
ASSEMBLY_QUEUED = 85


def _part_rendered(export_id: int) -> None:
    """Count the parts present (a part rendered twice counts once) and enqueue the assembly once all are."""
    with sealed_atomic():
        locked = EvidenceExport.objects.select_for_update().get(pk=export_id)
        if locked.status != Status.RENDERING or locked.progress >= ASSEMBLY_QUEUED:
            return
        storage = evidence_pdf.parts_storage()
        done = sum(storage.exists(evidence_pdf.part_name(export_id, i)) for i in range(locked.chunks_total))
        complete = done == locked.chunks_total and evidence_pdf.front_body_done(export_id)
        note = ("Assembling the report" if complete
                else f"Rendered {done} of {locked.chunks_total} chunk(s) of items")
        EvidenceExport.objects.filter(pk=export_id).update(
            chunks_done=done, progress_note=note,
            progress=ASSEMBLY_QUEUED if complete else 3 + int((PARTS_RENDERED - 3) * done / max(locked.chunks_total, 1)))
    if complete:
        assemble_export.delay(export_id)


@shared_task
def render_export_chunk(export_id: int, index: int) -> None:
    """Render one chunk of a campaign's printed items, unless a worker did already (a redelivered or repeated
    task renders nothing twice); the part that completes the set enqueues the assembly."""
    export = EvidenceExport.objects.select_related("campaign").get(pk=export_id)
    if export.status != Status.RENDERING:
        return
    try:
        if not evidence_pdf.part_is_whole(evidence_pdf.part_name(export_id, index)):
            evidence_pdf.render_campaign_chunk(export, evidence_pdf.load_plan(export), index)
        _part_rendered(export_id)
    except Exception as error:
        _fail(export_id, error)


@shared_task
def render_export_front(export_id: int) -> None:
    """Render the body of a campaign report's front matter and its attachments beside the chunks (once, like a
    chunk); the part that completes the set enqueues the assembly."""
    export = EvidenceExport.objects.select_related("campaign", "requested_by").get(pk=export_id)
    if export.status != Status.RENDERING:
        return
    try:
        if not evidence_pdf.front_body_done(export_id):
            evidence_pdf.render_campaign_front_body(export, evidence_pdf.load_plan(export),
                                                    evidence.verify_history_chain(), evidence.generated_at())
        _part_rendered(export_id)
    except Exception as error:
        _fail(export_id, error)


@shared_task
def assemble_export(export_id: int) -> None:
    """Cover and contents, merge, page numbers and signature: the last step of a campaign report, kept small."""
    export = EvidenceExport.objects.select_related("campaign", "requested_by").get(pk=export_id)
    if export.status != Status.RENDERING:
        return
    try:
        plan = evidence_pdf.load_plan(export)
        if len(plan.chunks) != export.chunks_total:
            raise RuntimeError("The campaign's items changed while the report was rendering; request it again.")
        # The parts printed from the plan: it must still hold now that every part is rendered.
        evidence_pdf.check_plan(export, plan)
        for index in range(export.chunks_total):
            # Half a file, left by a worker killed while writing it, is rendered again here rather than merged.
            if not evidence_pdf.part_is_whole(evidence_pdf.part_name(export_id, index)):
                evidence_pdf.render_campaign_chunk(export, plan, index)
        exports.set_progress(export_id, 88, "Rendering the cover and contents")
        front = evidence_pdf.load_front(export)
        head = evidence_pdf.render_campaign_head(export, plan, front, evidence_pdf.part_pages(export))
        exports.set_progress(export_id, 92, "Merging and numbering the pages")
        storage = evidence_pdf.parts_storage()
        parts = [storage.open(name, "rb") for name in
                 [evidence_pdf.body_name(export_id), *(evidence_pdf.part_name(export_id, i)
                                                       for i in range(export.chunks_total))]]
        try:
            pdf = evidence_pdf.merge_and_number(head, parts, footer=evidence_pdf.identity(export))
        finally:
            for part in parts:
                part.close()
        _finish(export, pdf, front.chain)
        evidence_pdf.delete_parts(export)
    except Exception as error:
        _fail(export_id, error)


@shared_task
def apply_retention() -> dict:
    """Every day: evidence files and access records past their retention period are deleted, each deletion
    recorded in the chain."""
    from core import retention

    purge = retention.purge_access_records()
    result = {"exports": exports.purge_expired_exports(), "access_records": purge.count if purge else 0}
    log.info("retention applied: %s", result)
    return result


@shared_task
def verify_whole_chain() -> dict:
    """Every night: walk the whole chain (exports check only what changed since the last verified head)."""
    from core.chain import verify_chain

    result = verify_chain()
    if not result.ok:
        log.error("history chain BROKEN: %s", "; ".join(p.message for p in result.problems[:20]))
    return {"ok": result.ok, "checked": result.checked, "problems": len(result.problems)}


@shared_task
def refresh_campaign_figures(campaign_id: int | None = None) -> list[int]:
    """Count again the stored figures of the campaigns that need it (``progress.campaigns_to_count``), or of the
    campaign named; returns the campaigns counted."""
    counted = []
    for campaign in (Campaign.objects.filter(pk=campaign_id) if campaign_id else progress.campaigns_to_count()):
        progress.refresh_campaign_figures(campaign)
        counted.append(campaign.pk)
    return counted
