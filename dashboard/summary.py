"""The dashboard's figures over keys, per customer: counted live while the keys are few (and always for an
owner's own keys), read from ``CustomerKeyCounts`` once compliance's dashboard would count a million keys per
view. A worker job refreshes those counts every few minutes (``dashboard.tasks.refresh_key_summary``); the
page says when they were taken."""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q, Sum, Window
from django.utils import timezone

from dashboard.models import CustomerKeyCounts, KeySummaryRefresh
from keys.choices import LIVE_KEY_STATUSES, KeyStatus
from keys.models import ApiKey

ATTENTION_HORIZON_DAYS = 30
# How often the worker job refreshes the summary (dashboard/migrations/0002_key_summary_job.py).
SUMMARY_INTERVAL = datetime.timedelta(minutes=5)
STATUS_FIELDS = tuple(status.value for status in KeyStatus)
# Counted over live keys only.
FLAG_FIELDS = ("due_for_review", "expiring", "rotation_required", "orphaned", "unattested", "unused", "flagged")
COUNT_FIELDS = ("total", *STATUS_FIELDS, *FLAG_FIELDS)


# The customers whose keys need attention first: the most flagged keys, then the most reviews due.
ATTENTION_ORDER = ("-flagged", "-due_for_review", "customer__name", "customer_id")


def attention_rank(row: dict) -> tuple:
    """A per-customer row's place in ATTENTION_ORDER, for rows counted in Python."""
    return -row["flagged"], -row["due_for_review"], row["customer_name"], row["customer_id"]


@dataclass
class KeyFigures:
    """The customers needing attention most (rows of customer_id, customer_name, contract_status and the
    COUNT_FIELDS, in ATTENTION_ORDER, at most the number asked for), the totals over every customer, how many
    customers have keys, and when the figures were counted if they come from the summary (None: counted for this
    request)."""

    rows: list[dict]
    totals: dict[str, int]
    customers: int
    counted_at: datetime.datetime | None = None


def _conditions(today: datetime.date, now: datetime.datetime) -> dict[str, Q]:
    horizon = today + datetime.timedelta(days=ATTENTION_HORIZON_DAYS)
    stale_cutoff = now - datetime.timedelta(days=settings.KEY_STALE_AFTER_DAYS)
    live = Q(status__in=LIVE_KEY_STATUSES)
    return {
        **{status: Q(status=status) for status in STATUS_FIELDS},
        "due_for_review": live & Q(next_review_on__lte=horizon),
        "expiring": live & Q(expires_on__lte=horizon),
        "rotation_required": live & Q(rotation_required=True),
        "orphaned": live & Q(orphaned=True),
        "unattested": live & Q(unattested=True),
        "unused": live & (Q(last_used_at__isnull=True) | Q(last_used_at__lt=stale_cutoff)),
        "flagged": live & (Q(orphaned=True) | Q(unattested=True) | Q(rotation_required=True)),
    }


def count_per_customer(keys, today: datetime.date, now: datetime.datetime) -> list[dict]:
    """``keys`` counted per customer by status and flag, in one grouped query, ordered by customer name."""
    conditions = _conditions(today, now)
    rows = (
        keys.order_by()
        .values("workflow__customer_id", "workflow__customer__name", "workflow__customer__contract_status")
        # Named apart from the key's fields (orphaned, ...), which the later conditions read.
        .annotate(count_total=Count("pk"),
                  **{f"count_{name}": Count("pk", filter=condition) for name, condition in conditions.items()})
        .order_by("workflow__customer__name")
    )
    return [
        {"customer_id": row["workflow__customer_id"], "customer_name": row["workflow__customer__name"],
         "contract_status": row["workflow__customer__contract_status"],
         **{name: row[f"count_{name}"] for name in COUNT_FIELDS}}
        for row in rows
    ]


def _totals(rows: list[dict]) -> dict[str, int]:
    return {name: sum(row[name] for row in rows) for name in COUNT_FIELDS}


