"""Who a single sign-on is: the provider's claims matched to a portal account, kept up to date, and given the
roles the provider's groups map to; or why the person is refused.

A person is known by the subject claim (``OIDC_SUBJECT_CLAIM``), kept as ``OwnerProfile.external_id``. An
account without one is matched by email only with ``OIDC_MATCH_BY_EMAIL``; otherwise a new account is made.
Name, email, manager and department follow the provider at every sign-in, and so do the roles, unless SCIM
provisioning decides them (``identity.roles.scim_decides_roles``). Each change is one history entry of the
profile, by the person, for the reason "single sign-on".
"""

from __future__ import annotations

import re

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction

from core import roles
from core.history import attribute_change
from core.validators import refuse_hidden_characters
from identity import roles as provided_roles
from keys.models import OwnerProfile

REASON = "single sign-on"
USERNAME_CHARACTERS = re.compile(r"[^\w.@+-]")


class SignInRefused(Exception):
    """The provider vouched for the person, but the portal does not let them in.

    ``reason`` goes to the access log; ``message`` and ``advice`` are what the person reads."""

    def __init__(self, reason: str, message: str, advice: str, *, user=None, username: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.message = message
        self.advice = advice
        self.user = user
        self.username = user.get_username() if user is not None else username


def _ask() -> str:
    return settings.OIDC_ACCESS_HELP


def _provider() -> str:
    return settings.OIDC_PROVIDER_NAME


def text_claim(claims: dict, name: str, max_length: int = 255) -> str:
    """A claim as plain text ("" when absent, not text, or holding hidden characters), cut to ``max_length``."""
    value = claims.get(name) if name else None
    if isinstance(value, dict):  # a manager given as an object ({"value": ..., "email": ...})
        value = value.get("value") or value.get("id") or value.get("email")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return ""
    value = value.strip()
    try:
        refuse_hidden_characters(value)
    except ValidationError:
        return ""
    return value[:max_length]


def list_claim(claims: dict, name: str) -> list[str]:
    value = claims.get(name)
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        return [str(item) for item in value if isinstance(item, (str, int))]
    return []


def names_from(claims: dict) -> tuple[str, str]:
    first, last = text_claim(claims, "given_name", 150), text_claim(claims, "family_name", 150)
    if not (first or last):
        full = text_claim(claims, "name", 301)
        first, _, last = full.partition(" ")
    return first[:150], last[:150]


def sign_in(claims: dict):
    """The account the provider's ``claims`` sign in, brought up to date; raises ``SignInRefused``."""
    subject = text_claim(claims, settings.OIDC_SUBJECT_CLAIM)
    email = text_claim(claims, "email", 254)
    label = text_claim(claims, "preferred_username", 150) or email or subject
    if not subject:
        raise SignInRefused(
            f"no {settings.OIDC_SUBJECT_CLAIM!r} claim", f"{_provider()} did not say who you are.",
            f"The portal needs the “{settings.OIDC_SUBJECT_CLAIM}” claim from the identity provider. Tell {_ask()}.",
            username=label)
    user = find_account(subject, email, claims, label)
    if user is not None:
        refuse_unless_allowed(user)
    if provided_roles.scim_decides_roles():
        if user is None:
            raise SignInRefused(
                "not provisioned", "You have no account in the portal yet.",
                f"Accounts come from {_provider()} through provisioning. Ask {_ask()} to give you access to the "
                "portal there.", username=label)
        granted = current_roles(user)
        if not granted:
            raise no_role(user, "no role set by provisioning")
    else:
        groups = list_claim(claims, settings.OIDC_GROUPS_CLAIM)
        granted = provided_roles.roles_for(groups)
        if not granted:
            if user is not None:
                with transaction.atomic():
                    if provided_roles.apply_roles(user, set()):
                        record_change(user, profile_of(user), ["roles removed: no mapped group"])
            raise no_role(user, "no mapped group", username=label)
    with transaction.atomic():
        if user is None:
            user = create_account(claims, subject, email)
            changes = ["account created"]
        else:
            changes = []
        profile, updated = update_account(user, claims, subject, email)
        changes += updated
        if not provided_roles.scim_decides_roles() and provided_roles.apply_roles(user, granted):
            changes.append("roles " + ", ".join(sorted(granted)))
        if changes:
            record_change(user, profile, changes)
    return user


def no_role(user, reason: str, *, username: str = "") -> SignInRefused:
    return SignInRefused(
        reason, "You have no role in the portal.",
        f"Roles in the portal come from your groups at {_provider()}, and you are in none of the groups that give "
        f"one. Ask {_ask()} to add you to the group for your role (owner, compliance or administrator), then sign in "
        "again.", user=user, username=username)


def find_account(subject: str, email: str, claims: dict, label: str):
    """The account linked to ``subject``; else, with OIDC_MATCH_BY_EMAIL, the one account with the (verified)
    email; else None."""
    user_model = get_user_model()
    linked = OwnerProfile.objects.filter(external_id=subject).select_related("user").first()
    if linked is not None:
        return linked.user
    if not settings.OIDC_MATCH_BY_EMAIL or not email or claims.get("email_verified") in (False, "false"):
        return None
    matches = list(user_model.objects.filter(email__iexact=email).select_related("owner_profile")[:2])
    if len(matches) > 1:
        raise SignInRefused(
            "several accounts have this email", "Several portal accounts have your email address.",
            f"The portal cannot tell which one is yours. Ask {_ask()} to link your account.", username=label)
    if not matches:
        return None
    user = matches[0]
    profile = getattr(user, "owner_profile", None)
    if profile is not None and profile.external_id and profile.external_id != subject:
        raise SignInRefused(
            "the account with this email is linked to another identity",
            "The portal account with your email address belongs to another identity at the provider.",
            f"Ask {_ask()} to check which account is yours.", user=user)
    return user


def refuse_unless_allowed(user) -> None:
    if not user.is_active:
        raise SignInRefused("account deactivated", "Your portal account is deactivated.",
                            f"If you still need the portal, ask {_ask()}.", user=user)
    profile = getattr(user, "owner_profile", None)
    if profile is not None and not profile.is_active:
        raise SignInRefused("person marked as departed", "You are recorded as having left the company.",
                            f"If that is a mistake, ask {_ask()} to correct your record.", user=user)
    if roles.is_customer_contact(user) or roles.is_auditor(user):
        raise SignInRefused(
            "external account", "This account is an external one, which does not sign in with single sign-on.",
            "Auditors sign in with their password and customer contacts with the link they are emailed.", user=user)


def current_roles(user) -> set[str]:
    return set(user.groups.filter(name__in=roles.PROVIDED_ROLES).values_list("name", flat=True))


def create_account(claims: dict, subject: str, email: str):
    first, last = names_from(claims)
    base = text_claim(claims, "preferred_username", 150) or email or subject
    user = get_user_model().objects.create_user(unique_username(base), email=email, first_name=first, last_name=last)
    # No password: the account signs in through the provider only.
    return user


def unique_username(base: str) -> str:
    user_model = get_user_model()
    base = USERNAME_CHARACTERS.sub("", base)[:140] or "user"
    candidate, number = base, 1
    while user_model.objects.filter(**{f"{user_model.USERNAME_FIELD}__iexact": candidate}).exists():
        number += 1
        candidate = f"{base}-{number}"
    return candidate


def profile_of(user) -> OwnerProfile:
    """The person's profile, or a new one not saved yet."""
    return getattr(user, "owner_profile", None) or OwnerProfile(user=user)


def update_account(user, claims: dict, subject: str, email: str) -> tuple[OwnerProfile, list[str]]:
    """Bring the account and its profile in line with the claims: the profile (left unsaved, for one history
    entry of the whole sign-in) and the names of what changed."""
    changes = []
    first, last = names_from(claims)
    fields = []
    if (first or last) and (user.first_name, user.last_name) != (first, last):
        user.first_name, user.last_name = first, last
        fields += ["first_name", "last_name"]
        changes.append("name")
    if email and user.email != email:
        user.email = email
        fields.append("email")
        changes.append("email")
    if fields:
        user.save(update_fields=fields)
    profile = profile_of(user)
    if profile.pk is None:
        changes.append("profile created")
    if profile.external_id != subject:
        profile.external_id = subject
        changes.append("linked to the provider")
    manager = find_manager(text_claim(claims, settings.OIDC_MANAGER_CLAIM), user)
    if manager is not None and profile.manager_id != manager.pk:
        profile.manager = manager
        changes.append("manager")
    department = text_claim(claims, settings.OIDC_DEPARTMENT_CLAIM, OwnerProfile._meta.get_field("department").max_length)
    if department and profile.department != department:
        profile.department = department
        changes.append("department")
    return profile, changes


def find_manager(value: str, user):
    """The manager the claim names: by subject (external id) first, then by username, then by email."""
    if not value:
        return None
    user_model = get_user_model()
    profile = OwnerProfile.objects.filter(external_id=value).select_related("user").first()
    candidates = [profile.user] if profile is not None else []
    for lookup in (f"{user_model.USERNAME_FIELD}__iexact", "email__iexact"):
        if not candidates:
            candidates = list(user_model.objects.filter(**{lookup: value})[:2])
            candidates = candidates if len(candidates) == 1 else []
    if not candidates or candidates[0].pk == user.pk:
        return None
    return candidates[0]


def record_change(user, profile: OwnerProfile, changes: list[str]) -> None:
    """Save the profile as one history entry, by the person, for the reason "single sign-on" (and what changed)."""
    attribute_change(profile, user, f"{REASON}: {', '.join(changes)}")
    profile.save()
