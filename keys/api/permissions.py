from rest_framework import permissions

from core import roles
from core.api import RolePermission
from keys.models import ApiKey
from keys.services.tokens import key_scope_q, request_token


def scope_keys_for_request(request, queryset=None):
    """The keys a request may see: an integration token's scope, or what its user may see (visible_to)."""
    queryset = ApiKey.objects.all() if queryset is None else queryset
    token = request_token(request)
    if token is not None:
        return queryset.filter(key_scope_q(token))
    return queryset.visible_to(request.user)


class CanRevokeKey(permissions.BasePermission):
    """Admins revoke any key they see; an owner may revoke (release) their own key; an integration the keys of its scope."""

    message = "Only admins and the key's owner may revoke it."

    def has_object_permission(self, request, view, obj):
        if request_token(request) is not None:
            return True  # the view's queryset is already the token's scope
        return roles.is_admin(request.user) or obj.owner_id == request.user.pk


class RoleOrIntegration(RolePermission):
    """The role (``allows``), or an integration token, which acts within its scope."""

    def allows_request(self, request) -> bool:
        return request_token(request) is not None or self.allows(request.user)


class IsAdminOrIntegration(RoleOrIntegration):
    message = "Only admins and integrations may do this."

    def allows(self, user) -> bool:
        return roles.is_admin(user)


class ReadsEverythingOrIntegration(RoleOrIntegration):
    """Compliance, admins and an auditor while their grant lasts (reads only: the auditor middleware refuses the
    rest), or an integration token within its scope."""

    message = "Only compliance, admins, auditors and integrations may read this."

    def allows(self, user) -> bool:
        return roles.reads_everything(user)
