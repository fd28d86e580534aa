"""Compliance's auditor pages (the grants, the grant form, ending a grant now) and the page where a new auditor
chooses a password. Views never change state themselves: core.auditors.services does."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse, reverse_lazy
from django.views.decorators.http import require_POST

from core import roles
from core.auditors import services
from core.auditors.filters import OPEN, AuditorGrantFilterSet
from core.auditors.forms import EndGrantForm, GrantForm
from core.auditors.tables import AuditorGrantTable
from core.lists import STAFF, ObjectListView
from core.models import AuditorGrant
from core.navigation import return_url

PER_PAGE = 50
REFUSED = "Only compliance grants and ends auditor access."


class GrantListView(ObjectListView):
    queryset = AuditorGrant.objects.select_related("auditor", "granted_by", "ended_by")
    table_class = AuditorGrantTable
    filterset_class = AuditorGrantFilterSet
    template_name = "auditors/grant_list.html"
    ordering = ("-starts_at", "-pk")
    per_page = PER_PAGE
    allowed_roles = STAFF
    permission_denied_message = "Only compliance and admins see auditor access."

    def get_table_kwargs(self):
        return {} if services.may_manage_auditors(self.request.user) else {"exclude": ("end",)}

    def get_context_data(self, **kwargs):
        return super().get_context_data(**kwargs) | {
            "may_grant": services.may_manage_auditors(self.request.user), "open_filter": OPEN}


def _require_compliance(request):
    if not services.may_manage_auditors(request.user):
        raise PermissionDenied(REFUSED)


@login_required
def grant(request):
    _require_compliance(request)
    form = GrantForm(request.POST if request.method == "POST" else None)
    if request.method == "POST":
        granted = form.call_service(lambda data: services.grant_auditor_access(request.user, **form.service_kwargs()))
        if form.is_valid():
            auditor = granted.auditor
            told = f" An email to {auditor.email} tells them" if auditor.email else ""
            link = " and carries the link to choose a password" if told and not auditor.has_usable_password() else ""
            messages.success(request, f"{auditor.get_username()} may read from {services.moment_text(granted.starts_at)} "
                                      f"until {services.moment_text(granted.ends_at)}.{told}{link}{'.' if told else ''}")
            return redirect(f"{reverse('auditors:list')}?state={OPEN}")
    return render(request, "auditors/grant_form.html", {"form": form, "max_days": settings.AUDITOR_GRANT_MAX_DAYS},
                  status=400 if form.errors else 200)


@login_required
@require_POST
def end(request, pk):
    _require_compliance(request)
    grant = get_object_or_404(AuditorGrant.objects.select_related("auditor"), pk=pk)
    form = EndGrantForm(request.POST)
    form.call_service(lambda data: services.end_auditor_access(request.user, grant, reason=data["reason"]))
    if form.is_valid():
        messages.success(request, f"The access of {grant.auditor.get_username()} for {grant.engagement} has ended; "
                                  "their sessions are closed.")
    else:
        for error in form.errors.values():
            for message in error:
                messages.error(request, f"The access was not ended: {message}")
    return redirect(return_url(request, reverse("auditors:list")))


@login_required
@require_POST
def send_link(request, pk):
    _require_compliance(request)
    grant = get_object_or_404(AuditorGrant.objects.select_related("auditor", "granted_by"), pk=pk)
    try:
        services.send_set_password_link(request.user, grant)
    except services.AuditorError as error:
        for message in error.messages:
            messages.error(request, f"No link was sent: {message}")
    else:
        messages.success(request, f"A new link to choose a password was emailed to {grant.auditor.email}.")
    return redirect(return_url(request, reverse("auditors:list")))


class SetPasswordView(auth_views.PasswordResetConfirmView):
    """An auditor's first password (the link in the email granting access), with Django's password-reset token:
    single use, expiring, and for auditor accounts only."""

    template_name = "auditors/set_password.html"
    success_url = reverse_lazy("auditors:password-set")

    def get_user(self, uidb64):
        user = super().get_user(uidb64)
        return user if user is not None and user.is_active and roles.is_auditor(user) else None


class PasswordSetView(auth_views.PasswordResetCompleteView):
    template_name = "auditors/password_set.html"
