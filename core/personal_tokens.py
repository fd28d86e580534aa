"""A user's personal API token (DRF's ``Token``), as the API authenticates it.

Kept apart from ``core.api``: DRF loads authentication classes while its views module is still being imported, and
``core.api`` imports that module.
"""

from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication

from core import roles


class PersonalTokenAuthentication(TokenAuthentication):
    """A user's personal token (DRF's), refused for an auditor: an auditor reads through a signed-in session, where
    their grant is checked and every request is logged (``core.auditors.middleware``)."""

    def authenticate_credentials(self, key):
        user, token = super().authenticate_credentials(key)
        if roles.is_auditor(user):
            raise exceptions.AuthenticationFailed("Auditors sign in to the portal; personal tokens are refused.")
        return user, token
