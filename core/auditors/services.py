"""Auditor access: granting it, ending it early, closing it at its end, and which grant is current.

Rules enforced here: only compliance grants and ends access; a grant names an engagement and a period that ends,
no longer than ``AUDITOR_GRANT_MAX_DAYS``, which starts today at the earliest; one auditor has at most one open
(scheduled or current) grant at a time; access goes only to an auditor account (a new one, which gets no usable
password and a link to set one, or an existing account that holds the auditor role and no other), never to an
owner, compliance, admin or customer contact. Ending a grant, early or at its end, ends the auditor's sessions.
"""

from __future__ import annotations

import datetime

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import transaction
from django.urls import reverse
from django.utils import formats, timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from core import roles
from core.actors import system_user
from core.chain import sealed_atomic
from core.errors import ServiceError
from core.history import attribute_change
from core.models import AuditorGrant
from core.sessions import end_sessions
from core.validators import field_errors

User = get_user_model()
# The roles an auditor account may not hold besides its own: they decide or act on what an auditor only reads.
OTHER_ROLES = tuple(role for role in roles.ROLES if role != roles.AUDITOR)


class AuditorError(ServiceError):
    """A refused grant or end of auditor access."""


def may_manage_auditors(user) -> bool:
    """Compliance grants and ends auditor access (admins manage the accounts' other settings, not this)."""
    return roles.is_compliance(user)


def current_grant(user, now: datetime.datetime | None = None) -> AuditorGrant | None:
    """The grant that lets ``user`` read now, if any (the one ending last, should two ever overlap)."""
    if not getattr(user, "pk", None):
        return None
    return AuditorGrant.objects.current(now).filter(auditor=user).order_by("-ends_at").first()


def _local_midnight(day: datetime.date) -> datetime.datetime:
    return timezone.make_aware(datetime.datetime.combine(day, datetime.time.min))


def _day(moment: datetime.datetime) -> str:
    return formats.date_format(timezone.localtime(moment), "DATE_FORMAT")


def moment_text(moment: datetime.datetime) -> str:
    return formats.date_format(timezone.localtime(moment), "DATETIME_FORMAT")


def period_for(starts_on: datetime.date | None, ends_on: datetime.date | None, *, now: datetime.datetime
               ) -> tuple[datetime.datetime | None, datetime.datetime | None, dict[str, list[str]]]:
    """The grant's start and end for access from ``starts_on`` (today: now) through the whole of ``ends_on``, and
    what is wrong with them, per field."""
    today = timezone.localdate(now)
    starts_on = starts_on or today
    errors: dict[str, list[str]] = {}
    if starts_on < today:
        errors["starts_on"] = [f"Access starts today ({formats.date_format(today, 'DATE_FORMAT')}) at the earliest."]
    if ends_on is None:
        errors["ends_on"] = ["Give the last day of access: auditor access always ends."]
    elif ends_on < starts_on:
        errors["ends_on"] = ["The last day of access comes before the first."]
    elif (ends_on - starts_on).days + 1 > settings.AUDITOR_GRANT_MAX_DAYS:
        last = starts_on + datetime.timedelta(days=settings.AUDITOR_GRANT_MAX_DAYS - 1)
        errors["ends_on"] = [f"Access lasts at most {settings.AUDITOR_GRANT_MAX_DAYS} days: end it on "
                             f"{formats.date_format(last, 'DATE_FORMAT')} at the latest, and grant again if the "
                             "engagement runs longer."]
    if errors:
        return None, None, errors
    starts_at = now if starts_on == today else _local_midnight(starts_on)
    return starts_at, _local_midnight(ends_on + datetime.timedelta(days=1)), {}


def _other_roles(user) -> list[str]:
    held = sorted(set(user.groups.filter(name__in=OTHER_ROLES).values_list("name", flat=True)))
    if user.is_staff or user.is_superuser:
        held.append("staff")
    return held


