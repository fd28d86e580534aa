import django_filters
from django import forms

from dashboard.models import CustomerKeyCounts
from keys.choices import ContractStatus


class CustomerKeyCountsFilterSet(django_filters.FilterSet):
    q = django_filters.CharFilter(field_name="customer__name", lookup_expr="icontains", label="Customer",
                                  widget=forms.TextInput(attrs={"placeholder": "Name", "type": "search"}))
    contract = django_filters.ChoiceFilter(field_name="customer__contract_status", label="Contract",
                                           choices=ContractStatus.choices, empty_label="Any contract")
    attention = django_filters.BooleanFilter(
        method="filter_attention", label="Attention",
        widget=forms.Select(choices=[("", "Any customer"), ("true", "Flagged keys or reviews due"),
                                     ("false", "Nothing flagged or due")]),
    )

    class Meta:
        model = CustomerKeyCounts
        fields = ["q", "contract", "attention"]

    def filter_attention(self, queryset, name, value):
        if value is None:
            return queryset
        nothing = {"flagged": 0, "due_for_review": 0}
        return queryset.exclude(**nothing) if value else queryset.filter(**nothing)
