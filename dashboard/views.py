import datetime

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Exists, OuterRef, Q
from django.shortcuts import render
from django.utils import timezone

from core import roles
from core.lists import READERS, ObjectListView
from dashboard.charts import trend_charts
from dashboard.compliance_overview import compliance_overview
from dashboard.filters import CustomerKeyCountsFilterSet
from dashboard.models import CustomerKeyCounts
from dashboard.summary import ATTENTION_HORIZON_DAYS, ATTENTION_ORDER, live_figures, summary_figures, summary_for_list
from dashboard.tables import CustomerKeyCountsTable
from dashboard.trends import LIMIT_CYCLES, schedule_trends
from keys.choices import LIVE_KEY_STATUSES, ExceptionKind, ExceptionStatus, KeyStatus
from keys.models import ApiKey, KeyException

ATTENTION_LIST_SIZE = 10
# Customers on the dashboard's table, those needing attention most; the others on the per-customer list.
CUSTOMER_ROWS_SHOWN = 10


def _attention(keys, condition: Q, order: str, date_field: str, total: int) -> dict:
    """A short list of live keys needing attention, each with the date that matters, and their number
    (counted with the dashboard's other figures)."""
    shown = list(keys.filter(condition).select_related("workflow__customer", "owner").order_by(order, "pk")
                 [:ATTENTION_LIST_SIZE])
    return {
        "count": total,
        "more": max(total - len(shown), 0),
        "rows": [{"key": key, "date": getattr(key, date_field) if date_field else None} for key in shown],
    }


EXCEPTION_AGE_BUCKETS = ((30, "Under 30 days"), (90, "30 to 90 days"), (180, "90 to 180 days"),
                         (365, "180 days to a year"), (None, "Over a year"))


def exception_register(today: datetime.date) -> dict:
    """Compliance's register of exceptions in force (requested or approved, lapsed ones included):
    counts by kind, by age since the request and for the customers with the most of them, and the transitional
    exceptions past their end date whose key is still live (overdue migrations). Three queries whatever the
    data."""
    now, lower, ages = timezone.now(), 0, []
    for upper, label in EXCEPTION_AGE_BUCKETS:
        bucket = Q(requested_at__lte=now - datetime.timedelta(days=lower))
        if upper is not None:
            bucket &= Q(requested_at__gt=now - datetime.timedelta(days=upper))
        ages.append((label, bucket))
        lower = upper
    in_force = Q(status__in=[ExceptionStatus.REQUESTED, ExceptionStatus.APPROVED])
    past_end = Q(kind=ExceptionKind.TRANSITIONAL, end_date__lt=today,
                 status__in=[ExceptionStatus.APPROVED, ExceptionStatus.EXPIRED])
    # The key's status asked of the few exceptions past their end only: a join here would read every key.
    key_live = Exists(ApiKey.objects.filter(pk=OuterRef("key_id"), status__in=LIVE_KEY_STATUSES))
    overdue = past_end & Q(key__status__in=LIVE_KEY_STATUSES)
    counts = KeyException.objects.aggregate(
        total=Count("pk", filter=in_force),
        requested=Count("pk", filter=Q(status=ExceptionStatus.REQUESTED)),
        lapsed=Count("pk", filter=in_force & Q(lapsed_on__isnull=False)),
        overdue=Count("pk", filter=past_end & Q(key_live)),
        **{f"kind_{kind.value}": Count("pk", filter=in_force & Q(kind=kind)) for kind in ExceptionKind},
        **{f"age_{i}": Count("pk", filter=in_force & bucket) for i, (_, bucket) in enumerate(ages)},
    )
    by_customer = (
        KeyException.objects.filter(in_force).order_by()
        .values("key__workflow__customer__id", "key__workflow__customer__name")
        .annotate(transitional=Count("pk", filter=Q(kind=ExceptionKind.TRANSITIONAL)),
                  permanent=Count("pk", filter=Q(kind=ExceptionKind.PERMANENT)), total=Count("pk"))
        .order_by("-total", "key__workflow__customer__name", "key__workflow__customer__id")
    )
    # One more than shown, to tell whether there are more.
    by_customer = list(by_customer[:ATTENTION_LIST_SIZE + 1])
    overdue_rows = (
        KeyException.objects.filter(overdue).select_related("key__workflow__customer").order_by("end_date", "pk")
    )
    return {
        "total": counts["total"],
        "requested": counts["requested"],
        "lapsed": counts["lapsed"],
        "by_kind": [{"kind": k.value, "label": k.label, "count": counts[f"kind_{k.value}"]} for k in ExceptionKind],
        "by_customer": by_customer[:ATTENTION_LIST_SIZE],
        "more_customers": len(by_customer) > ATTENTION_LIST_SIZE,
        "by_age": [{"label": label, "count": counts[f"age_{i}"]} for i, (label, _) in enumerate(ages)],
        "overdue_count": counts["overdue"],
        "overdue": list(overdue_rows[:ATTENTION_LIST_SIZE]),
    }