def _account_errors(auditor, username: str, name: str, email: str) -> dict[str, list[str]]:
    """What stops the named account (existing ``auditor``, or a new one from username, name and email)."""
    if auditor is not None:
        if username or name or email:
            return {"username": ["Choose an existing auditor or fill in a new one, not both."]}
        if not auditor.is_active:
            return {"auditor": ["This account is deactivated."]}
        held = _other_roles(auditor)
        if held:
            return {"auditor": [f"This account also holds the {', '.join(held)} role{'s' if len(held) > 1 else ''}: "
                                "auditor access goes only to an account of its own."]}
        if not roles.is_auditor(auditor):
            return {"auditor": ["This account is not an auditor's."]}
        return {}
    errors: dict[str, list[str]] = {}
    if not username:
        errors["username"] = ["Give the auditor's username, or choose an existing auditor."]
    else:
        try:
            User._meta.get_field("username").run_validators(username)
        except ValidationError as refused:
            errors["username"] = refused.messages
        else:
            if User.objects.filter(username__iexact=username).exists():
                errors["username"] = ["This username is taken. An auditor who had access before is chosen in "
                                      "\"Existing auditor\"; anyone else gets an account of their own."]
    if not name:
        errors["name"] = ["Give the auditor's name."]
    else:
        errors.update(field_errors(User, first_name=name))
    try:
        validate_email(email)
    except ValidationError:
        errors["email"] = ["Enter a valid email address: the link to set a password goes there."]
    else:
        if User.objects.filter(email__iexact=email).exists():
            errors["email"] = ["This address belongs to a portal account already."]
    return errors


def set_password_url(user) -> str:
    """The single-use link that lets ``user`` choose a password (Django's password-reset token: it stops working
    once the password is set, or after ``PASSWORD_RESET_TIMEOUT``)."""
    path = reverse("auditors:set-password", args=[urlsafe_base64_encode(force_bytes(user.pk)),
                                                  default_token_generator.make_token(user)])
    return f"{settings.SITE_URL}{path}"


def _tell_the_auditor(grant: AuditorGrant) -> None:
    auditor = grant.auditor
    if not auditor.email:
        return
    lines = [
        f"Hello {auditor.get_full_name() or auditor.get_username()},",
        "",
        f"{grant.granted_by.get_full_name() or grant.granted_by.get_username()} gave you read access to the API key "
        f"portal for {grant.engagement}, from {moment_text(grant.starts_at)} until {moment_text(grant.ends_at)}.",
        "You can read the evidence reports, the history of keys and campaigns and the exports; you cannot change "
        "anything. Every page you open is recorded.",
        "",
    ]
    if not auditor.has_usable_password():
        lines += [f"Your username is {auditor.get_username()}. Choose your password with this link (it works once, "
                  f"for {settings.PASSWORD_RESET_TIMEOUT // 86400} days):", set_password_url(auditor), ""]
    lines += [f"Sign in at {settings.SITE_URL}{reverse('login')}", ""]
    send_mail("[Keys portal] Your auditor access", "\n".join(lines), settings.DEFAULT_FROM_EMAIL, [auditor.email])


def grant_problems(*, engagement: str, ends_on: datetime.date | None, starts_on: datetime.date | None = None,
                   auditor=None, username: str = "", name: str = "", email: str = "",
                   now: datetime.datetime | None = None) -> dict[str, list[str]]:
    """What stops this grant, per field (nothing: it may be given). ``grant_auditor_access`` asks it, and a form
    may ask it first, to show every problem at once."""
    now = now or timezone.now()
    engagement = (engagement or "").strip()
    username, name, email = (username or "").strip(), (name or "").strip(), (email or "").strip().lower()
    errors: dict[str, list[str]] = {}
    if not engagement:
        errors["engagement"] = ["Name the engagement the access is for (the audit, its reference)."]
    else:
        errors.update(field_errors(AuditorGrant, engagement=engagement))
    starts_at, ends_at, period_errors = period_for(starts_on, ends_on, now=now)
    errors.update(period_errors)
    errors.update(_account_errors(auditor, username, name, email))
    if auditor is not None and not errors:
        overlapping = (AuditorGrant.objects.filter(auditor=auditor, ended_at__isnull=True, ends_at__gt=starts_at,
                                                   starts_at__lt=ends_at).order_by("starts_at").first())
        if overlapping is not None:
            errors["auditor"] = [f"{auditor.get_username()} already has access from {_day(overlapping.starts_at)} "
                                 f"until {moment_text(overlapping.ends_at)} ({overlapping.engagement}). End it first, "
                                 "or start this one after it."]
    return errors


