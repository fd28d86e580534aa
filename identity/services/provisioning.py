"""Provisioning by an identity provider (SCIM): people, their groups, and the portal roles the groups give.

Each function is one change, written inside one sealed transaction with the SCIM client's service account as
actor and ``source`` (e.g. "SCIM Okta") in every reason:

- the account's fields (user name, names, email) and its active flag are recorded as ``AccountChange`` rows;
- the owner profile's fields (external id, department, manager) in the profile's history;
- a group's name and external id in the group's history, each member's groups and roles as an ``AccountChange``.

Deactivation is a departure (``attestations.services.departures.depart``): nothing is deleted, so history and
evidence keep pointing at the person; reactivation lifts it but gives no key back. Roles follow group
membership through ``IDENTITY_GROUP_ROLES`` (``identity.roles``), recomputed for every member whose groups
changed; with no mapping configured, groups give no roles and roles stay as the portal set them.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator
from django.db.models import Max

from attestations.services import departures
from core import roles
from core.chain import sealed_atomic
from core.errors import ServiceError
from core.history import attribute_change
from core.validators import field_errors
from identity import roles as identity_roles
from identity.models import AccountChange, ScimGroup
from identity.services.scim_tokens import SERVICE_ACCOUNT_PREFIX
from keys.models import OwnerProfile

User = get_user_model()

ACCOUNT_FIELDS = ("username", "first_name", "last_name", "email")
PROFILE_FIELDS = ("external_id", "department", "manager")
FIELDS = (*ACCOUNT_FIELDS, *PROFILE_FIELDS, "active")
NAME_LENGTH = 150


class ProvisioningError(ServiceError):
    """A refused provisioning change. ``kind`` is the SCIM error type (``scimType``), ``status`` the HTTP status."""

    def __init__(self, message: str, *, kind: str = "invalidValue", status: int = 400, field: str = "__all__"):
        super().__init__(message, field=field)
        self.kind = kind
        self.status = status


# Who SCIM sees ------------------------------------------------------------------------------------------

def people():
    """The accounts a SCIM client sees and changes: everyone but the portal's own accounts (the system user, SCIM
    clients' service accounts) and customer contacts, who are the customer's, not the company's."""
    return (User.objects.exclude(username=settings.SYSTEM_USERNAME)
            .exclude(username__startswith=SERVICE_ACCOUNT_PREFIX)
            .exclude(groups__name=roles.CUSTOMER_CONTACT))


def with_details(users):
    """``users`` with what their SCIM representation shows: profile, manager, groups, when they last changed."""
    return (users.select_related("owner_profile__manager").prefetch_related("scim_groups")
            .annotate(last_changed=Max("account_changes__at")).order_by("pk"))


def find_person(reference) -> User | None:
    """A person by SCIM id (the account's primary key); None for anything else."""
    reference = str(reference or "").strip()
    if not reference.isdigit() or len(reference) > 18:
        return None
    return with_details(people().filter(pk=int(reference))).first()


def find_group(reference) -> ScimGroup | None:
    reference = str(reference or "").strip()
    if not reference.isdigit() or len(reference) > 18:
        return None
    return ScimGroup.objects.prefetch_related("members").filter(pk=int(reference)).first()


def find_manager(reference: str) -> User:
    """The person a manager reference names: their SCIM id, else their external id at the provider."""
    reference = str(reference or "").strip()
    manager = find_person(reference) or people().filter(owner_profile__external_id=reference).first()
    if manager is None:
        raise ProvisioningError(f"No person with id or externalId {reference!r} to be the manager.")
    return manager


def is_active(user) -> bool:
    """Active as SCIM tells it: the account is active and the person has not left."""
    profile = getattr(user, "owner_profile", None)
    return user.is_active and (profile is None or profile.is_active)


# People -------------------------------------------------------------------------------------------------

