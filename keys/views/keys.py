"""The key pages of the portal. Every state change goes through keys.services.lifecycle."""

import datetime
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import formats, timezone
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from core import roles
from core.actions import Action, action_or_404, always, offered_panels, refusal
from core.lists import ObjectListView
from keys.choices import KEY_TRANSITIONS, LifecycleAction
from keys.filters import ApiKeyFilterSet
from keys.forms.keys import (
    ApproveForm,
    ChangeOwnerForm,
    LifecycleForm,
    OptionalReasonForm,
    ReasonForm,
    RegisterKeyForm,
    RevokeForm,
    RotateForm,
)
from keys.models import ApiKey, KeyException, LifecycleEvent, SavedKeyFilter
from keys.services import exposures, lifecycle, releases, saved_filters
from keys.services import key_exceptions as exceptions
from keys.tables import ApiKeyTable
from keys.views.releases import RELEASE_ACTIONS, ReleaseForm

# A history record and the lifecycle event written with it share actor and reason, seconds apart.
EVENT_MATCH_WINDOW = datetime.timedelta(seconds=5)
# Shown by the timeline entry itself; repeating them as changed fields is noise.
TIMELINE_SILENT_FIELDS = ["status_changed_at"]


def visible_keys(user):
    return ApiKey.objects.visible_to(user).select_related(
        "workflow__customer", "issuing_system", "owner", "steward", "approved_by"
    )


class KeyListView(ObjectListView):
    queryset = ApiKey.objects.select_related("workflow__customer", "owner")
    table_class = ApiKeyTable
    filterset_class = ApiKeyFilterSet
    template_name = "keys/key_list.html"
    table_id = "key-table"
    refresh_in_place = True
    # With the link to review the listed keys in a campaign, which follows the filters as they change.
    partial_template_name = "keys/_key_table.html"

    def campaign_filter(self) -> str:
        """The list's filters as a campaign's key filter: the query string without paging, sorting or empties."""
        return saved_filters.filters_only(self.request.GET.urlencode())

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        current = self.campaign_filter()
        context["current_filter"] = current
        if roles.sees_everything(self.request.user):
            context["campaign_url"] = campaign_url(current)
        if not self.is_partial():
            context["may_report_exposures"] = exposures.may_report(self.request.user)
            context["saved_filters"] = [
                (saved, campaign_url(saved.query) if "campaign_url" in context else "")
                for saved in SavedKeyFilter.objects.filter(user=self.request.user)]
        return context


@login_required
def workflow_options_view(request):
    """The key list's workflow filter for the customer chosen in the filter bar (htmx swaps it in).

    When the workflow chosen before is not among the new choices, the filter bar is asked to refresh the table
    (the ``filter-choices-changed`` event), which then drops it."""
    others = request.GET.copy()
    chosen = others.pop("workflow", [""])[-1]
    form = ApiKeyFilterSet(data=others, queryset=ApiKey.objects.none(), request=request).form
    still_offered = chosen in {str(value) for value, _ in form.fields["workflow"].widget.choices}
    if still_offered:
        form = ApiKeyFilterSet(data=request.GET, queryset=ApiKey.objects.none(), request=request).form
    response = render(request, "portal/_filter_field.html", {"field": form["workflow"]})
    if chosen and not still_offered:
        response["HX-Trigger"] = "filter-choices-changed"
    return response


def campaign_url(query: str) -> str:
    """The new-campaign page with ``query`` (a key-list filter) as the campaign's key filter."""
    return reverse("attestations:campaign-create") + "?" + urlencode({"key_filter": query})


@login_required
@require_POST
def save_filter_view(request):
    """Save the key list's current filter under a name (the form sits under the list)."""
    try:
        saved = saved_filters.save_filter(request.user, name=request.POST.get("name", ""),
                                          query=request.POST.get("query", ""))
    except saved_filters.SavedFilterError as refused:
        for message in refused.messages:
            messages.error(request, f"The filter was not saved: {message}")
        query = saved_filters.filters_only(request.POST.get("query", ""))
        return redirect(reverse("keys:list") + (f"?{query}" if query else ""))
    messages.success(request, f"Saved the filter {saved.name}.")
    return redirect(saved.get_absolute_url())


@login_required
@require_POST
def delete_filter_view(request, pk):
    if not saved_filters.delete_filter(request.user, pk):
        raise Http404("No such saved filter.")
    messages.success(request, "Deleted the saved filter.")
    return redirect("keys:list")


def _offered_from(lifecycle_action: str, also: Callable[[ApiKey], bool] = always) -> Callable[[ApiKey], bool]:
    """Offered while the key's status allows the step (KEY_TRANSITIONS) and ``also`` holds."""
    allowed_from, _ = KEY_TRANSITIONS[lifecycle_action]
    return lambda key: key.status in allowed_from and also(key)


def _is_past_expiry(key: ApiKey) -> bool:
    return key.expires_on is not None and key.expires_on <= timezone.localdate()