@sealed_atomic
def grant_auditor_access(actor, *, engagement: str, ends_on: datetime.date | None,
                         starts_on: datetime.date | None = None, auditor=None, username: str = "", name: str = "",
                         email: str = "") -> AuditorGrant:
    """Give an auditor read access for ``engagement`` from ``starts_on`` (today by default) through ``ends_on``.

    ``auditor`` is an existing auditor account; otherwise a new account is created from ``username``, ``name`` and
    ``email``, with no usable password: the email telling the auditor of the access carries a link to choose one.
    """
    if not may_manage_auditors(actor):
        raise AuditorError("Only compliance grants auditor access.")
    now = timezone.now()
    if auditor is not None:
        # Under the account's lock: two grants given at once for one auditor cannot both pass the overlap check.
        auditor = User.objects.select_for_update().get(pk=auditor.pk)
    errors = grant_problems(engagement=engagement, ends_on=ends_on, starts_on=starts_on, auditor=auditor,
                            username=username, name=name, email=email, now=now)
    engagement = (engagement or "").strip()
    username, name, email = (username or "").strip(), (name or "").strip(), (email or "").strip().lower()
    starts_at, ends_at, _ = period_for(starts_on, ends_on, now=now)
    if errors:
        raise AuditorError(errors)
    if auditor is None:
        auditor = User(username=username, email=email, first_name=name[:150])
        auditor.set_unusable_password()
        auditor.save()
        auditor.groups.add(Group.objects.get_or_create(name=roles.AUDITOR)[0])
    grant = AuditorGrant(auditor=auditor, engagement=engagement, starts_at=starts_at, ends_at=ends_at,
                         granted_by=actor)
    attribute_change(grant, actor, f"granted by {actor.get_username()}: {engagement}")
    grant.save()
    transaction.on_commit(lambda: _tell_the_auditor(grant))
    return grant


def send_set_password_link(actor, grant: AuditorGrant) -> AuditorGrant:
    """Email the auditor of an open grant a new link to choose their password (the previous link keeps working
    until either is used: a password set makes both stop)."""
    if not may_manage_auditors(actor):
        raise AuditorError("Only compliance sends auditors their password link.")
    if not grant.is_open:
        raise AuditorError("This access is over: grant access again instead.")
    auditor = grant.auditor
    if auditor.has_usable_password():
        raise AuditorError(f"{auditor.get_username()} has chosen a password already.")
    if not auditor.email:
        raise AuditorError(f"{auditor.get_username()} has no email address to send the link to.")
    _tell_the_auditor(grant)
    return grant


def _close(grant: AuditorGrant, *, actor, at: datetime.datetime, reason: str, record: str) -> AuditorGrant:
    grant.ended_at, grant.ended_by, grant.end_reason = at, actor, reason[:200]
    attribute_change(grant, actor, record)
    grant.save(update_fields=["ended_at", "ended_by", "end_reason"])
    if current_grant(grant.auditor) is None:
        end_sessions(grant.auditor)
    return grant


@sealed_atomic
def end_auditor_access(actor, grant: AuditorGrant, *, reason: str = "") -> AuditorGrant:
    """End a scheduled or current grant now (compliance only); the auditor's open sessions end with it."""
    if not may_manage_auditors(actor):
        raise AuditorError("Only compliance ends auditor access.")
    grant = AuditorGrant.objects.select_for_update().select_related("auditor").get(pk=grant.pk)
    now = timezone.now()
    if not grant.is_open:
        raise AuditorError(f"This access is already over ({grant.get_state_display().lower()}).")
    reason = (reason or "").strip() or "ended early"
    errors = field_errors(AuditorGrant, end_reason=reason)
    if errors:
        raise AuditorError(errors)
    return _close(grant, actor=actor, at=now, reason=reason,
                  record=f"ended early by {actor.get_username()}: {reason}")


def expire_auditor_grants(now: datetime.datetime | None = None) -> int:
    """Close every grant past its end (at its end, by the system account) and end its auditor's sessions unless
    another grant of theirs is current. Returns how many were closed; running it again closes nothing twice."""
    now = now or timezone.now()
    closed = 0
    for pk in list(AuditorGrant.objects.lapsed(now).values_list("pk", flat=True)):
        with sealed_atomic():
            grant = AuditorGrant.objects.select_for_update().select_related("auditor").filter(pk=pk).first()
            if grant is None or grant.ended_at is not None or grant.ends_at > now:
                continue
            _close(grant, actor=system_user(), at=grant.ends_at, reason="expired", record="access expired")
            closed += 1
    return closed


def no_access_message(user, now: datetime.datetime | None = None) -> str:
    """What a signed-out auditor is told about their access."""
    now = now or timezone.now()
    grants = AuditorGrant.objects.filter(auditor=user)
    upcoming = grants.filter(starts_at__gt=now, ended_at__isnull=True).order_by("starts_at").first()
    if upcoming is not None:
        return f"Your auditor access starts on {moment_text(upcoming.starts_at)}. Sign in again then."
    last = grants.order_by("-ends_at", "-pk").first()
    if last is None:
        return "You have no auditor access. Ask compliance for access for your engagement."
    ended = min(last.ended_at or last.ends_at, last.ends_at)
    return (f"Your auditor access for {last.engagement} ended on {moment_text(ended)}. Ask compliance if you need "
            "access again.")