def _clean(changes: dict, *, user=None) -> dict:
    """``changes`` checked: the fields known, each value valid and unique where it must be."""
    unknown = set(changes) - set(FIELDS)
    if unknown:
        raise ProvisioningError(f"Not a field of a person: {', '.join(sorted(unknown))}.", kind="invalidSyntax")
    cleaned = dict(changes)
    if "username" in cleaned:
        username = str(cleaned["username"] or "").strip()
        if not username:
            raise ProvisioningError("userName is required.", field="username")
        if len(username) > NAME_LENGTH:
            raise ProvisioningError(f"userName is at most {NAME_LENGTH} characters.", field="username")
        try:
            UnicodeUsernameValidator()(username)
        except ValidationError:
            raise ProvisioningError("userName may hold letters, digits and @ . + - _ only.", field="username")
        if username.startswith(SERVICE_ACCOUNT_PREFIX) or username == settings.SYSTEM_USERNAME:
            raise ProvisioningError(f"userName {username!r} is reserved.", kind="uniqueness", status=409)
        taken = User.objects.filter(username__iexact=username)
        if user is not None:
            taken = taken.exclude(pk=user.pk)
        if taken.exists():
            raise ProvisioningError(f"A user named {username!r} exists.", kind="uniqueness", status=409)
        cleaned["username"] = username
    for name in ("first_name", "last_name"):
        if name in cleaned:
            value = str(cleaned[name] or "").strip()
            if len(value) > NAME_LENGTH:
                raise ProvisioningError(f"{name} is at most {NAME_LENGTH} characters.", field=name)
            cleaned[name] = value
    if "email" in cleaned:
        email = str(cleaned["email"] or "").strip()
        if email:
            try:
                EmailValidator()(email)
            except ValidationError:
                raise ProvisioningError(f"{email!r} is not an email address.", field="email")
        cleaned["email"] = email
    if "external_id" in cleaned:
        external_id = str(cleaned["external_id"]).strip() if cleaned["external_id"] is not None else ""
        if len(external_id) > 255:
            raise ProvisioningError("externalId is at most 255 characters.", field="external_id")
        taken = OwnerProfile.objects.filter(external_id=external_id)
        if user is not None:
            taken = taken.exclude(user=user)
        if external_id and taken.exists():
            raise ProvisioningError(f"Another person has externalId {external_id!r}.", kind="uniqueness", status=409)
        cleaned["external_id"] = external_id or None
    if "department" in cleaned:
        department = str(cleaned["department"] or "").strip()
        errors = field_errors(OwnerProfile, department=department)
        if len(department) > 200:
            errors["department"] = ["at most 200 characters"]
        if errors:
            raise ProvisioningError(f"department: {' '.join(errors['department'])}", field="department")
        cleaned["department"] = department
    if "manager" in cleaned:
        manager = cleaned["manager"]
        if manager is not None and not isinstance(manager, User):
            manager = find_manager(manager)
        if manager is not None and user is not None and manager.pk == user.pk:
            raise ProvisioningError("A person cannot be their own manager.", field="manager")
        cleaned["manager"] = manager
    if "active" in cleaned and not isinstance(cleaned["active"], bool):
        raise ProvisioningError("active is true or false.", field="active")
    return cleaned


def _shown(value):
    """A value as an account change records it."""
    if isinstance(value, User):
        return value.get_username()
    return value


def _record(user, kind: str, values: dict, *, actor, reason: str) -> AccountChange:
    return AccountChange.objects.create(user=user, kind=kind, fields=sorted(values), actor=actor, reason=reason[:200],
                                        values={name: [_shown(old), _shown(new)] for name, (old, new) in values.items()})


def _apply_profile(profile: OwnerProfile, cleaned: dict) -> dict:
    """Set the profile's fields from ``cleaned``; returns {field: (before, after)} of those that changed."""
    changed = {}
    for name in PROFILE_FIELDS:
        if name not in cleaned:
            continue
        before = getattr(profile, name) if name != "manager" or profile.manager_id else None
        after = cleaned[name]
        if (before.pk if isinstance(before, User) else before) != (after.pk if isinstance(after, User) else after):
            changed[name] = (before, after)
            setattr(profile, name, after)
    return changed


def _profile_reason(source: str, changed: dict) -> str:
    return f"{source}: {', '.join(sorted(changed))} changed"


