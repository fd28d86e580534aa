import datetime

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Q
from django.shortcuts import render
from django.utils import timezone

from keys.choices import LIVE_KEY_STATUSES, KeyStatus
from keys.models import ApiKey

from . import roles

ATTENTION_HORIZON_DAYS = 30
ATTENTION_LIST_SIZE = 10


def _attention(keys, condition: Q, order: str, date_field: str = "") -> dict:
    """A short list of live keys needing attention, each with the date that matters, and the total."""
    matching = keys.filter(condition)
    total = matching.count()
    shown = list(matching.select_related("workflow__customer", "owner").order_by(order, "pk")[:ATTENTION_LIST_SIZE])
    return {
        "count": total,
        "more": total - len(shown),
        "rows": [{"key": key, "date": getattr(key, date_field) if date_field else None} for key in shown],
    }


def _customer_rows(keys) -> list[dict]:
    horizon = timezone.localdate() + datetime.timedelta(days=ATTENTION_HORIZON_DAYS)
    live = Q(status__in=LIVE_KEY_STATUSES)
    return list(
        keys.order_by()
        .values("workflow__customer__id", "workflow__customer__name", "workflow__customer__contract_status")
        .annotate(
            total=Count("pk"),
            pending=Count("pk", filter=Q(status=KeyStatus.PENDING)),
            active=Count("pk", filter=Q(status=KeyStatus.ACTIVE)),
            suspended=Count("pk", filter=Q(status=KeyStatus.SUSPENDED)),
            revoked=Count("pk", filter=Q(status=KeyStatus.REVOKED)),
            expired=Count("pk", filter=Q(status=KeyStatus.EXPIRED)),
            due_for_review=Count("pk", filter=live & Q(next_review_on__lte=horizon)),
            flagged=Count("pk", filter=live & (Q(orphaned=True) | Q(unattested=True) | Q(rotation_required=True))),
        )
        .order_by("workflow__customer__name")
    )


@login_required
def dashboard(request):
    keys = ApiKey.objects.visible_to(request.user)
    live_keys = keys.filter(status__in=LIVE_KEY_STATUSES)
    today = timezone.localdate()
    horizon = today + datetime.timedelta(days=ATTENTION_HORIZON_DAYS)

    counts = dict(keys.order_by().values_list("status").annotate(n=Count("pk")))
    status_counts = [
        {"status": status.value, "label": status.label, "count": counts.get(status.value, 0)} for status in KeyStatus
    ]
    stale_cutoff = timezone.now() - datetime.timedelta(days=settings.KEY_STALE_AFTER_DAYS)
    context = {
        "sees_everything": roles.sees_everything(request.user),
        "total": sum(counts.values()),
        "status_counts": status_counts,
        "horizon_days": ATTENTION_HORIZON_DAYS,
        "stale_days": settings.KEY_STALE_AFTER_DAYS,
        "due_for_review": _attention(live_keys, Q(next_review_on__lte=horizon), "next_review_on", "next_review_on"),
        "expiring": _attention(live_keys, Q(expires_on__lte=horizon), "expires_on", "expires_on"),
        "rotation_required": _attention(live_keys, Q(rotation_required=True), "status_changed_at"),
        "flag_counts": live_keys.aggregate(
            orphaned=Count("pk", filter=Q(orphaned=True)),
            unattested=Count("pk", filter=Q(unattested=True)),
            unused=Count("pk", filter=Q(last_used_at__isnull=True) | Q(last_used_at__lt=stale_cutoff)),
        ),
        "customer_rows": _customer_rows(keys) if roles.sees_everything(request.user) else [],
    }
    return render(request, "portal/dashboard.html", context)
