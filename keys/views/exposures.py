"""Exposures in the portal: admins, compliance, key owners and stewards report a found secret (customer contacts
may not); compliance and admins see the reports and triage the fingerprint-only ones.

The secret is fingerprinted at once by keys.services.exposures.report_exposure and never kept; someone who
may not see the matched key gets the same answer as for no match.
"""

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_POST

from core import roles
from core.lists import READERS, ObjectListView
from core.navigation import return_url
from keys.choices import ExposureSource
from keys.filters import ExposureFilterSet
from keys.forms.keys import LifecycleForm, SecretField
from keys.models import Exposure
from keys.services.exposures import ExposureError, key_shown_to, may_report, report_exposure, triage_exposure
from keys.tables import ExposureTable

NO_MATCH = "Thank you: the report is recorded. It matches none of the keys you can see."


class ExposureForm(LifecycleForm):
    secret = SecretField(label="Secret found", help_text="Fingerprinted at once and dropped: never stored or shown.")
    fingerprint = forms.CharField(required=False, max_length=64,
                                  help_text="Or, instead of the secret, its fingerprint (64 hex characters).")
    location = forms.CharField(max_length=500, help_text="Where it was found: a URL, repository and file, ticket…")
    notes = forms.CharField(required=False, max_length=5000, widget=forms.Textarea(attrs={"rows": 3}))


class TriageForm(forms.Form):
    decision = forms.ChoiceField(choices=[("revoke", "Revoke the key"), ("dismiss", "Dismiss the report")])
    reason = forms.CharField(max_length=2000, required=False)


@sensitive_variables()
@sensitive_post_parameters("secret")
@login_required
def report_exposure_view(request):
    if not may_report(request.user):
        raise PermissionDenied("Only admins, compliance, key owners and stewards report exposures.")
    form = ExposureForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            exposure = report_exposure(reporter=request.user, source=ExposureSource.PORTAL, **form.cleaned_data)
        except ExposureError as error:
            form.add_service_errors(error)
        else:
            key = key_shown_to(exposure, request.user)
            if key is not None:
                messages.warning(request, f"The secret matches {key.label} ({key.prefix}…): the key is "
                                          f"{key.get_status_display().lower()}, and its owner and compliance have "
                                          "been told.")
                return redirect(key.get_absolute_url())
            messages.success(request, NO_MATCH)
            return redirect("keys:exposure-report")
    return render(request, "keys/exposure_report.html", {"form": form}, status=400 if form.errors else 200)


@login_required
@require_POST
def triage_exposure_view(request, pk):
    if not roles.sees_everything(request.user):
        raise PermissionDenied("Only compliance and admins triage exposure reports.")
    exposure = get_object_or_404(Exposure, pk=pk)
    form = TriageForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose to revoke the key or dismiss the report, and say why.")
    else:
        revoke = form.cleaned_data["decision"] == "revoke"
        try:
            triage_exposure(exposure, actor=request.user, revoke=revoke, reason=form.cleaned_data["reason"])
        except ExposureError as error:
            messages.error(request, " ".join(error.messages))
        else:
            messages.success(request, f"Exposure #{exposure.pk}: " + ("the key is revoked." if revoke else
                                                                      "the report is dismissed."))
    return redirect(return_url(request, reverse("keys:exposures")))


class ExposureListView(ObjectListView):
    queryset = Exposure.objects.select_related("key__workflow__customer", "reported_by", "triage__decided_by")
    table_class = ExposureTable
    filterset_class = ExposureFilterSet
    template_name = "keys/exposure_list.html"
    ordering = ("-reported_at", "-pk")
    allowed_roles = READERS
    permission_denied_message = "Only compliance, admins and auditors see exposure reports."
