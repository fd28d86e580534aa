"""The API's OpenAPI schema (``/api/schema/``) and its Swagger UI (``/api/docs/``), open to anonymous callers
only with API_DOCS_PUBLIC.

Apart from core.api: drf-spectacular's views import DRF's generic views, which import the filter backend
that core.api defines.
"""

from django.conf import settings
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework import permissions


class ApiDocsAccess(permissions.BasePermission):
    """The schema and its docs: for anyone with API_DOCS_PUBLIC (local default), else for signed-in users and
    tokens only (production default)."""

    message = "Sign in, or send a token, to read the API's schema and docs."

    def has_permission(self, request, view):
        return settings.API_DOCS_PUBLIC or bool(request.user and request.user.is_authenticated)


class SchemaView(SpectacularAPIView):
    """The OpenAPI schema, for whom ApiDocsAccess lets in; integration tokens may read it."""

    permission_classes = [ApiDocsAccess]
    integration_token_actions = {"get"}


class DocsView(SpectacularSwaggerSplitView):
    """Swagger UI over the schema, for whom ApiDocsAccess lets in."""

    permission_classes = [ApiDocsAccess]
    integration_token_actions = {"get"}
