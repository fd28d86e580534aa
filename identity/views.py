"""SCIM tokens in the portal (admins only): list, create (the token is shown once), revoke.

Every change goes through identity.services.scim_tokens; only a token's SHA-256 is stored.
"""

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import F
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_POST

from core import roles
from core.errors import ServiceErrorsMixin
from core.lists import ObjectListView
from identity.filters import ScimTokenFilterSet
from identity.models import ScimToken
from identity.services import scim_tokens
from identity.tables import ScimTokenTable


class ScimTokenForm(ServiceErrorsMixin, forms.Form):
    name = forms.CharField(max_length=100, help_text="The identity provider it is for, e.g. “Okta” or “Entra ID”; "
                                                     "its changes are recorded as made by scim:<name>.")

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("auto_id", "id_token_%s")  # the filter bar on the same page has its own fields
        super().__init__(*args, **kwargs)


class ScimTokenListView(ObjectListView):
    """The SCIM tokens, and the form creating one: its answer shows the new token, once."""

    queryset = ScimToken.objects.select_related("acts_as", "created_by")
    table_class = ScimTokenTable
    filterset_class = ScimTokenFilterSet
    template_name = "identity/scim_tokens.html"
    ordering = (F("revoked_at").asc(nulls_first=True), "name", "pk")  # active tokens first
    per_page = 50
    allowed_roles = (roles.ADMIN,)
    permission_denied_message = "Only admins manage SCIM tokens."

    def post(self, request, *args, **kwargs):
        form = ScimTokenForm(request.POST)
        context, status = {"form": form}, 400
        if form.is_valid():
            try:
                token, plaintext = scim_tokens.create_token(actor=request.user, name=form.cleaned_data["name"])
            except scim_tokens.ScimTokenError as error:
                form.add_service_errors(error)
            else:
                # Shown in this one response, never again: there is nothing to show it from later.
                context, status = {"form": ScimTokenForm(), "plaintext": plaintext, "created": token}, 201
        self.extra_context = context
        response = self.get(request, *args, **kwargs)
        response.status_code = status
        return response

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context.setdefault("form", ScimTokenForm())
        context["scim_enabled"] = settings.SCIM_ENABLED
        context["scim_base_url"] = (settings.SITE_URL + reverse("scim:root")).rstrip("/")
        return context

    def render_to_response(self, context, **response_kwargs):
        response = super().render_to_response(context, **response_kwargs)
        add_never_cache_headers(response)
        return response


@login_required
@require_POST
def revoke_scim_token(request, pk):
    if not roles.is_admin(request.user):
        raise PermissionDenied("Only admins manage SCIM tokens.")
    token = get_object_or_404(ScimToken, pk=pk)
    scim_tokens.revoke_token(token, actor=request.user, reason=request.POST.get("reason", ""))
    messages.success(request, f"SCIM token {token.name} revoked: it is refused from now on.")
    return redirect("scim-tokens")
