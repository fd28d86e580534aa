from rest_framework import permissions

from portal import roles


class CanRevokeKey(permissions.BasePermission):
    """Admins revoke any key they see; an owner may revoke (release) their own key."""

    message = "Only admins and the key's owner may revoke it."

    def has_object_permission(self, request, view, obj):
        return roles.is_admin(request.user) or obj.owner_id == request.user.pk
