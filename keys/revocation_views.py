"""Revocation requests in the portal: what has not reached the issuer yet, and manual confirmation.

Admins and compliance see the list (compliance reads everything); only admins confirm, through
keys.revocation.confirm_revocation.
"""

import django_filters
from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST
from django_filters.views import FilterView

from portal import roles

from . import revocation
from .choices import CONFIRMABLE_REVOCATION_STATUSES, OPEN_REVOCATION_STATUSES, IssuingSystemKind, RevocationRequestStatus
from .models import IssuingSystem, RevocationRequest

OPEN = "open"


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


class ConfirmRevocationForm(forms.Form):
    reference = forms.CharField(
        max_length=200, label="Reference at the source",
        help_text="The ticket or change number under which the key was revoked at the issuer.",
    )


class RevocationListView(LoginRequiredMixin, FilterView):
    filterset_class = RevocationRequestFilterSet
    template_name = "keys/revocations.html"
    paginate_by = 25

    def dispatch(self, request, *args, **kwargs):
        if request.user.is_authenticated and not roles.sees_everything(request.user):
            raise PermissionDenied("Only admins and compliance see revocation requests.")
        return super().dispatch(request, *args, **kwargs)

    def get_queryset(self):
        return RevocationRequest.objects.select_related(
            "key__workflow__customer", "issuing_system", "requested_by", "confirmed_by"
        ).order_by("-emergency", "-requested_at", "-pk")

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        can_confirm = roles.is_admin(self.request.user)
        context["can_confirm"] = can_confirm
        context["confirmable"] = {
            r.pk for r in context["object_list"] if can_confirm and r.status in CONFIRMABLE_REVOCATION_STATUSES
        }
        context["confirm_form"] = ConfirmRevocationForm(auto_id=False)
        query = self.request.GET.copy()
        query.pop("page", None)
        context["filter_query"] = query.urlencode()
        return context


@login_required
@require_POST
def confirm_revocation_view(request, pk):
    if not roles.is_admin(request.user):
        raise PermissionDenied("Only admins confirm revocations.")
    revocation_request = get_object_or_404(RevocationRequest.objects.select_related("key"), pk=pk)
    form = ConfirmRevocationForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Give the reference under which the key was revoked at the source.")
    else:
        try:
            revocation.confirm_revocation(revocation_request, actor=request.user,
                                          reference=form.cleaned_data["reference"])
        except revocation.RevocationError as error:
            messages.error(request, " ".join(error.messages))
        else:
            messages.success(request, f"Revocation of {revocation_request.key.label} confirmed at the source.")
    next_url = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        next_url = reverse("keys:revocations")
    return redirect(next_url)
