"""Evidence exports requested and followed: who may request which export, the request itself (rendered by a
worker), and its progress.

Compliance and admins may export anything; an owner may export only the dossier of a key they own;
nobody else exports anything. The same rule says who may see and download an export afterwards.
"""

from __future__ import annotations

import datetime

from django.conf import settings
from django.utils import timezone

from attestations.models import Campaign, EvidenceExport
from attestations.services import evidence
from attestations.services.evidence import Kind
from core import roles
from core.actors import system_user
from core.chain import sealed_atomic
from core.errors import ServiceError
from core.history import attribute_change
from core.jobs import enqueue_on_commit
from keys.models import ApiKey, Customer


class EvidenceError(ServiceError):
    """A refused export request or download."""


def exports_visible_to(user):
    """The one definition of who sees which export: compliance and admins all (and an auditor, while their grant
    lasts); an owner their keys' dossiers."""
    exports = EvidenceExport.objects.select_related("requested_by", "campaign", "key", "customer")
    if not user.is_authenticated:
        return exports.none()
    if roles.reads_everything(user):
        return exports
    own_keys = ApiKey.objects.visible_to(user).filter(owner=user)
    return exports.filter(kind=Kind.KEY, key__in=own_keys)


def can_request_dossier(user, key: ApiKey) -> bool:
    if not user.is_authenticated:
        return False
    return roles.sees_everything(user) or ApiKey.objects.visible_to(user).filter(pk=key.pk, owner=user).exists()


def _period(period_start, period_end) -> dict[str, list[str]]:
    """A report covers what happened: a period in order, and not after today."""
    today = timezone.localdate()
    errors = {}
    for name, day in (("period_start", period_start), ("period_end", period_end)):
        if day and day > today:
            errors[name] = [f"A report covers the past: give a date no later than today ({today.isoformat()})."]
    if not errors and period_start and period_end and period_start > period_end:
        errors["period_end"] = ["The period ends before it starts."]
    return errors


SAMPLE_SIZE_MESSAGE = (f"Give the sample size as a whole number of items from {evidence.SAMPLE_SIZE_MIN} to "
                       f"{evidence.SAMPLE_SIZE_MAX:,}, or leave it empty for 25, 40 or 60 by the number of confirmed "
                       f"decisions. To print every item, choose \"print every item\" instead.")


def _sampling(kind: str, sample_size, print_all_items) -> dict[str, list[str]]:
    """A sample size and "print every item" belong to a campaign report; the size within its bounds."""
    errors = {}
    if sample_size is not None:
        if kind != Kind.CAMPAIGN:
            errors["sample_size"] = ["Only a campaign report draws a sample: leave the sample size empty."]
        elif (isinstance(sample_size, bool) or not isinstance(sample_size, int)
              or not evidence.SAMPLE_SIZE_MIN <= sample_size <= evidence.SAMPLE_SIZE_MAX):
            errors["sample_size"] = [SAMPLE_SIZE_MESSAGE]
    if print_all_items and kind != Kind.CAMPAIGN:
        errors["print_all_items"] = ["Only a campaign report has items to print: leave \"print every item\" off."]
    return errors


