"""Exposures in the portal: anyone signed in reports a found secret; compliance and admins see the reports.

The secret is fingerprinted at once by keys.services.exposures.report_exposure and never kept; someone who
may not see the matched key gets the same answer as for no match.
"""

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables

from core.lists import STAFF, ObjectListView
from keys.choices import ExposureSource
from keys.filters import ExposureFilterSet
from keys.forms.keys import LifecycleForm, SecretField
from keys.models import ApiKey, Exposure
from keys.services.exposures import ExposureError, report_exposure
from keys.tables import ExposureTable

NO_MATCH = "Thank you: the report is recorded. It matches none of the keys you can see."


class ExposureForm(LifecycleForm):
    secret = SecretField(label="Secret found", help_text="Fingerprinted at once and dropped: never stored or shown.")
    fingerprint = forms.CharField(required=False, max_length=64,
                                  help_text="Or, instead of the secret, its fingerprint (64 hex characters).")
    location = forms.CharField(max_length=500, help_text="Where it was found: a URL, repository and file, ticket…")
    notes = forms.CharField(required=False, max_length=5000, widget=forms.Textarea(attrs={"rows": 3}))


@sensitive_variables()
@sensitive_post_parameters("secret")
@login_required
def report_exposure_view(request):
    form = ExposureForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            exposure = report_exposure(reporter=request.user, source=ExposureSource.PORTAL, **form.cleaned_data)
        except ExposureError as error:
            form.add_service_errors(error)
        else:
            key = exposure.key
            if key is not None and ApiKey.objects.visible_to(request.user).filter(pk=key.pk).exists():
                messages.warning(request, f"The secret matches {key.label} ({key.prefix}…): the key is "
                                          f"{key.get_status_display().lower()}, and its owner and compliance have "
                                          "been told.")
                return redirect(key.get_absolute_url())
            messages.success(request, NO_MATCH)
            return redirect("keys:exposure-report")
    return render(request, "keys/exposure_report.html", {"form": form}, status=400 if form.errors else 200)


class ExposureListView(ObjectListView):
    queryset = Exposure.objects.select_related("key__workflow__customer", "reported_by")
    table_class = ExposureTable
    filterset_class = ExposureFilterSet
    template_name = "keys/exposure_list.html"
    ordering = ("-reported_at", "-pk")
    allowed_roles = STAFF
    permission_denied_message = "Only compliance and admins see exposure reports."
