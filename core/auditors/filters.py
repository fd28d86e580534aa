import django_filters
from django.db.models import F, Q
from django.utils import timezone

from core.models import AuditorGrant, AuditorGrantState

OPEN = "open"


def state_q(state: str, now) -> Q:
    """The grants in ``state`` at ``now`` (``AuditorGrant.state_at`` as a query)."""
    not_ended = Q(ended_at__isnull=True)
    return {
        OPEN: not_ended & Q(ends_at__gt=now),
        AuditorGrantState.SCHEDULED: not_ended & Q(starts_at__gt=now, ends_at__gt=now),
        AuditorGrantState.CURRENT: not_ended & Q(starts_at__lte=now, ends_at__gt=now),
        AuditorGrantState.ENDED: Q(ended_at__isnull=False, ended_at__lt=F("ends_at")),
        AuditorGrantState.EXPIRED: (not_ended & Q(ends_at__lte=now)) | Q(ended_at__isnull=False,
                                                                         ended_at__gte=F("ends_at")),
    }[state]


class AuditorGrantFilterSet(django_filters.FilterSet):
    state = django_filters.ChoiceFilter(
        method="filter_state", label="Access", empty_label="Any",
        choices=[(OPEN, "Scheduled or current"), *AuditorGrantState.choices],
    )
    q = django_filters.CharFilter(method="search", label="Auditor or engagement", max_length=200)

    class Meta:
        model = AuditorGrant
        fields = ["state", "q"]

    def filter_state(self, queryset, name, value):
        return queryset.filter(state_q(value, timezone.now())) if value else queryset

    def search(self, queryset, name, value):
        value = value.strip()
        if not value:
            return queryset
        return queryset.filter(Q(auditor__username__icontains=value) | Q(auditor__first_name__icontains=value)
                               | Q(auditor__email__icontains=value) | Q(engagement__icontains=value))
