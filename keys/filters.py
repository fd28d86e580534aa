import datetime

import django_filters
from django import forms
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from core import roles
from core.widgets import LongSelect
from keys.choices import (
    OPEN_RELEASE_STATUSES,
    OPEN_REVOCATION_STATUSES,
    Environment,
    ExceptionKind,
    ExceptionStatus,
    ExposureSource,
    IssuingSystemKind,
    KeyStatus,
    ReleaseStatus,
    RevocationRequestStatus,
    RiskTier,
    TriageStatus,
)
from keys.models import (
    ApiKey,
    Customer,
    Exposure,
    IntegrationToken,
    IssuingSystem,
    KeyException,
    KeyRelease,
    RevocationRequest,
    Workflow,
)
from keys.services.key_exceptions import overdue_q
from keys.services.tokens import customer_scope_q, request_token, workflow_scope_q

REVIEW_HORIZON_DAYS = 30
# A workflow select offers at most this many at once: beyond it, the chosen customer's workflows only.
WORKFLOW_CHOICES_SHOWN = 100
# The choice that stands for every status still waiting for someone (releases, revocations).
OPEN = "open"


def visible_customers(request):
    """Offer only the customers whose keys the user may see, so the filter leaks no names."""
    if request is None:
        return Customer.objects.none()
    token = request_token(request)
    if token is not None:
        return Customer.objects.filter(customer_scope_q(token))
    if roles.reads_everything(request.user):
        return Customer.objects.all()
    # A semi-join on the few visible keys' customers, not a join over every key made distinct.
    return Customer.objects.filter(
        pk__in=Workflow.objects.filter(keys__in=ApiKey.objects.visible_ids(request.user)).values("customer_id"))


def customer_choices(request):
    """The customers a filter offers: the visible ones, read with the name alone (a thousand of them a page)."""
    return visible_customers(request).only("pk", "name")


def visible_workflows(request):
    if request is None:
        return Workflow.objects.none()
    workflows = Workflow.objects.select_related("customer")
    token = request_token(request)
    if token is not None:
        return workflows.filter(workflow_scope_q(token))
    if roles.reads_everything(request.user):
        return workflows
    return workflows.filter(
        pk__in=ApiKey.objects.filter(pk__in=ApiKey.objects.visible_ids(request.user)).values("workflow_id"))


class ApiKeyFilterSet(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label="Search", widget=forms.TextInput(
        attrs={"placeholder": "Label or prefix", "type": "search"}
    ))
    status = django_filters.ChoiceFilter(choices=KeyStatus.choices, empty_label="Any status")
    customer = django_filters.ModelChoiceFilter(
        field_name="workflow__customer", label="Customer", queryset=customer_choices, empty_label="Any customer",
        widget=LongSelect,
    )
    workflow = django_filters.ModelChoiceFilter(queryset=visible_workflows, empty_label="Any workflow", widget=LongSelect)
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

    @property
    def form(self):
        form = super().form
        if not getattr(self, "workflow_choices_narrowed", False):
            self.workflow_choices_narrowed = True
            narrow_workflow_choices(form, self.request)
        return form

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


def narrow_workflow_choices(form, request) -> None:
    """Offer in the form's workflow select the workflows a person can choose from, not thousands.

    Any visible workflow is still accepted (a saved filter or a link may name one); what the select lists is the
    chosen customer's workflows, or every visible workflow while there are at most WORKFLOW_CHOICES_SHOWN, or else
    none until a customer is chosen (the page says so; with htmx the list follows the customer select).
    """
    field = form.fields["workflow"]
    customer = form["customer"].value() if "customer" in form.fields else None
    workflows = field.queryset
    if customer not in (None, "") and str(customer).isdigit():
        workflows = workflows.filter(customer_id=int(customer))
        field.help_text = ""
    # Unordered, so that finding "more than shown" among thousands sorts none of them.
    shown = list(workflows.order_by()[: WORKFLOW_CHOICES_SHOWN + 1])
    shown.sort(key=lambda w: (w.customer.name, w.name, w.pk))
    if len(shown) > WORKFLOW_CHOICES_SHOWN:
        shown = []
        field.help_text = "Choose a customer to list its workflows."
    selected = str(form["workflow"].value() or "")
    if selected.isdigit() and int(selected) not in {w.pk for w in shown}:
        shown += list(field.queryset.filter(pk=int(selected)))  # the filter in force stays visible
    field.widget.choices = [("", field.empty_label), *((w.pk, field.label_from_instance(w)) for w in shown)]
    if request is not None:
        field.widget.attrs.update({
            "hx-get": reverse("keys:workflow-options"), "hx-trigger": "change from:#id_customer",
            "hx-include": "#id_customer, this", "hx-target": "closest .filter-field", "hx-swap": "outerHTML",
        })


def key_search_q(value: str, prefix: str = "key__") -> Q:
    return Q(**{f"{prefix}label__icontains": value}) | Q(**{f"{prefix}prefix__icontains": value})


