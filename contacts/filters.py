import django_filters
from django.db.models import Q

from contacts.models import CustomerContact
from core.widgets import LongSelect
from keys.models import Customer


class CustomerContactFilterSet(django_filters.FilterSet):
    customer = django_filters.ModelChoiceFilter(queryset=Customer.objects.only("pk", "name").order_by("name"),
                                                empty_label="Any customer",
                                                widget=LongSelect)
    q = django_filters.CharFilter(method="search", label="Name or email", max_length=200)
    active = django_filters.ChoiceFilter(
        method="filter_active", label="Status", empty_label="Active and deactivated",
        choices=[("yes", "Active"), ("no", "Deactivated")],
    )

    class Meta:
        model = CustomerContact
        fields = ["customer", "q", "active"]

    def search(self, queryset, name, value):
        value = value.strip()
        if not value:
            return queryset
        return queryset.filter(Q(name__icontains=value) | Q(email__icontains=value))

    def filter_active(self, queryset, name, value):
        return queryset.filter(is_active=value == "yes") if value else queryset
