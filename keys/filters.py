import datetime

import django_filters
from django import forms
from django.db.models import Q
from django.utils import timezone

from portal import roles

from .choices import Environment, ExceptionKind, ExceptionStatus, KeyStatus, RiskTier
from .exceptions import overdue_q
from .models import ApiKey, Customer, KeyException, Workflow
from .tokens import customer_scope_q, request_token, workflow_scope_q

REVIEW_HORIZON_DAYS = 30


def visible_customers(request):
    """Offer only the customers whose keys the user may see, so the filter leaks no names."""
    if request is None:
        return Customer.objects.none()
    token = request_token(request)
    if token is not None:
        return Customer.objects.filter(customer_scope_q(token))
    if roles.sees_everything(request.user):
        return Customer.objects.all()
    return Customer.objects.filter(workflows__keys__in=ApiKey.objects.visible_to(request.user)).distinct()


def visible_workflows(request):
    if request is None:
        return Workflow.objects.none()
    workflows = Workflow.objects.select_related("customer")
    token = request_token(request)
    if token is not None:
        return workflows.filter(workflow_scope_q(token))
    if roles.sees_everything(request.user):
        return workflows
    return workflows.filter(keys__in=ApiKey.objects.visible_to(request.user)).distinct()


class ApiKeyFilterSet(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label="Search", widget=forms.TextInput(
        attrs={"placeholder": "Label or prefix", "type": "search"}
    ))
    status = django_filters.ChoiceFilter(choices=KeyStatus.choices, empty_label="Any status")
    customer = django_filters.ModelChoiceFilter(
        field_name="workflow__customer", label="Customer", queryset=visible_customers, empty_label="Any customer"
    )
    workflow = django_filters.ModelChoiceFilter(queryset=visible_workflows, empty_label="Any workflow")
    environment = django_filters.ChoiceFilter(
        field_name="workflow__environment", label="Environment", choices=Environment.choices,
        empty_label="Any environment",
    )
    owner = django_filters.CharFilter(
        field_name="owner__username", label="Owner", widget=forms.TextInput(attrs={"placeholder": "Username"})
    )
    risk_tier = django_filters.ChoiceFilter(choices=RiskTier.choices, empty_label="Any risk tier")
    due_for_review = django_filters.BooleanFilter(
        method="filter_due_for_review",
        label="Review due",
        widget=forms.Select(choices=[("", "Any review date"), ("true", "Review due"), ("false", "Review not due")]),
    )
    unused_days = django_filters.NumberFilter(
        method="filter_unused_days", label="Unused for days", min_value=0, max_value=36500
    )

    class Meta:
        model = ApiKey
        fields = ["q", "status", "customer", "workflow", "environment", "owner", "risk_tier"]

    def search(self, queryset, name, value):
        value = value.strip()
        if not value:
            return queryset
        return queryset.filter(Q(label__icontains=value) | Q(prefix__icontains=value))

    def filter_due_for_review(self, queryset, name, value):
        if value is None:
            return queryset
        horizon = timezone.localdate() + datetime.timedelta(days=REVIEW_HORIZON_DAYS)
        due = Q(next_review_on__lte=horizon)
        return queryset.filter(due) if value else queryset.exclude(due)

    def filter_unused_days(self, queryset, name, value):
        if value is None:
            return queryset
        cutoff = timezone.now() - datetime.timedelta(days=int(value))
        return queryset.filter(Q(last_used_at__isnull=True) | Q(last_used_at__lt=cutoff))


class KeyExceptionFilterSet(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=ExceptionStatus.choices, empty_label="Any status")
    kind = django_filters.ChoiceFilter(choices=ExceptionKind.choices, empty_label="Any kind")
    customer = django_filters.ModelChoiceFilter(
        field_name="key__workflow__customer", label="Customer", queryset=visible_customers, empty_label="Any customer"
    )
    overdue = django_filters.BooleanFilter(
        method="filter_overdue", label="Due date",
        widget=forms.Select(choices=[("", "Any due date"), ("true", "Past due"), ("false", "Not past due")]),
    )

    class Meta:
        model = KeyException
        fields = ["status", "kind", "customer"]

    def filter_overdue(self, queryset, name, value):
        if value is None:
            return queryset
        overdue = overdue_q(timezone.localdate())
        return queryset.filter(overdue) if value else queryset.exclude(overdue)
