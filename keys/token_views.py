"""Integration tokens in the portal (admins only): list, create (the token is shown once), revoke.

Every change goes through keys.tokens; only a token's SHA-256 is stored.
"""

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_POST

from portal import roles

from . import tokens
from .forms import LifecycleForm
from .models import Customer, IntegrationToken, IssuingSystem

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


def _require_admin(request):
    if not roles.is_admin(request.user):
        raise PermissionDenied("Only admins manage integration tokens.")


def _render(request, form, plaintext=None, created=None, status=200):
    context = {
        "form": form,
        "tokens": IntegrationToken.objects.select_related("issuing_system", "customer", "acts_as", "created_by")
        .order_by("revoked_at", "name", "pk"),
        "plaintext": plaintext,
        "created": created,
    }
    response = render(request, "keys/tokens.html", context, status=status)
    add_never_cache_headers(response)
    return response


@login_required
def tokens_view(request):
    _require_admin(request)
    if request.method != "POST":
        return _render(request, TokenForm())
    form = TokenForm(request.POST)
    if form.is_valid():
        try:
            token, plaintext = tokens.create_token(actor=request.user, **form.cleaned_data)
        except tokens.TokenError as error:
            form.add_service_errors(error)
        else:
            # Shown in this one response, never again: there is nothing to show it from later.
            return _render(request, TokenForm(), plaintext=plaintext, created=token, status=201)
    return _render(request, form, status=400)


@login_required
@require_POST
def revoke_token_view(request, pk):
    _require_admin(request)
    token = get_object_or_404(IntegrationToken, pk=pk)
    tokens.revoke_token(token, actor=request.user, reason=request.POST.get("reason", ""))
    messages.success(request, f"Token {token.name} revoked: it is refused from now on.")
    return redirect("keys:tokens")