# The lifecycle steps offered to admins on the key page; perform(key, actor, data) calls keys.services.lifecycle.
KEY_ACTIONS: dict[str, Action] = {
    action.slug: action
    for action in (
        Action(
            "approve", "Approve", ApproveForm, button_class="button-primary",
            offered=_offered_from(LifecycleAction.APPROVE),
            perform=lambda key, actor, data: lifecycle.approve_key(
                key, actor=actor, reference=data["reference"], reason=data["reason"]
            ),
        ),
        Action(
            "rotate", "Record rotation", RotateForm, offered=_offered_from(LifecycleAction.ROTATE),
            perform=lambda key, actor, data: lifecycle.rotate_key(
                key, actor=actor, secret=data["secret"] or None, fingerprint=data["fingerprint"] or None,
                prefix=data["prefix"] or None, reason=data["reason"],
            ),
        ),
        Action(
            "suspend", "Suspend", ReasonForm, button_class="button-warning",
            offered=_offered_from(LifecycleAction.SUSPEND),
            perform=lambda key, actor, data: lifecycle.suspend_key(key, actor=actor, reason=data["reason"]),
        ),
        Action(
            "reinstate", "Reinstate", ReasonForm, button_class="button-primary",
            offered=_offered_from(LifecycleAction.REINSTATE),
            perform=lambda key, actor, data: lifecycle.reinstate_key(key, actor=actor, reason=data["reason"]),
        ),
        Action(
            "change-owner", "Change owner", ChangeOwnerForm, offered=_offered_from(LifecycleAction.CHANGE_OWNER),
            perform=lambda key, actor, data: lifecycle.change_owner(
                key, actor=actor, new_owner=data["new_owner"], reason=data["reason"]
            ),
        ),
        Action(
            "expire", "Expire", OptionalReasonForm, button_class="button-danger",
            offered=_offered_from(LifecycleAction.EXPIRE, _is_past_expiry),
            perform=lambda key, actor, data: lifecycle.expire_key(key, actor=actor, reason=data["reason"]),
        ),
        Action(
            "release", "Release", ReleaseForm, button_class="button-warning",
            offered=_offered_from(
                LifecycleAction.RELEASE_GRACE,
                lambda key: not key.releases.filter(status__in=releases.OPEN_RELEASE_STATUSES).exists(),
            ),
            perform=lambda key, actor, data: releases.release_key(
                key, actor=actor, reason=data["reason"], context="key page",
                grace_days=0 if data.get("immediate") else data.get("grace_days"),
            ),
        ),
        Action(
            "revoke", "Revoke", RevokeForm, button_class="button-danger",
            offered=_offered_from(LifecycleAction.REVOKE),
            perform=lambda key, actor, data: lifecycle.revoke_key(
                key, actor=actor, reason_code=data["reason_code"], reason=data["reason"]
            ),
        ),
    )
}


@dataclass
class TimelineEntry:
    at: datetime.datetime
    title: str
    actor: object = None
    reason: str = ""
    transition: tuple[str, str] | None = None
    status: str = ""
    details: list[tuple[str, str]] = field(default_factory=list)
    changes: list[dict] = field(default_factory=list)
    source: str = ""


def _display_value(model_field, value, related: dict) -> str:
    if value is None or value == "":
        return "—"
    if model_field is None:
        return str(value)
    if model_field.is_relation:
        obj = related.get((model_field.related_model, value))
        return str(obj) if obj is not None else f"#{value}"
    if model_field.choices:
        return str(dict(model_field.flatchoices).get(value, value))
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime.datetime):
        return formats.date_format(timezone.localtime(value), "DATETIME_FORMAT")
    if isinstance(value, datetime.date):
        return formats.date_format(value, "DATE_FORMAT")
    if isinstance(value, list):
        return ", ".join(str(item) for item in value) or "—"
    return str(value)


def _history_changes(records) -> dict[int, list]:
    """Each history record's changed fields against the record before it, with readable values."""
    deltas = {}
    for older, newer in zip(records, records[1:], strict=False):
        delta = newer.diff_against(older, excluded_fields=TIMELINE_SILENT_FIELDS, foreign_keys_are_objs=False)
        deltas[newer.history_id] = delta.changes
    wanted: dict[type, set] = {}
    for changes in deltas.values():
        for change in changes:
            model_field = ApiKey._meta.get_field(change.field)
            if model_field.is_relation:
                wanted.setdefault(model_field.related_model, set()).update(
                    v for v in (change.old, change.new) if v is not None
                )
    related = {
        (model, pk): obj for model, pks in wanted.items() for pk, obj in model._default_manager.in_bulk(pks).items()
    }
    readable = {}
    for history_id, changes in deltas.items():
        rows = []
        for change in changes:
            model_field = ApiKey._meta.get_field(change.field)
            rows.append({
                "field": model_field.verbose_name,
                "old": _display_value(model_field, change.old, related),
                "new": _display_value(model_field, change.new, related),
            })
        readable[history_id] = rows
    return readable