def request_export(*, actor, kind: str, campaign: Campaign | None = None, key: ApiKey | None = None,
                   customer: Customer | None = None, period_start: datetime.date | None = None,
                   period_end: datetime.date | None = None, sample_size: int | None = None,
                   print_all_items: bool = False) -> EvidenceExport:
    """Queue an evidence export; rendering starts when the transaction commits.

    Compliance and admins may export any campaign, key or customer; an owner only the dossier of a
    key they own; anyone else is refused. The export records who asked and with which parameters. A
    campaign report prints a sample of the confirmed decisions (``sample_size`` of them, or the size
    the population calls for), drawn with a random seed kept in its parameters, unless every item is
    to be printed (``print_all_items``).
    """
    if not getattr(actor, "is_authenticated", False):
        raise EvidenceError("Sign in to request an export.")
    if roles.is_auditor(actor):
        raise EvidenceError("Auditors read the exports compliance requests; they request none.")
    subjects = {Kind.CAMPAIGN: ("campaign", campaign), Kind.KEY: ("key", key), Kind.CUSTOMER: ("customer", customer)}
    if kind not in subjects:
        raise EvidenceError(f"Choose the kind of export: {', '.join(Kind.values)}.", field="kind")
    name, subject = subjects[kind]
    if subject is None:
        raise EvidenceError(f"Name the {name} to export.", field=name)
    others = [n for k, (n, s) in subjects.items() if k != kind and s is not None]
    if others:
        raise EvidenceError(f"A {Kind(kind).label.lower()} names only a {name}, not a {others[0]}.", field=others[0])
    if not roles.sees_everything(actor):
        if kind != Kind.KEY:
            raise EvidenceError("Only compliance and admins export campaign and customer reports.")
        if not can_request_dossier(actor, subject):
            raise EvidenceError("You may request the dossier of your own keys only.", field="key")
    if kind != Kind.CUSTOMER and (period_start or period_end):
        raise EvidenceError("Only a customer report covers a period.", field="period_start")
    errors = _period(period_start, period_end) | _sampling(kind, sample_size, print_all_items)
    if errors:
        raise EvidenceError(errors)
    parameters = {"kind": kind, name: subject.pk, "subject": str(subject)}
    if period_start:
        parameters["period_start"] = period_start.isoformat()
    if period_end:
        parameters["period_end"] = period_end.isoformat()
    if kind == Kind.CAMPAIGN:
        if sample_size is not None:
            parameters["sample_size"] = sample_size
        parameters["print_all_items"] = bool(print_all_items)
        parameters["sample_seed"] = evidence.new_sample_seed()
    with sealed_atomic():
        export = EvidenceExport(
            kind=kind, campaign=campaign, key=key, customer=customer, period_start=period_start,
            period_end=period_end, parameters=parameters, requested_by=actor, progress_note="Waiting for a worker",
        )
        attribute_change(export, actor, "requested")
        export.save()
        enqueue_on_commit("attestations.tasks.render_export", export.pk)
    return export


def sampling_shown(export: EvidenceExport) -> dict | None:
    """A campaign report's printing options as its page shows them; None for other kinds."""
    if export.kind != Kind.CAMPAIGN:
        return None
    parameters = export.parameters or {}
    return {"print_all_items": bool(parameters.get("print_all_items")), "sample_size": parameters.get("sample_size"),
            "sample_seed": parameters.get("sample_seed", "")}


def set_progress(export_id: int, percent: int, note: str, **fields) -> None:
    """Progress is written outside any long transaction so pollers see it while the export renders.

    Progress alone is not recorded in the export's history; a change of state (``fields``) is.
    """
    progress = {"progress": max(0, min(100, percent)), "progress_note": note[:200]}
    if fields:
        record_state(export_id, note, **progress, **fields)
    else:
        EvidenceExport.objects.filter(pk=export_id).update(**progress)


def record_state(export_id: int, reason: str, **fields) -> EvidenceExport:
    """Change an export's state (rendering, done, failed, its file and digest), recorded in its chained history."""
    with sealed_atomic():
        export = EvidenceExport.objects.select_for_update().get(pk=export_id)
        for name, value in fields.items():
            setattr(export, name, value)
        attribute_change(export, system_user(), reason)
        export.save()
    return export


def purge_expired_exports(now=None) -> int:
    """Delete the files of exports older than ``EVIDENCE_EXPORT_RETENTION_DAYS`` (never earlier).

    The export's record stays, with its digest; the deletion is a chained change of its history.
    """
    days = settings.EVIDENCE_EXPORT_RETENTION_DAYS
    if days <= 0:
        return 0
    cutoff = (now or timezone.now()) - datetime.timedelta(days=days)
    purged = 0
    expired = EvidenceExport.objects.filter(finished_at__lt=cutoff, file_purged_at__isnull=True).exclude(file="")
    for export in expired.iterator():
        # Recorded first: a file whose deletion failed is left behind, never a record claiming a file that is gone.
        name = export.file.name
        record_state(export.pk, f"file deleted: retention of {days} days ended", file="",
                     file_purged_at=timezone.now())
        export.file.storage.delete(name)
        purged += 1
    return purged
