"""Releases in their grace window: the list, and rolling back or revoking early (keys.services.releases)."""

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import NON_FIELD_ERRORS, PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_POST

from core.actions import Action, action_or_404
from core.lists import ObjectListView
from keys.filters import KeyReleaseFilterSet
from keys.forms.keys import LifecycleForm
from keys.models import ApiKey, KeyRelease
from keys.services import releases
from keys.tables import KeyReleaseTable


class ReleaseDecisionForm(LifecycleForm):
    reason = forms.CharField(max_length=2000, widget=forms.Textarea(attrs={"rows": 2}),
                             help_text="Recorded with the key's history.")


# Offered on the key page of a key in its grace window, to those who may decide the release.
RELEASE_ACTIONS: dict[str, Action] = {
    action.slug: action
    for action in (
        Action("rollback", "Roll back (keep the key)", ReleaseDecisionForm, button_class="button-primary",
               perform=lambda release, actor, data: releases.roll_back(release, actor=actor, reason=data["reason"]),
               done="rolled back: the key is back in service"),
        Action("revoke", "Revoke now", ReleaseDecisionForm, button_class="button-danger",
               perform=lambda release, actor, data: releases.revoke_now(release, actor=actor, reason=data["reason"]),
               done="ended: the key is revoked"),
    )
}


class ReleaseForm(LifecycleForm):
    """The key page's release: a grace window first (brownout), or at once."""

    reason = forms.CharField(max_length=2000, widget=forms.Textarea(attrs={"rows": 2}))
    grace_days = forms.IntegerField(
        required=False, min_value=0, max_value=releases.MAX_GRACE_DAYS, label="Grace window (days)",
        help_text="The key is suspended this long while its usage is watched, then revoked if unused. "
                  "Empty: the configured default; 0: revoke at once.",
    )
    immediate = forms.BooleanField(required=False, label="Revoke at once (no grace window)")

    def grace(self) -> int | None:
        return 0 if self.cleaned_data.get("immediate") else self.cleaned_data.get("grace_days")


def visible_releases(user):
    ids = ApiKey.objects.visible_ids(user)
    releases = KeyRelease.objects.all() if ids is None else KeyRelease.objects.filter(key__in=ids)
    return releases.select_related("key__workflow__customer", "key__owner", "requested_by", "decided_by")


class ReleaseListView(ObjectListView):
    table_class = KeyReleaseTable
    filterset_class = KeyReleaseFilterSet
    template_name = "keys/release_list.html"
    ordering = ("-started_at", "-pk")
    per_page = 50

    def visible_to(self, user):
        return visible_releases(user)


@login_required
@require_POST
def release_action(request, pk, action):
    spec = action_or_404(RELEASE_ACTIONS, action)
    release = get_object_or_404(visible_releases(request.user), pk=pk)
    if not releases.may_decide(request.user, release):
        raise PermissionDenied("Only the key's owner or steward, compliance or an admin decide a release.")
    form, _ = spec.submit(request.POST, release, request.user)
    for name, errors in form.errors.items():
        for message in errors:
            messages.error(request, message if name == NON_FIELD_ERRORS else f"{form[name].label}: {message}")
    if form.is_valid():
        messages.success(request, f"Release of {release.key.label} {spec.done}.")
    return redirect(release.key)
