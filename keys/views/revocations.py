"""Revocation requests in the portal: what has not reached the issuer yet, and manual confirmation.

Admins and compliance see the list (compliance reads everything); only admins confirm, through
keys.services.revocation.confirm_revocation.
"""

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from core import roles
from core.lists import READERS, ObjectListView
from core.navigation import return_url
from keys.filters import RevocationRequestFilterSet
from keys.models import RevocationRequest
from keys.services import revocation
from keys.tables import RevocationRequestTable


class ConfirmRevocationForm(forms.Form):
    reference = forms.CharField(
        max_length=200, label="Reference at the source",
        help_text="The ticket or change number under which the key was revoked at the issuer.",
    )


class RevocationListView(ObjectListView):
    queryset = RevocationRequest.objects.select_related(
        "key__workflow__customer", "issuing_system", "requested_by", "confirmed_by"
    )
    table_class = RevocationRequestTable
    filterset_class = RevocationRequestFilterSet
    template_name = "keys/revocations.html"
    ordering = ("-emergency", "-requested_at", "-pk")
    allowed_roles = READERS
    permission_denied_message = "Only admins, compliance and auditors see revocation requests."

    def get_table_kwargs(self):
        return {} if roles.is_admin(self.request.user) else {"exclude": ("confirm",)}


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
    return redirect(return_url(request, reverse("keys:revocations")))
