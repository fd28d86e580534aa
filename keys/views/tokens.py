"""Integration tokens in the portal (admins only): list, create (the token is shown once), revoke.

Every change goes through keys.services.tokens; only a token's SHA-256 is stored.
"""

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import F
from django.shortcuts import get_object_or_404, redirect
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_POST

from core import roles
from core.lists import ObjectListView
from keys.filters import IntegrationTokenFilterSet
from keys.forms.keys import LifecycleForm
from keys.models import Customer, IntegrationToken, IssuingSystem
from keys.services import tokens
from keys.tables import IntegrationTokenTable

User = get_user_model()


class TokenForm(LifecycleForm):
    name = forms.CharField(max_length=200, help_text="What the integration is, e.g. “Billing gateway sync”.")
    issuing_system = forms.ModelChoiceField(
        queryset=IssuingSystem.objects.all(), required=False, empty_label="Any issuing system",
        help_text="The token sees and changes only keys minted by this system…",
    )
    customer = forms.ModelChoiceField(
        queryset=Customer.objects.all(), required=False, empty_label="Any customer",
        help_text="…and/or only keys of this customer. Choose at least one.",
    )
    acts_as = forms.ModelChoiceField(
        queryset=User.objects.filter(is_active=True).order_by("username"), to_field_name="username",
        label="Service account", help_text="The account the integration's changes are recorded under "
                                           "(not an admin or compliance user).",
    )

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("auto_id", "id_token_%s")  # the filter bar on the same page has fields of these names
        super().__init__(*args, **kwargs)


def _require_admin(request):
    if not roles.is_admin(request.user):
        raise PermissionDenied("Only admins manage integration tokens.")


class TokenListView(ObjectListView):
    """The tokens, and the form creating one: its answer shows the new token, once."""

    queryset = IntegrationToken.objects.select_related("issuing_system", "customer", "acts_as", "created_by")
    table_class = IntegrationTokenTable
    filterset_class = IntegrationTokenFilterSet
    template_name = "keys/tokens.html"
    ordering = (F("revoked_at").asc(nulls_first=True), "name", "pk")  # active tokens first
    per_page = 50
    allowed_roles = (roles.ADMIN,)
    permission_denied_message = "Only admins manage integration tokens."

    def post(self, request, *args, **kwargs):
        form = TokenForm(request.POST)
        context, status = {"form": form}, 400
        if form.is_valid():
            try:
                token, plaintext = tokens.create_token(actor=request.user, **form.cleaned_data)
            except tokens.TokenError as error:
                form.add_service_errors(error)
            else:
                # Shown in this one response, never again: there is nothing to show it from later.
                context, status = {"form": TokenForm(), "plaintext": plaintext, "created": token}, 201
        self.extra_context = context
        response = self.get(request, *args, **kwargs)
        response.status_code = status
        return response

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context.setdefault("form", TokenForm())
        return context

    def render_to_response(self, context, **response_kwargs):
        response = super().render_to_response(context, **response_kwargs)
        add_never_cache_headers(response)
        return response


@login_required
@require_POST
def revoke_token_view(request, pk):
    _require_admin(request)
    token = get_object_or_404(IntegrationToken, pk=pk)
    tokens.revoke_token(token, actor=request.user, reason=request.POST.get("reason", ""))
    messages.success(request, f"Token {token.name} revoked: it is refused from now on.")
    return redirect("keys:tokens")
