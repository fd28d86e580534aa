import django_filters
from django import forms

from identity.models import ScimToken


class ScimTokenFilterSet(django_filters.FilterSet):
    active = django_filters.BooleanFilter(
        field_name="revoked_at", lookup_expr="isnull", label="Status",
        widget=forms.Select(choices=[("", "Active and revoked"), ("true", "Active"), ("false", "Revoked")]),
    )

    class Meta:
        model = ScimToken
        fields = ["active"]
