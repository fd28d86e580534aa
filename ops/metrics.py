"""``/metrics``: django-prometheus's request, response and latency metrics, the usage ingest counter, and the
portal's own gauges, read from the database at scrape time in a fixed number of queries (three).

Refused (403) unless the caller is from METRICS_ALLOWED_IPS or sends ``Authorization: Bearer <METRICS_TOKEN>``.
"""

from django.db.models import Count, Min, Q
from django.http import HttpResponse, HttpResponseForbidden
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from django_prometheus.exports import ExportToDjangoView
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily

from attestations.choices import CampaignStatus, ItemStatus
from attestations.models import Campaign, EvidenceExport
from keys.choices import OPEN_REVOCATION_STATUSES, RevocationRequestStatus
from keys.models import RevocationRequest
from keys.services import usage  # noqa: F401  (registers the usage ingest counter)
from ops.access import may_read_metrics

# The evidence export durations are those of the most recent finished exports, so a scrape reads a bounded number.
RECENT_EXPORTS = 100
EXPORT_DURATION_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


class PortalCollector:
    """Attestation backlog, revocations awaiting the issuer and evidence export durations, as of now."""

    def collect(self):
        yield from self.campaign_items()
        yield from self.revocations()
        yield from self.export_durations()

    def campaign_items(self):
        pending = GaugeMetricFamily("portal_campaign_items_pending", "Undecided attestation items of an active campaign.",
                                    labels=["campaign_id", "campaign"])
        overdue = GaugeMetricFamily("portal_campaign_items_overdue",
                                    "Undecided attestation items of an active campaign past its due date.",
                                    labels=["campaign_id", "campaign"])
        today = timezone.localdate()
        rows = (Campaign.objects.filter(status=CampaignStatus.ACTIVE)
                .annotate(pending=Count("items", filter=Q(items__status=ItemStatus.PENDING)))
                .order_by("pk").values_list("pk", "name", "due_on", "pending"))
        for pk, name, due_on, count in rows:
            labels = [str(pk), name]
            pending.add_metric(labels, count)
            overdue.add_metric(labels, count if due_on is not None and due_on < today else 0)
        yield pending
        yield overdue

    def revocations(self):
        waiting = GaugeMetricFamily("portal_revocation_requests_open",
                                    "Revocation requests not yet acknowledged or confirmed at the issuer.", labels=["status"])
        oldest = GaugeMetricFamily("portal_revocation_request_oldest_open_age_seconds",
                                   "Age of the oldest open revocation request.", labels=["status"])
        rows = {status: (n, first) for status, n, first in
                RevocationRequest.objects.filter(status__in=OPEN_REVOCATION_STATUSES).values("status")
                .annotate(n=Count("pk"), first=Min("requested_at")).order_by().values_list("status", "n", "first")}
        now = timezone.now()
        for status in RevocationRequestStatus.values:
            if status not in OPEN_REVOCATION_STATUSES:
                continue
            count, first = rows.get(status, (0, None))
            waiting.add_metric([status], count)
            oldest.add_metric([status], (now - first).total_seconds() if first else 0)
        yield waiting
        yield oldest

    def export_durations(self):
        durations = [
            (finished - requested).total_seconds()
            for requested, finished in EvidenceExport.objects.filter(
                status=EvidenceExport.Status.DONE, finished_at__isnull=False,
            ).order_by("-finished_at").values_list("requested_at", "finished_at")[:RECENT_EXPORTS]
        ]
        buckets = [(str(bound), sum(1 for d in durations if d <= bound)) for bound in EXPORT_DURATION_BUCKETS]
        buckets.append(("+Inf", len(durations)))
        yield HistogramMetricFamily(
            "portal_evidence_export_duration_seconds",
            f"Time from request to finished PDF of the last {RECENT_EXPORTS} finished evidence exports.",
            buckets=buckets, sum_value=sum(durations),
        )


PORTAL_REGISTRY = CollectorRegistry(auto_describe=False)
PORTAL_REGISTRY.register(PortalCollector())


@never_cache
@require_GET
def metrics(request):
    if not may_read_metrics(request):
        return HttpResponseForbidden("Metrics are available to allowed addresses and to the metrics token only.\n",
                                     content_type="text/plain; charset=utf-8")
    exported = ExportToDjangoView(request)
    return HttpResponse(exported.content + generate_latest(PORTAL_REGISTRY), content_type=CONTENT_TYPE_LATEST)
