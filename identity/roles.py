"""Roles from the identity provider: its group names map to the portal's roles (``IDENTITY_GROUP_ROLES``).

Single sign-on reads the groups claim at each sign-in; when SCIM provisioning is on (``SCIM_ENABLED``),
SCIM group membership decides instead and the claim is ignored. Only the roles a provider may give
(``core.roles.PROVIDED_ROLES``) are ever added or removed here: auditor and customer-contact roles stay the
portal's own.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings
from django.contrib.auth.models import Group

from core import roles


def role_mapping() -> dict[str, str]:
    """Provider group name -> portal role, as configured (unknown roles are refused when settings load)."""
    return dict(settings.IDENTITY_GROUP_ROLES)


def scim_decides_roles() -> bool:
    return bool(settings.SCIM_ENABLED)


def roles_for(external_groups: Iterable[str]) -> set[str]:
    mapping = role_mapping()
    return {mapping[name] for name in external_groups if name in mapping}


def apply_roles(user, granted: set[str]) -> bool:
    """Give ``user`` exactly the provided roles in ``granted`` (admin also makes them staff); returns whether
    anything changed. The caller saves nothing else and records the change in its own history entry."""
    unknown = granted - set(roles.PROVIDED_ROLES)
    if unknown:
        raise ValueError(f"not roles a provider may give: {sorted(unknown)}")
    current = set(user.groups.filter(name__in=roles.PROVIDED_ROLES).values_list("name", flat=True))
    changed = current != granted
    if changed:
        groups = {group.name: group for group in Group.objects.filter(name__in=roles.PROVIDED_ROLES)}
        user.groups.remove(*[groups[name] for name in current - granted])
        user.groups.add(*[groups[name] for name in granted - current])
    staff = roles.ADMIN in granted or user.is_superuser
    if user.is_staff != staff:
        user.is_staff = staff
        user.save(update_fields=["is_staff"])
        changed = True
    return changed