def review_trends() -> list[dict]:
    """Each schedule's trend of review figures with its two charts."""
    return [{**trend, "charts": trend_charts(trend)} for trend in schedule_trends(LIMIT_CYCLES)]


@login_required
def dashboard(request):
    keys = ApiKey.objects.visible_to(request.user)
    reads_everything = roles.reads_everything(request.user)
    # In the order of the live-key indexes' condition (LIVE_KEY_STATUSES is a set).
    live_keys = keys.live()
    now = timezone.now()
    today = timezone.localdate(now)
    horizon = today + datetime.timedelta(days=ATTENTION_HORIZON_DAYS)

    # Over every key, the summary's counts once the keys are many; an owner's own keys are counted live.
    figures = ((summary_figures(CUSTOMER_ROWS_SHOWN) if reads_everything else None)
               or live_figures(keys, today, now, CUSTOMER_ROWS_SHOWN))
    counts = figures.totals
    status_counts = [{"status": status.value, "label": status.label, "count": counts[status.value]}
                     for status in KeyStatus]
    context = {
        "sees_everything": reads_everything,
        "total": counts["total"],
        "counted_at": figures.counted_at,
        "status_counts": status_counts,
        "horizon_days": ATTENTION_HORIZON_DAYS,
        "stale_days": settings.KEY_STALE_AFTER_DAYS,
        "due_for_review": _attention(live_keys, Q(next_review_on__lte=horizon), "next_review_on", "next_review_on",
                                     counts["due_for_review"]),
        "expiring": _attention(live_keys, Q(expires_on__lte=horizon), "expires_on", "expires_on", counts["expiring"]),
        "rotation_required": _attention(live_keys, Q(rotation_required=True), "status_changed_at", "",
                                        counts["rotation_required"]),
        "flag_counts": {name: counts[name] for name in ("orphaned", "unattested", "unused")},
        "customer_rows": figures.rows if reads_everything else [],
        "customer_count": figures.customers if reads_everything else 0,
        "exception_register": exception_register(today) if reads_everything else None,
        "compliance_overview": compliance_overview(today) if reads_everything else None,
        "review_trends": review_trends() if reads_everything else None,
        "trend_cycles": LIMIT_CYCLES,
    }
    return render(request, "portal/dashboard.html", context)


class CustomerKeyCountsListView(ObjectListView):
    """Every customer's keys by status and flag, from the dashboard's summary (as of its refresh), those needing
    attention first, a page at a time; the dashboard shows the first few."""

    queryset = CustomerKeyCounts.objects.select_related("customer")
    table_class = CustomerKeyCountsTable
    filterset_class = CustomerKeyCountsFilterSet
    template_name = "dashboard/customer_list.html"
    ordering = ATTENTION_ORDER
    per_page = 50
    table_id = "customer-table"
    allowed_roles = READERS
    permission_denied_message = "Only compliance, admins and auditors see every customer's keys."

    def get(self, request, *args, **kwargs):
        self.summary = summary_for_list()
        return super().get(request, *args, **kwargs)

    def get_context_data(self, **kwargs):
        return {**super().get_context_data(**kwargs), "counted_at": self.summary.refreshed_at,
                "horizon_days": ATTENTION_HORIZON_DAYS}
