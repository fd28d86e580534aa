import json

from django.conf import settings
from django.utils.cache import patch_cache_control
from django.views.debug import SafeExceptionReporterFilter

# Form and API fields that may carry an API key secret. Their values never reach an error page.
SECRET_FIELDS = {"secret", "found_secret", "api_secret"}


def submitted_secrets(request) -> list[str]:
    """The secret values a request carried, from a form or a JSON body."""
    if request is None:
        return []
    values = []
    if request.method == "POST":
        for name in SECRET_FIELDS:
            values += request.POST.getlist(name)
    content_type = request.META.get("CONTENT_TYPE", "")
    if content_type.startswith("application/json"):
        try:
            body = json.loads(request.body or b"{}")
        except (ValueError, UnicodeDecodeError, Exception):  # noqa: BLE001 - a broken body carries nothing to hide
            body = {}
        if isinstance(body, dict):
            values += [str(body[name]) for name in SECRET_FIELDS if body.get(name)]
    return [v for v in values if v]


class SecretSafeExceptionReporterFilter(SafeExceptionReporterFilter):
    """Hides submitted secrets everywhere on error reports: POST data, and any local variable whose
    value contains one (forms, cleaned_data, serializers), whatever the view forgot to mark."""

    def get_post_parameters(self, request):
        params = super().get_post_parameters(request)
        if request is None:
            return params
        params = params.copy()
        for name in SECRET_FIELDS & set(params):
            params[name] = self.cleansed_substitute
        return params

    def get_traceback_frame_variables(self, request, tb_frame):
        secrets = submitted_secrets(request)
        cleansed = []
        for name, value in super().get_traceback_frame_variables(request, tb_frame):
            if name in SECRET_FIELDS or (secrets and _contains_any(value, secrets)):
                value = self.cleansed_substitute
            cleansed.append((name, value))
        return cleansed


def _contains_any(value, secrets) -> bool:
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - an object that cannot describe itself is hidden to be safe
        return True
    return any(secret in text for secret in secrets)


class ResponseHeadersMiddleware:
    """On every answer, a Permissions-Policy that turns off the browser features the portal never uses. On a
    signed-in page and every API answer, ``Cache-Control: private, no-store``: what a user saw (keys, owners,
    evidence) stays in no browser or proxy cache once they sign out. Static files never reach it (whitenoise
    answers them first)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if settings.PERMISSIONS_POLICY:
            response.headers.setdefault("Permissions-Policy", settings.PERMISSIONS_POLICY)
        user = getattr(request, "user", None)
        if request.path.startswith("/api/") or (user is not None and user.is_authenticated):
            patch_cache_control(response, private=True, no_store=True)
        return response
