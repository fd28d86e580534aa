"""Read-only REST endpoints for key exceptions, under the key visibility rules (ApiKey.objects.visible_to).

Requests and decisions are made in the portal, where keys.services.key_exceptions enforces segregation of duties.
"""

import django_filters
from django.utils import timezone
from rest_framework import serializers, viewsets

from keys.choices import CompensatingControl, ExceptionKind, ExceptionStatus
from keys.models import KeyException
from keys.services.key_exceptions import overdue_q, visible_exceptions


class KeyExceptionSerializer(serializers.ModelSerializer):
    key_label = serializers.CharField(source="key.label", read_only=True)
    key_prefix = serializers.CharField(source="key.prefix", read_only=True)
    customer = serializers.IntegerField(source="key.workflow.customer_id", read_only=True)
    customer_name = serializers.CharField(source="key.workflow.customer.name", read_only=True)
    owner = serializers.CharField(source="key.owner.username", read_only=True)
    kind = serializers.ChoiceField(choices=ExceptionKind.choices, read_only=True)
    status = serializers.ChoiceField(choices=ExceptionStatus.choices, read_only=True)
    compensating_controls = serializers.ListField(
        child=serializers.ChoiceField(choices=CompensatingControl.choices), read_only=True
    )
    due_on = serializers.DateField(read_only=True, allow_null=True)
    requested_by = serializers.CharField(source="requested_by.username", read_only=True)
    decided_by = serializers.CharField(source="decided_by.username", read_only=True, allow_null=True)

    class Meta:
        model = KeyException
        fields = [
            "id", "key", "key_label", "key_prefix", "customer", "customer_name", "owner", "kind", "status",
            "business_justification", "blast_radius", "replaceability", "compensating_controls", "other_controls",
            "migration_target", "migration_plan", "end_date", "risk_acceptance", "review_date", "due_on",
            "lapsed_on", "requested_by", "requested_at", "decided_by", "decided_at", "decision_reason",
        ]
        read_only_fields = fields


class KeyExceptionApiFilterSet(django_filters.rest_framework.FilterSet):
    status = django_filters.rest_framework.ChoiceFilter(choices=ExceptionStatus.choices)
    kind = django_filters.rest_framework.ChoiceFilter(choices=ExceptionKind.choices)
    customer = django_filters.rest_framework.NumberFilter(field_name="key__workflow__customer")
    overdue = django_filters.rest_framework.BooleanFilter(method="filter_overdue")

    class Meta:
        model = KeyException
        fields = ["status", "kind", "key", "customer"]

    def filter_overdue(self, queryset, name, value):
        if value is None:
            return queryset
        overdue = overdue_q(timezone.localdate())
        return queryset.filter(overdue) if value else queryset.exclude(overdue)


class KeyExceptionViewSet(viewsets.ReadOnlyModelViewSet):
    """Exceptions of the keys the caller may see: compliance and admins all, owners their keys'."""

    serializer_class = KeyExceptionSerializer
    filterset_class = KeyExceptionApiFilterSet

    def get_queryset(self):
        return (
            visible_exceptions(self.request.user)
            .select_related("key__workflow__customer", "key__owner", "requested_by", "decided_by")
            .order_by("-requested_at", "-pk")
        )