def live_figures(keys, today: datetime.date, now: datetime.datetime, rows_shown: int) -> KeyFigures:
    rows = count_per_customer(keys, today, now)
    return KeyFigures(rows=sorted(rows, key=attention_rank)[:rows_shown], totals=_totals(rows), customers=len(rows))


def last_refresh() -> KeySummaryRefresh | None:
    return KeySummaryRefresh.objects.order_by("-refreshed_at").first()


def summary_is_read(refresh: KeySummaryRefresh | None) -> bool:
    """Whether the dashboard reads its figures over every key from the summary: once its last refresh counted
    at least DASHBOARD_SUMMARY_MIN_KEYS keys (below that, counting per view is cheap)."""
    return refresh is not None and refresh.keys >= settings.DASHBOARD_SUMMARY_MIN_KEYS


def summary_figures(rows_shown: int) -> KeyFigures | None:
    """Every key's figures from the last refresh of the summary, if the dashboard reads it (``summary_is_read``);
    None otherwise (the page counts live). The ``rows_shown`` customers needing attention most, each row carrying
    the totals over every customer (window sums, taken before the limit): one query whatever the number of
    customers."""
    refresh = last_refresh()
    if not summary_is_read(refresh):
        return None
    totals = {f"all_{name}": Window(Sum(name)) for name in COUNT_FIELDS}
    found = list(
        CustomerKeyCounts.objects.values("customer_id", "customer__name", "customer__contract_status", *COUNT_FIELDS)
        .annotate(all_customers=Window(Count("pk")), **totals).order_by(*ATTENTION_ORDER)[:rows_shown]
    )
    rows = [
        {"customer_id": row["customer_id"], "customer_name": row["customer__name"],
         "contract_status": row["customer__contract_status"], **{name: row[name] for name in COUNT_FIELDS}}
        for row in found
    ]
    first = found[0] if found else {}
    return KeyFigures(rows=rows, totals={name: first.get(f"all_{name}", 0) for name in COUNT_FIELDS},
                      customers=first.get("all_customers", 0), counted_at=refresh.refreshed_at)


def summary_for_list() -> KeySummaryRefresh:
    """The summary as the per-customer list reads it: the last refresh, counted again first when there is none
    or, while the dashboard still counts live (fewer keys than DASHBOARD_SUMMARY_MIN_KEYS, so counting is cheap),
    when it is older than the worker job's interval (no worker running, as in a demo). Never counted per view
    once the keys are many: the job's refresh, however old, is then what the list shows, with its time."""
    refresh = last_refresh()
    if refresh is None or (not summary_is_read(refresh) and refresh.refreshed_at < timezone.now() - SUMMARY_INTERVAL):
        return refresh_key_summary()
    return refresh


def refresh_key_summary() -> KeySummaryRefresh:
    """Count every key per customer again and replace the summary with the counts, in one transaction (readers
    see the old counts or the new ones). Safe to run twice at once: the second waits for the first's lock."""
    started = time.perf_counter()
    with transaction.atomic():
        now = timezone.now()
        refresh, _ = KeySummaryRefresh.objects.select_for_update().get_or_create(
            pk=1, defaults={"refreshed_at": now, "as_of": timezone.localdate(now)})
        now = timezone.now()
        today = timezone.localdate(now)
        rows = count_per_customer(ApiKey.objects.all(), today, now)
        CustomerKeyCounts.objects.all().delete()
        CustomerKeyCounts.objects.bulk_create(
            [CustomerKeyCounts(customer_id=row["customer_id"], **{name: row[name] for name in COUNT_FIELDS})
             for row in rows])
        refresh.refreshed_at, refresh.as_of = now, today
        refresh.keys = sum(row["total"] for row in rows)
        refresh.took_ms = round(1000 * (time.perf_counter() - started))
        refresh.save()
    return refresh
