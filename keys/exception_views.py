"""The exception pages: list, request, detail with history, and decisions. keys.exceptions decides."""

import django_filters
import django_tables2 as tables
from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_POST
from django_filters.views import FilterView
from django_tables2 import SingleTableMixin

from portal import roles
from portal.actions import Action, action_or_404, offered_panels, refusal

from . import exceptions
from .choices import EXCEPTION_TRANSITIONS, ExceptionKind, ExceptionStatus
from .exception_forms import ApproveExceptionForm, ExceptionRequestForm, ReasonForm, RenewExceptionForm
from .filters import visible_customers
from .forms import LifecycleForm
from .models import KeyException
from .tables import badge
from .views import visible_keys


def overdue_q(today) -> Q:
    """Approved or expired exceptions whose end or review date has passed."""
    return Q(status__in=[ExceptionStatus.APPROVED, ExceptionStatus.EXPIRED]) & (
        Q(kind=ExceptionKind.TRANSITIONAL, end_date__lt=today) | Q(kind=ExceptionKind.PERMANENT, review_date__lt=today)
    )


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


class KeyExceptionTable(tables.Table):
    id = tables.Column(verbose_name="#", linkify=("keys:exception", {"pk": tables.A("pk")}))
    key = tables.Column(accessor="key__label", verbose_name="Key", linkify=lambda record: record.key.get_absolute_url())
    customer = tables.Column(accessor="key__workflow__customer__name", verbose_name="Customer")
    kind = tables.Column()
    status = tables.Column()
    due = tables.DateColumn(accessor="due_on", verbose_name="Due", short=True, orderable=False)
    requested_by = tables.Column(accessor="requested_by__username", verbose_name="Requested by")
    requested_at = tables.DateColumn(verbose_name="Requested", short=True)
    decided_by = tables.Column(accessor="decided_by__username", verbose_name="Decided by", default="—")

    class Meta:
        model = KeyException
        fields = ("id", "key", "customer", "kind", "status", "due", "requested_by", "requested_at", "decided_by")
        attrs = {"class": "data-table"}
        empty_text = "No exceptions match these filters."

    def render_kind(self, record):
        return record.get_kind_display().split(" (")[0]

    def render_status(self, record):
        text = badge("exception", record.status, record.get_status_display())
        if record.lapsed_on:
            text += " " + badge("flag", "lapsed", "Lapsed")
        return text


class ExceptionListView(LoginRequiredMixin, SingleTableMixin, FilterView):
    table_class = KeyExceptionTable
    filterset_class = KeyExceptionFilterSet
    template_name = "keys/exception_list.html"
    table_pagination = {"per_page": 25}

    def get_queryset(self):
        return exceptions.visible_exceptions(self.request.user).select_related(
            "key__workflow__customer", "requested_by", "decided_by"
        )

    def render_to_response(self, context, **response_kwargs):
        response = super().render_to_response(context, **response_kwargs)
        patch_vary_headers(response, ["HX-Request"])
        return response


def _legal(action: str, exception: KeyException) -> bool:
    return exception.status in EXCEPTION_TRANSITIONS[action][0]


# The steps of an exception's page, offered(user, exception); perform(exception, actor, data) calls keys.exceptions.
EXCEPTION_ACTIONS: dict[str, Action] = {
    action.slug: action
    for action in (
        Action(
            "approve", "Approve", ApproveExceptionForm, button_class="button-primary", done="Approved",
            offered=lambda user, exc: _legal("approve", exc) and exceptions.decision_refusal(user, exc) is None,
            perform=lambda exc, actor, data: exceptions.approve_exception(exc, actor=actor, reason=data["reason"]),
        ),
        Action(
            "reject", "Reject", ReasonForm, button_class="button-danger", done="Rejected",
            offered=lambda user, exc: _legal("reject", exc) and exceptions.decision_refusal(user, exc) is None,
            perform=lambda exc, actor, data: exceptions.reject_exception(exc, actor=actor, reason=data["reason"]),
        ),
        Action(
            "renew", "Renew", RenewExceptionForm, done="Renewed",
            offered=lambda user, exc: exc.status == ExceptionStatus.APPROVED and exc.kind == ExceptionKind.PERMANENT
            and exceptions.may_renew(user, exc),
            perform=lambda exc, actor, data: exceptions.renew_exception(
                exc, actor=actor, review_date=data["review_date"], reason=data["reason"]
            ),
        ),
        Action(
            "withdraw", "Withdraw", ReasonForm, button_class="button-warning", done="Withdrawn",
            offered=lambda user, exc: _legal("withdraw", exc) and exceptions.may_withdraw(user, exc),
            perform=lambda exc, actor, data: exceptions.withdraw_exception(exc, actor=actor, reason=data["reason"]),
        ),
    )
}


def _visible_exception(user, pk) -> KeyException:
    return get_object_or_404(
        exceptions.visible_exceptions(user).select_related(
            "key__workflow__customer", "key__owner", "key__steward", "requested_by", "decided_by"
        ),
        pk=pk,
    )


def _render_detail(request, exception: KeyException, failed: tuple[str, LifecycleForm] | None = None, status=200):
    user = request.user
    panels = offered_panels(EXCEPTION_ACTIONS.values(), user, exception, failed=failed)
    decision_note = ""
    if exception.status == ExceptionStatus.REQUESTED and roles.is_compliance(user):
        decision_note = exceptions.decision_refusal(user, exception) or ""
    context = {
        "exception": exception,
        "key": exception.key,
        "panels": panels,
        **refusal(EXCEPTION_ACTIONS, failed, panels),
        "decision_note": decision_note,
        "history": exception.history.select_related("history_user").order_by("-history_date", "-history_id"),
        "items": exception.attestation_items.select_related("campaign", "decided_by").order_by("-pk"),
        "overdue": exception.due_on is not None and exception.due_on < timezone.localdate()
        and exception.status in (ExceptionStatus.APPROVED, ExceptionStatus.EXPIRED),
    }
    return render(request, "keys/exception_detail.html", context, status=status)


@login_required
def exception_detail(request, pk):
    return _render_detail(request, _visible_exception(request.user, pk))


@login_required
@require_POST
def exception_action(request, pk, action):
    spec = action_or_404(EXCEPTION_ACTIONS, action)
    exception = _visible_exception(request.user, pk)
    form, _ = spec.submit(request.POST, exception, request.user)
    if form.is_valid():
        messages.success(request, f"{spec.done}: the exception for {exception.key.label}.")
        return redirect("keys:exception", pk=exception.pk)
    return _render_detail(request, _visible_exception(request.user, pk), failed=(spec.slug, form), status=400)


@login_required
def request_exception_view(request, key_pk):
    key = get_object_or_404(visible_keys(request.user), pk=key_pk)
    if not exceptions.may_request(request.user, key):
        raise PermissionDenied("Only an admin or the key's owner or steward can request an exception.")
    form = ExceptionRequestForm(request.POST or None)
    if request.method == "POST":
        exception = form.call_service(
            lambda data: exceptions.request_exception(key, actor=request.user, **form.service_kwargs()))
        if form.is_valid():
            messages.success(request, f"Requested a {exception.get_kind_display().lower()} exception for "
                                      f"{key.label}; compliance decides it.")
            return redirect("keys:exception", pk=exception.pk)
        return render(request, "keys/exception_form.html", {"form": form, "key": key}, status=400)
    return render(request, "keys/exception_form.html", {"form": form, "key": key})