def create_person(changes: dict, *, actor, source: str) -> User:
    """Provision a person: their account (no usable password: they sign in through the provider) and owner
    profile. The user name and the external id must not be anyone else's."""
    with sealed_atomic():
        if "username" not in changes:
            raise ProvisioningError("userName is required.", field="username")
        cleaned = _clean(changes)
        active = cleaned.get("active", True)
        user = User(username=cleaned["username"], first_name=cleaned.get("first_name", ""),
                    last_name=cleaned.get("last_name", ""), email=cleaned.get("email", ""), is_active=active)
        user.set_unusable_password()
        user.save()
        profile = OwnerProfile(user=user, is_active=active)
        _apply_profile(profile, cleaned)
        attribute_change(profile, actor, f"{source}: provisioned")
        profile.save()
        _record(user, AccountChange.Kind.PROVISIONED,
                {name: (None, cleaned[name]) for name in (*ACCOUNT_FIELDS, "active") if name in cleaned},
                actor=actor, reason=f"{source}: provisioned")
    return find_person(user.pk)


def update_person(user, changes: dict, *, actor, source: str) -> User:
    """Change a person's fields as the provider says; ``active`` false is their departure (at once: see
    ``departures.depart``), true again lifts it. Fields not in ``changes`` stay as they are."""
    with sealed_atomic():
        user = User.objects.select_for_update().get(pk=user.pk)
        profile = OwnerProfile.objects.select_for_update().filter(user=user).first() or OwnerProfile(user=user)
        cleaned = _clean(changes, user=user)
        account = {name: (getattr(user, name), cleaned[name]) for name in ACCOUNT_FIELDS
                   if name in cleaned and getattr(user, name) != cleaned[name]}
        if account:
            for name, (_, value) in account.items():
                setattr(user, name, value)
            user.save(update_fields=list(account))
            _record(user, AccountChange.Kind.UPDATED, account, actor=actor, reason=f"{source}: account changed")
        profile_changes = _apply_profile(profile, cleaned)
        if profile_changes or profile.pk is None:
            attribute_change(profile, actor, _profile_reason(source, profile_changes or {"profile": None}))
            profile.save()
        user.owner_profile = profile
        was_active = is_active(user)
        if cleaned.get("active") is False and (user.is_active or profile.is_active):
            departures.depart(user, actor=actor, reason=f"{source}: deactivated")
            _record(user, AccountChange.Kind.DEACTIVATED, {"active": (True, False)}, actor=actor,
                    reason=f"{source}: deactivated")
        elif cleaned.get("active") is True and not was_active:
            departures.reinstate(user, actor=actor, reason=f"{source}: reactivated")
            _record(user, AccountChange.Kind.REACTIVATED, {"active": (False, True)}, actor=actor,
                    reason=f"{source}: reactivated")
    return find_person(user.pk)


def deactivate_person(user, *, actor, source: str) -> User:
    """What a SCIM DELETE does: the person departs; nothing is deleted."""
    return update_person(user, {"active": False}, actor=actor, source=source)


# Groups and roles ---------------------------------------------------------------------------------------

def _group_names(user_ids: Iterable[int]) -> dict[int, set[str]]:
    names: dict[int, set[str]] = {user_id: set() for user_id in user_ids}
    through = ScimGroup.members.through.objects.filter(user_id__in=names)
    for user_id, name in through.values_list("user_id", "scimgroup__display_name"):
        names[user_id].add(name)
    return names


def _provided_roles(user) -> set[str]:
    return set(user.groups.filter(name__in=roles.PROVIDED_ROLES).values_list("name", flat=True))


def _regroup(before: dict[int, set[str]], *, actor, source: str) -> int:
    """After a group change: give each person in ``before`` ({user id: group names before}) the roles their
    groups give now, and record their groups and roles where they changed. Returns how many changed."""
    # Each person's row is locked before their groups are read: two group changes racing for one person (Entra
    # sends them in parallel) then compute the roles one after the other, the second from what the first committed.
    affected = list(User.objects.select_for_update().filter(pk__in=before).order_by("pk"))
    after = _group_names(before)
    decides = bool(identity_roles.role_mapping())
    changed = 0
    for user in affected:
        values = {}
        if before[user.pk] != after[user.pk]:
            values["groups"] = (sorted(before[user.pk]), sorted(after[user.pk]))
        if decides:
            held = _provided_roles(user)
            granted = identity_roles.roles_for(after[user.pk])
            if identity_roles.apply_roles(user, granted):
                values["roles"] = (sorted(held), sorted(granted))
        if values:
            _record(user, AccountChange.Kind.GROUPS, values, actor=actor, reason=f"{source}: groups changed")
            changed += 1
    return changed


