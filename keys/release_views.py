"""Releases in their grace window: the list, and rolling back or revoking early (keys.releases)."""

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_POST

from portal.lists import ObjectListView

from . import releases
from .filters import KeyReleaseFilterSet
from .forms import LifecycleForm
from .lifecycle import LifecycleError
from .models import ApiKey, KeyRelease
from .tables import KeyReleaseTable

RELEASE_ACTIONS = {"rollback": releases.roll_back, "revoke": releases.revoke_now}


class ReleaseDecisionForm(forms.Form):
    reason = forms.CharField(max_length=2000, widget=forms.Textarea(attrs={"rows": 2}),
                             help_text="Recorded with the key's history.")


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
    return KeyRelease.objects.filter(key__in=ApiKey.objects.visible_to(user)).select_related(
        "key__workflow__customer", "key__owner", "requested_by", "decided_by")


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
    perform = RELEASE_ACTIONS.get(action)
    if perform is None:
        raise PermissionDenied("Roll back or revoke.")
    release = get_object_or_404(visible_releases(request.user), pk=pk)
    if not releases.may_decide(request.user, release):
        raise PermissionDenied("Only the key's owner or steward, compliance or an admin decide a release.")
    form = ReleaseDecisionForm(request.POST)
    if not form.is_valid():
        for field_errors in form.errors.values():
            for message in field_errors:
                messages.error(request, f"Reason: {message}")
        return redirect(release.key)
    try:
        perform(release, actor=request.user, reason=form.cleaned_data["reason"])
    except LifecycleError as error:
        for message in error.messages:
            messages.error(request, message)
    else:
        done = "rolled back: the key is back in service" if action == "rollback" else "ended: the key is revoked"
        messages.success(request, f"Release of {release.key.label} {done}.")
    return redirect(release.key)
