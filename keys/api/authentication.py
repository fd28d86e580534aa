"""Authentication by integration token (``Authorization: Token kpt_…``).

Tokens that do not start with ``kpt_`` are left to DRF's ``TokenAuthentication`` (a user's personal
token), which comes after this class in REST_FRAMEWORK's DEFAULT_AUTHENTICATION_CLASSES.
"""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from core import issued_tokens
from keys.services import tokens


class IntegrationTokenAuthentication(authentication.BaseAuthentication):
    """Authenticate an integration: the request's user is the token's service account, ``request.auth`` the token.

    Fail-closed: a view serves token requests only for the actions (or HTTP methods) it lists in
    ``integration_token_actions``; any other endpoint answers 403, whatever the service account may do.
    """

    keyword = "Token"

    def authenticate(self, request):
        parts = authentication.get_authorization_header(request).split()
        if len(parts) != 2 or parts[0].lower() != self.keyword.lower().encode():
            return None
        try:
            plaintext = parts[1].decode()
        except UnicodeError:
            return None
        if not plaintext.startswith(tokens.TOKEN_PREFIX):
            return None
        token = tokens.find_token(plaintext)
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        if token.revoked_at is not None:
            raise exceptions.AuthenticationFailed("Token revoked.")
        if not token.acts_as.is_active:
            raise exceptions.AuthenticationFailed("The token's service account is inactive.")
        self._check_endpoint(request)
        # Telemetry, excluded from the token's history.
        issued_tokens.record_use(token, request.META.get("REMOTE_ADDR"))
        return token.acts_as, token

    def authenticate_header(self, request):
        return self.keyword

    @staticmethod
    def _check_endpoint(request):
        view = (getattr(request, "parser_context", None) or {}).get("view")
        allowed = getattr(view, "integration_token_actions", ())
        action = getattr(view, "action", None) or request.method.lower()
        if action not in allowed:
            raise exceptions.PermissionDenied("Integration tokens may not use this endpoint.")


class IntegrationTokenScheme(OpenApiAuthenticationExtension):
    target_class = "keys.api.authentication.IntegrationTokenAuthentication"
    name = "integrationToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey", "in": "header", "name": "Authorization",
            "description": "An integration token, created by an admin: `Token kpt_…`. Scoped to an issuing system "
                           "or a customer.",
        }
