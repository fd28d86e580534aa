"""A user's personal API token (DRF's ``Token``), as the API authenticates it.

Kept apart from ``core.api``: DRF loads authentication classes while its views module is still being imported, and
``core.api`` imports that module.
"""

from django.contrib.auth import get_user_model
from django.db.models import Exists, OuterRef
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication

from core import roles


class PersonalTokenAuthentication(TokenAuthentication):
    """A user's personal token (DRF's), refused for an auditor: an auditor reads through a signed-in session, where
    their grant is checked and every request is logged (``core.auditors.middleware``)."""

    def authenticate_credentials(self, key):
        # DRF's lookup, with the auditor question asked in the same query: a token call costs no query more.
        memberships = get_user_model().groups.through.objects.filter(user_id=OuterRef("user_id"),
                                                                     group__name=roles.AUDITOR)
        model = self.get_model()
        token = model.objects.select_related("user").annotate(of_auditor=Exists(memberships)).filter(key=key).first()
        if token is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        if token.of_auditor:
            raise exceptions.AuthenticationFailed("Auditors sign in to the portal; personal tokens are refused.")
        return token.user, token