class KeyExceptionFilterSet(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=ExceptionStatus.choices, empty_label="Any status")
    kind = django_filters.ChoiceFilter(choices=ExceptionKind.choices, empty_label="Any kind")
    customer = django_filters.ModelChoiceFilter(
        field_name="key__workflow__customer", label="Customer", queryset=customer_choices, empty_label="Any customer",
        widget=LongSelect,
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


class KeyReleaseFilterSet(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label="Key", widget=forms.TextInput(
        attrs={"placeholder": "Label or prefix", "type": "search"}
    ))
    state = django_filters.ChoiceFilter(label="Status", method="filter_state", empty_label="Any status",
                                        choices=[(OPEN, "Open (watching or held)"), *ReleaseStatus.choices])
    customer = django_filters.ModelChoiceFilter(
        field_name="key__workflow__customer", label="Customer", queryset=customer_choices, empty_label="Any customer",
        widget=LongSelect,
    )

    class Meta:
        model = KeyRelease
        fields = ["q", "state", "customer"]

    def search(self, queryset, name, value):
        value = value.strip()
        return queryset.filter(key_search_q(value)) if value else queryset

    def filter_state(self, queryset, name, value):
        if value == OPEN:
            return queryset.filter(status__in=OPEN_RELEASE_STATUSES)
        return queryset.filter(status=value) if value else queryset


class RevocationRequestFilterSet(django_filters.FilterSet):
    state = django_filters.ChoiceFilter(
        label="Status", method="filter_state", empty_label="Any status",
        choices=[(OPEN, "Open (not yet confirmed at the issuer)"), *RevocationRequestStatus.choices],
    )
    issuing_system = django_filters.ModelChoiceFilter(
        queryset=IssuingSystem.objects.all(), empty_label="Any issuing system"
    )
    kind = django_filters.ChoiceFilter(
        field_name="issuing_system__kind", label="Kind", choices=IssuingSystemKind.choices, empty_label="Any kind"
    )
    emergency = django_filters.BooleanFilter(
        widget=forms.Select(choices=[("", "Any urgency"), ("true", "Emergency only"), ("false", "Routine only")])
    )

    class Meta:
        model = RevocationRequest
        fields = ["state", "issuing_system", "kind", "emergency"]

    def __init__(self, data=None, *args, **kwargs):
        # Open requests unless asked otherwise: that is the work waiting for someone.
        if data is None or "state" not in data:
            data = data.copy() if data is not None else {}
            data["state"] = OPEN
        super().__init__(data, *args, **kwargs)

    def filter_state(self, queryset, name, value):
        if value == OPEN:
            return queryset.filter(status__in=OPEN_REVOCATION_STATUSES)
        return queryset.filter(status=value) if value else queryset


class ExposureFilterSet(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label="Search", widget=forms.TextInput(
        attrs={"placeholder": "Location, notes or key", "type": "search"}
    ))
    matched = django_filters.BooleanFilter(
        field_name="key", lookup_expr="isnull", exclude=True, label="Match",
        widget=forms.Select(choices=[("", "Matched or not"), ("true", "Matches a key"), ("false", "No matching key")]),
    )
    source = django_filters.ChoiceFilter(choices=ExposureSource.choices, empty_label="Any source")
    triage = django_filters.ChoiceFilter(field_name="triage__status", choices=TriageStatus.choices,
                                         empty_label="Any triage", label="Triage")

    class Meta:
        model = Exposure
        fields = ["q", "matched", "source", "triage"]

    def search(self, queryset, name, value):
        value = value.strip()
        if not value:
            return queryset
        return queryset.filter(Q(location__icontains=value) | Q(notes__icontains=value) | key_search_q(value))


class IntegrationTokenFilterSet(django_filters.FilterSet):
    active = django_filters.BooleanFilter(
        field_name="revoked_at", lookup_expr="isnull", label="Status",
        widget=forms.Select(choices=[("", "Active and revoked"), ("true", "Active"), ("false", "Revoked")]),
    )
    issuing_system = django_filters.ModelChoiceFilter(
        queryset=IssuingSystem.objects.all(), empty_label="Any issuing system"
    )
    customer = django_filters.ModelChoiceFilter(queryset=Customer.objects.only("pk", "name"), empty_label="Any customer",
                                                widget=LongSelect)

    class Meta:
        model = IntegrationToken
        fields = ["active", "issuing_system", "customer"]


class ScopeKeyFilterSet(ApiKeyFilterSet):
    """The key list's filters as a campaign's scope reads them: any customer and workflow may be named (the
    campaign covers keys of every owner; only compliance and admins create campaigns)."""

    customer = django_filters.ModelChoiceFilter(field_name="workflow__customer", queryset=Customer.objects.all())
    workflow = django_filters.ModelChoiceFilter(queryset=Workflow.objects.all())


def filter_keys(keys, query_string: str):
    """``keys`` narrowed by a key-list filter written as its query string; ``(keys, errors)``, the errors a
    message per filter that does not read (an unknown customer, a risk tier that does not exist)."""
    from django.http import QueryDict

    data = QueryDict(query_string or "")
    known = {k: v for k, v in data.lists() if k in ScopeKeyFilterSet.base_filters}
    unknown = sorted(set(data) - set(known) - {"page", "cursor", "sort", "per_page"})
    params = QueryDict(mutable=True)
    for name, values in known.items():
        params.setlist(name, values)
    filterset = ScopeKeyFilterSet(data=params, queryset=keys)
    errors = [f"{name}: {' '.join(messages)}" for name, messages in filterset.errors.items()]
    errors += [f"{name}: not a filter of the key list." for name in unknown]
    return (filterset.qs if not errors else keys.none()), errors