def _event_entry(event: LifecycleEvent) -> TimelineEntry:
    transition = None
    if event.from_status and event.to_status and event.from_status != event.to_status:
        transition = (event.get_from_status_display(), event.get_to_status_display())
    return TimelineEntry(
        at=event.at,
        title=event.get_action_display(),
        actor=event.actor,
        reason=event.reason,
        transition=transition,
        status="" if transition else event.get_to_status_display(),
        details=[(name.replace("_", " "), str(value)) for name, value in sorted(event.details.items())],
        source="Lifecycle event",
    )


def key_timeline(key: ApiKey) -> list[TimelineEntry]:
    """Lifecycle events and history records of the key, newest first.

    Every lifecycle step writes both; a record and its event are shown as one entry carrying the
    event's action and the record's changed fields. Records without an event (admin edits) stand alone.
    """
    events = list(key.events.select_related("actor").order_by("at", "pk"))
    records = list(key.history.select_related("history_user").order_by("history_date", "history_id"))
    changes = _history_changes(records)
    entries = []
    unmatched = list(events)
    for record in records:
        reason = record.history_change_reason or ""
        event = next(
            (
                e for e in unmatched
                if e.actor_id == record.history_user_id
                and e.reason[:100] == reason
                and abs(e.at - record.history_date) <= EVENT_MATCH_WINDOW
            ),
            None,
        )
        if event is not None:
            unmatched.remove(event)
            entry = _event_entry(event)
            entry.source = "Lifecycle event and history record"
        else:
            entry = TimelineEntry(
                at=record.history_date,
                title={"+": "Created", "-": "Deleted"}.get(record.history_type, "Changed"),
                actor=record.history_user,
                reason=reason,
                source="History record",
            )
        entry.changes = changes.get(record.history_id, [])
        entries.append(entry)
    entries.extend(_event_entry(event) for event in unmatched)
    entries.extend(_exception_entries(key))
    entries.sort(key=lambda entry: entry.at, reverse=True)
    return entries


def _exception_entries(key: ApiKey) -> list[TimelineEntry]:
    """Each step of the key's exceptions (request, decision, lapse...), from their history records."""
    records = KeyException.history.model.objects.filter(key_id=key.pk).select_related("history_user")
    return [
        TimelineEntry(
            at=record.history_date,
            title=f"Exception #{record.id}: {record.get_kind_display().split(' (')[0].lower()}",
            actor=record.history_user,
            reason=record.history_change_reason or "",
            status=record.get_status_display(),
            source="Exception history record",
        )
        for record in records.order_by("history_date", "history_id")
    ]


def _render_detail(request, key: ApiKey, failed: tuple[str, LifecycleForm] | None = None, status: int = 200):
    user_can_act = roles.is_admin(request.user)
    panels = offered_panels(KEY_ACTIONS.values() if user_can_act else (), key, failed=failed)
    open_release = releases.open_release(key)
    context = {
        "key": key,
        "action_panels": panels,
        **refusal(KEY_ACTIONS, failed, panels),
        "timeline": key_timeline(key),
        "user_can_act": user_can_act,
        "key_exceptions": key.exceptions.select_related("requested_by", "decided_by").order_by("-requested_at"),
        "can_request_exception": exceptions.may_request(request.user, key) and not key.is_final,
        "open_release": open_release,
        "release_panels": offered_panels(RELEASE_ACTIONS.values(), id_prefix="release")
        if open_release and releases.may_decide(request.user, open_release) else [],
    }
    return render(request, "keys/key_detail.html", context, status=status)


@login_required
def key_detail(request, pk):
    key = get_object_or_404(visible_keys(request.user), pk=pk)
    return _render_detail(request, key)


@sensitive_post_parameters("secret")
@login_required
@require_POST
def key_action(request, pk, action):
    key_action_spec = action_or_404(KEY_ACTIONS, action)
    key = get_object_or_404(visible_keys(request.user), pk=pk)
    if not roles.is_admin(request.user):
        raise PermissionDenied("Only admins change a key's lifecycle.")
    form, _ = key_action_spec.submit(request.POST, key, request.user)
    if form.is_valid():
        messages.success(request, f"{key_action_spec.label}: done for {key.label}.")
        return redirect(key)
    return _render_detail(request, key, failed=(key_action_spec.slug, form), status=400)


@sensitive_post_parameters("secret")
@login_required
def register_key_view(request):
    if not roles.is_admin(request.user):
        raise PermissionDenied("Only admins register keys.")
    form = RegisterKeyForm(request.POST or None)
    if request.method == "POST":
        key = form.call_service(lambda data: lifecycle.register_key(actor=request.user, **form.lifecycle_kwargs()))
        if form.is_valid():
            messages.success(request, f"Registered {key.label} ({key.prefix}…); it awaits approval.")
            return redirect(key)
        return render(request, "keys/register.html", {"form": form}, status=400)
    return render(request, "keys/register.html", {"form": form})

