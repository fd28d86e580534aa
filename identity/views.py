"""SCIM tokens in the portal (admins only): list, create (the token is shown once), revoke.

Every change goes through identity.services.scim_tokens; only a token's SHA-256 is stored.
"""

from django import forms
from django.conf import settings
from django.urls import reverse

from core.errors import ServiceErrorsMixin
from core.token_pages import IssuedTokenListView, RevokeIssuedTokenView
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


class ScimTokenListView(IssuedTokenListView):
    """The SCIM tokens, and the form creating one: its answer shows the new token, once."""

    queryset = ScimToken.objects.select_related("acts_as", "created_by")
    table_class = ScimTokenTable
    filterset_class = ScimTokenFilterSet
    form_class = ScimTokenForm
    template_name = "identity/scim_tokens.html"
    permission_denied_message = "Only admins manage SCIM tokens."

    def issue(self, form):
        return scim_tokens.create_token(actor=self.request.user, name=form.cleaned_data["name"])

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["scim_enabled"] = settings.SCIM_ENABLED
        context["scim_base_url"] = (settings.SITE_URL + reverse("scim:root")).rstrip("/")
        return context


class RevokeScimTokenView(RevokeIssuedTokenView):
    model = ScimToken
    revoke = staticmethod(scim_tokens.revoke_token)
    success_url = "scim-tokens"
    permission_denied_message = "Only admins manage SCIM tokens."
    revoked_message = "SCIM token {name} revoked: it is refused from now on."
