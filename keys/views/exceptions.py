"""The exception pages: list, request, detail with history, and decisions. keys.services.key_exceptions decides."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from core import roles
from core.actions import Action, action_or_404, offered_panels, refusal
from core.lists import ObjectListView
from keys.choices import EXCEPTION_TRANSITIONS, ExceptionKind, ExceptionStatus
from keys.filters import KeyExceptionFilterSet
from keys.forms.exceptions import ApproveExceptionForm, ExceptionRequestForm, ReasonForm, RenewExceptionForm
from keys.forms.keys import LifecycleForm
from keys.models import KeyException
from keys.services import key_exceptions as exceptions
from keys.tables import KeyExceptionTable
from keys.views.keys import visible_keys


class ExceptionListView(ObjectListView):
    table_class = KeyExceptionTable
    filterset_class = KeyExceptionFilterSet
    template_name = "keys/exception_list.html"
    table_id = "exception-table"

    def visible_to(self, user):
        return exceptions.visible_exceptions(user).select_related("key__workflow__customer", "requested_by", "decided_by")


def _legal(action: str, exception: KeyException) -> bool:
    return exception.status in EXCEPTION_TRANSITIONS[action][0]


# The steps of an exception's page, offered(user, exception); perform(exception, actor, data) calls keys.services.key_exceptions.
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
