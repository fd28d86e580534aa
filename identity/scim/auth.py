"""Who may call the SCIM endpoints: a SCIM client with a bearer token an admin issued (``ScimToken``).

django-scim2 runs its ``AUTH_CHECK_MIDDLEWARE`` around every SCIM view; this one answers 404 while SCIM is off
(``SCIM_ENABLED``), and 401 with a SCIM error body to a request without an active token, whatever session it
carries. An accepted request acts as the token's service account, and is recorded in the access audit.
"""

from __future__ import annotations

import json
import logging

from django.conf import settings
from django.http import HttpResponse
from django_scim import constants, exceptions
from django_scim.middleware import SCIMAuthCheckMiddleware

from core import issued_tokens
from core.audit import client_ip, record_access
from core.models import AccessAction
from identity.services import scim_tokens

log = logging.getLogger(__name__)

WWW_AUTHENTICATE = 'Bearer realm="scim"'


def error_response(error: exceptions.SCIMException) -> HttpResponse:
    return HttpResponse(json.dumps(error.to_dict()), content_type=constants.SCIM_CONTENT_TYPE, status=error.status)


def bearer_token(request) -> str:
    scheme, _, credential = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    return credential.strip() if scheme.lower() == "bearer" else ""


class ScimTokenAuthMiddleware(SCIMAuthCheckMiddleware):
    def process_request(self, request):
        if not settings.SCIM_ENABLED:
            return error_response(exceptions.SCIMException("SCIM provisioning is not enabled here.", status=404))
        if self.should_log_request(request):
            self.log_request(request)
        token = scim_tokens.authenticate(bearer_token(request))
        if token is None:
            log.warning("SCIM request refused: no active SCIM token (%s %s)", request.method, request.path)
            response = error_response(exceptions.AuthorizationError("A valid SCIM bearer token is required."))
            response["WWW-Authenticate"] = WWW_AUTHENTICATE
            return response
        request.user = token.acts_as
        request.scim_token = token
        issued_tokens.record_use(token, client_ip(request))  # telemetry, kept out of the history
        return None

    def process_response(self, request, response):
        response = super().process_response(request, response)
        token = getattr(request, "scim_token", None)
        if token is not None:
            record_access(request, AccessAction.API_TOKEN_USED,
                          f"{request.method} {request.path} {response.status_code} "
                          f"(SCIM token #{token.pk} {token.token_prefix}…)", user=token.acts_as)
        return response
