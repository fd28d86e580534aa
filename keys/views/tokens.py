"""Integration tokens in the portal (admins only): list, create (the token is shown once), revoke.

Every change goes through keys.services.tokens; only a token's SHA-256 is stored.
"""

from django import forms
from django.contrib.auth import get_user_model

from core.token_pages import IssuedTokenListView, RevokeIssuedTokenView
from core.widgets import LongSelect
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
        queryset=Customer.objects.only("pk", "name"), required=False, empty_label="Any customer",
        help_text="…and/or only keys of this customer. Choose at least one.", widget=LongSelect,
    )
    acts_as = forms.ModelChoiceField(
        queryset=User.objects.filter(is_active=True).order_by("username"), to_field_name="username",
        label="Service account", help_text="The account the integration's changes are recorded under "
                                           "(not an admin or compliance user).", widget=LongSelect,
    )

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("auto_id", "id_token_%s")  # the filter bar on the same page has fields of these names
        super().__init__(*args, **kwargs)


class TokenListView(IssuedTokenListView):
    """The tokens, and the form creating one: its answer shows the new token, once."""

    queryset = IntegrationToken.objects.select_related("issuing_system", "customer", "acts_as", "created_by")
    table_class = IntegrationTokenTable
    filterset_class = IntegrationTokenFilterSet
    form_class = TokenForm
    template_name = "keys/tokens.html"
    permission_denied_message = "Only admins manage integration tokens."

    def issue(self, form):
        return tokens.create_token(actor=self.request.user, **form.cleaned_data)


class RevokeTokenView(RevokeIssuedTokenView):
    model = IntegrationToken
    revoke = staticmethod(tokens.revoke_token)
    success_url = "keys:tokens"
    permission_denied_message = "Only admins manage integration tokens."