def _clean_group(*, display_name=None, external_id=None, group=None) -> dict:
    cleaned = {}
    if display_name is not None:
        name = str(display_name).strip()
        if not name:
            raise ProvisioningError("displayName is required.", field="display_name")
        if len(name) > 255:
            raise ProvisioningError("displayName is at most 255 characters.", field="display_name")
        errors = field_errors(ScimGroup, display_name=name)
        if errors:
            raise ProvisioningError(f"displayName: {' '.join(errors['display_name'])}", field="display_name")
        taken = ScimGroup.objects.filter(display_name__iexact=name)
        if group is not None:
            taken = taken.exclude(pk=group.pk)
        if taken.exists():
            raise ProvisioningError(f"A group named {name!r} exists.", kind="uniqueness", status=409)
        cleaned["display_name"] = name
    if external_id is not None:
        value = str(external_id).strip()
        if len(value) > 255:
            raise ProvisioningError("externalId is at most 255 characters.", field="external_id")
        taken = ScimGroup.objects.filter(external_id=value)
        if group is not None:
            taken = taken.exclude(pk=group.pk)
        if value and taken.exists():
            raise ProvisioningError(f"Another group has externalId {value!r}.", kind="uniqueness", status=409)
        cleaned["external_id"] = value or None
    return cleaned


def members_named(ids: Iterable) -> list:
    """The people ``ids`` (SCIM ids) name, all of them, or a refusal naming those unknown."""
    wanted = {str(i).strip() for i in ids}
    found = {str(user.pk): user for user in people().filter(pk__in=[int(i) for i in wanted if i.isdigit() and len(i) <= 18])}
    unknown = sorted(wanted - set(found))
    if unknown:
        raise ProvisioningError(f"No person with id {', '.join(unknown)} to be a member.")
    return list(found.values())


KEEP = object()


def create_group(*, display_name, external_id=None, member_ids: Iterable = (), actor, source: str) -> ScimGroup:
    """Create a group with its members, who get the roles it gives."""
    with sealed_atomic():
        cleaned = _clean_group(display_name=display_name if display_name is not None else "", external_id=external_id)
        members = members_named(member_ids)
        before = _group_names(user.pk for user in members)
        group = ScimGroup(**cleaned)
        attribute_change(group, actor, f"{source}: group created with {len(members)} member(s)")
        group.save()
        group.members.set(members)
        _regroup(before, actor=actor, source=source)
    return find_group(group.pk)


def update_group(group: ScimGroup, *, actor, source: str, display_name=KEEP, external_id=KEEP,
                 member_ids: Iterable | None = None) -> ScimGroup:
    """Rename a group, change its external id, or make ``member_ids`` its members (None: they stay). Every person
    who joins or leaves, or whose group was renamed, gets the roles their groups give now."""
    with sealed_atomic():
        group = ScimGroup.objects.select_for_update().get(pk=group.pk)
        cleaned = _clean_group(display_name=None if display_name is KEEP else (display_name or ""),
                               external_id=None if external_id is KEEP else (external_id or ""), group=group)
        fields = {name: value for name, value in cleaned.items() if getattr(group, name) != value}
        current = set(group.members.values_list("pk", flat=True))
        target = current if member_ids is None else {user.pk for user in members_named(member_ids)}
        joined, left = target - current, current - target
        if not fields and not joined and not left:
            return find_group(group.pk)
        affected = target | current if "display_name" in fields else joined | left
        before = _group_names(affected)
        said = [f"{name.replace('_', ' ')} changed" for name in sorted(fields)]
        if joined or left:
            said.append(f"members +{len(joined)} -{len(left)}")
        for name, value in fields.items():
            setattr(group, name, value)
        attribute_change(group, actor, f"{source}: {', '.join(said)}")
        group.save()
        if joined or left:
            group.members.remove(*left)
            group.members.add(*joined)
        _regroup(before, actor=actor, source=source)
    return find_group(group.pk)


def delete_group(group: ScimGroup, *, actor, source: str) -> None:
    """Delete a group (its history stays); its former members keep only the roles their other groups give."""
    with sealed_atomic():
        group = ScimGroup.objects.select_for_update().get(pk=group.pk)
        before = _group_names(group.members.values_list("pk", flat=True))
        attribute_change(group, actor, f"{source}: group deleted")
        group.delete()
        _regroup(before, actor=actor, source=source)
