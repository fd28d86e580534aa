"""Customer contacts: invitation, key assignment, emailed links, one-time codes and decisions.

Rules enforced here: a contact belongs to one customer with a live contract and has no password; a
key is assigned to a contact by making them its owner (through ``keys.services.lifecycle.change_owner``) and
only within their customer; a link is single-use, expires, and is superseded by the next one sent; a
code is short-lived, and a few wrong codes lock the link; a contact decides only their own items, and
through ``attestations.services.campaigns.record_decision``, so a decision is recorded once with them as actor.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import salted_hmac

from attestations.choices import CampaignStatus, Decision, ItemStatus
from attestations.models import AttestationItem
from attestations.services import decisions
from contacts.choices import LinkPurpose, LinkState
from contacts.models import AccessLink, CustomerContact
from core import roles
from core.actors import system_user
from core.chain import ERASED, bulk_update_with_history, erase_personal, sealed_atomic
from core.errors import ServiceError
from core.history import attribute_change
from core.models import AccessRecord
from core.validators import field_errors
from keys.choices import ContractStatus
from keys.models import ApiKey, Customer
from keys.services import lifecycle

User = get_user_model()
CODE_DIGITS = 6
CONTACT_DECISIONS = (Decision.CONFIRM, Decision.RELEASE)


class ContactError(ServiceError):
    """A refused contact step."""


class LinkRefused(ContactError):
    """A link that cannot be used: ``state`` says why (unknown, used, expired, superseded, locked, inactive)."""

    def __init__(self, state: str, message: str):
        self.state = state
        super().__init__(message)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _hash_code(link: AccessLink, code: str) -> str:
    # Keyed by the server secret and the link: six digits are too few to store under a plain hash.
    return salted_hmac("contacts.access-code", f"{link.pk}:{code}", algorithm="sha256").hexdigest()


def _absolute(path: str) -> str:
    return f"{settings.SITE_URL}{path}"


def mask_email(email: str) -> str:
    local, _, domain = email.partition("@")
    return f"{local[:1]}{'•' * max(len(local) - 1, 2)}@{domain}"


@sealed_atomic
def invite_contact(*, actor, customer: Customer, name: str, email: str) -> tuple[CustomerContact, str]:
    """Create the contact (a user with no password, in the customer-contact group) and send a first link.

    Returns the contact and the link's token (for the caller's tests; views never show it).
    """
    name = (name or "").strip()
    email = (email or "").strip().lower()
    errors: dict[str, list[str]] = {}
    if not name:
        errors["name"] = ["Give the contact's name."]
    else:
        errors.update(field_errors(CustomerContact, name=name))
    try:
        validate_email(email)
    except ValidationError:
        errors["email"] = ["Enter a valid email address."]
    else:
        if CustomerContact.objects.filter(email=email).exists():
            errors["email"] = ["This address is already a customer contact."]
        elif User.objects.filter(username=email).exists() or User.objects.filter(email__iexact=email).exists():
            errors["email"] = ["This address belongs to a portal account: contacts are people outside the company."]
    if customer is None:
        errors["customer"] = ["Choose the customer."]
    elif customer.contract_status == ContractStatus.ENDED:
        errors["customer"] = ["The customer's contract has ended: its keys are being revoked, not attested."]
    if errors:
        raise ContactError(errors)
    user = User(username=email, email=email, first_name=name[:150])
    user.set_unusable_password()
    user.save()
    user.groups.add(Group.objects.get_or_create(name=roles.CUSTOMER_CONTACT)[0])
    contact = CustomerContact(user=user, customer=customer, name=name, email=email, invited_by=actor)
    attribute_change(contact, actor, f"invited by {actor.get_username()}")
    contact.save()
    _, token = send_access_link(contact, actor=actor, purpose=LinkPurpose.INVITATION)
    return contact, token


@sealed_atomic
def deactivate_contact(contact: CustomerContact, *, actor, reason: str) -> CustomerContact:
    """End the contact's access: their links stop working. Their keys stay theirs until reassigned."""
    reason = (reason or "").strip()
    if not reason:
        raise ContactError("Say why the contact no longer has access.", field="reason")
    contact = CustomerContact.objects.select_for_update().get(pk=contact.pk)
    if not contact.is_active:
        raise ContactError("The contact is already deactivated.")
    contact.is_active = False
    attribute_change(contact, actor, f"deactivated: {reason}")
    contact.save()
    _supersede_open_links(contact, actor, f"contact deactivated: {reason}")
    return contact


def assign_key(contact: CustomerContact, key: ApiKey, *, actor, reason: str = "") -> ApiKey:
    """Make the contact the key's owner: only a key of their own customer, only while they are active."""
    if not contact.is_active:
        raise ContactError("The contact is deactivated.", field="key")
    if key.workflow.customer_id != contact.customer_id:
        raise ContactError(f"The key belongs to another customer than {contact.customer}.", field="key")
    reason = (reason or "").strip() or f"assigned to customer contact #{contact.pk}"
    try:
        return lifecycle.change_owner(key, actor=actor, new_owner=contact.user, reason=reason)
    except lifecycle.LifecycleError as error:
        raise ContactError({"key" if f in ("new_owner", "__all__") else f: m for f, m in error.errors.items()}) from None


def _supersede_open_links(contact: CustomerContact, actor, reason: str) -> None:
    """Every unused link of the contact stops working, each change recorded in the link's history."""
    links = list(AccessLink.objects.filter(contact=contact, used_at__isnull=True, superseded_at__isnull=True))
    now = timezone.now()
    for link in links:
        link.superseded_at = now
    bulk_update_with_history(links, AccessLink, ["superseded_at"], default_user=actor or system_user(),
                             default_change_reason=reason[:100])


@sealed_atomic
def send_access_link(contact: CustomerContact, *, actor=None, purpose: str = LinkPurpose.MANUAL,
                     note: str = "") -> tuple[AccessLink, str]:
    """Email a new sign-in link; any earlier unused link stops working. Returns the link and its token."""
    contact = CustomerContact.objects.select_for_update().select_related("customer").get(pk=contact.pk)
    if not contact.is_active:
        raise ContactError("The contact is deactivated: no link is sent.")
    now = timezone.now()
    _supersede_open_links(contact, actor, "a new link was sent")
    token = secrets.token_urlsafe(32)
    link = AccessLink.objects.create(
        contact=contact, token_hash=hash_token(token), purpose=purpose, note=note[:200], created_by=actor,
        created_at=now, expires_at=now + datetime.timedelta(hours=settings.CONTACT_LINK_HOURS),
    )
    url = _absolute(reverse("contacts:access", args=[token]))
    intro = {
        LinkPurpose.INVITATION: f"you are named as an owner of API keys that {contact.customer} uses with us. "
                                "We ask owners to confirm, from time to time, that each key is still needed.",
        LinkPurpose.CAMPAIGN: f"{note or 'a review'} asks you to confirm or release the API keys you own.",
        LinkPurpose.REMINDER: f"{note or 'a review'} still waits for your decision on the API keys you own.",
    }.get(purpose, "here is a new link to review the API keys you own.")
    body = (
        f"Hello {contact.name},\n\n{intro[:1].upper()}{intro[1:]}\n\n"
        f"Open this link to review your keys (it works once, until {timezone.localtime(link.expires_at):%d %b %Y %H:%M %Z}):\n"
        f"{url}\n\nWe will then email you a one-time code to this same address.\n"
        "If you did not expect this message, ignore it.\n"
    )
    transaction.on_commit(lambda: send_mail(
        f"[Keys portal] Review the API keys you own for {contact.customer}", body,
        settings.DEFAULT_FROM_EMAIL, [contact.email],
    ))
    return link, token


def _refusal(state: str) -> LinkRefused:
    messages = {
        "unknown": "This link is not valid. Check that you opened the whole link from your email.",
        LinkState.USED: "This link was already used. Each link works once: ask for a new one if you need to come back.",
        LinkState.SUPERSEDED: "This link was replaced by a newer one. Use the latest link we emailed you.",
        LinkState.EXPIRED: "This link has expired. Ask your contact at the company for a new one.",
        LinkState.LOCKED: "This link is locked after too many wrong codes. Ask your contact at the company for a new one.",
        LinkState.INACTIVE: "Your access to the portal has ended.",
    }
    return LinkRefused(state, messages[state])


def open_link(token: str) -> AccessLink:
    """The usable link for ``token``, or ``LinkRefused`` saying why not."""
    link = (
        AccessLink.objects.select_related("contact__user", "contact__customer")
        .filter(token_hash=hash_token(token or "")).first()
    )
    if link is None:
        raise _refusal("unknown")
    if link.state != LinkState.VALID:
        raise _refusal(link.state)
    return link


@sealed_atomic
def send_code(link: AccessLink) -> AccessLink:
    """Email a fresh one-time code for the link (the previous code stops working); a few per link."""
    link = AccessLink.objects.select_for_update().select_related("contact__user", "contact__customer").get(pk=link.pk)
    if link.state != LinkState.VALID:
        raise _refusal(link.state)
    if link.codes_sent >= settings.CONTACT_CODES_PER_LINK:
        raise ContactError("Too many codes were sent for this link. Use the last code, or ask for a new link.")
    code = f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"
    link.code_hash = _hash_code(link, code)
    link.code_expires_at = timezone.now() + datetime.timedelta(minutes=settings.CONTACT_CODE_MINUTES)
    link.codes_sent += 1
    attribute_change(link, link.contact.user, f"one-time code {link.codes_sent} sent")
    link.save(update_fields=["code_hash", "code_expires_at", "codes_sent"])
    body = (
        f"Hello {link.contact.name},\n\nYour one-time code for the keys portal is {code}\n\n"
        f"It works for {settings.CONTACT_CODE_MINUTES} minutes. Nobody from the company will ask you for it.\n"
    )
    transaction.on_commit(lambda: send_mail(
        f"[Keys portal] Your one-time code: {code}", body, settings.DEFAULT_FROM_EMAIL, [link.contact.email]
    ))
    return link


def verify_code(link: AccessLink, code: str) -> CustomerContact:
    """Check the code; on success the link is used up (single use) and the contact is returned.

    A wrong code counts against the link; ``CONTACT_CODE_MAX_FAILURES`` of them lock it.
    """
    code = "".join((code or "").split())
    with sealed_atomic():
        link = AccessLink.objects.select_for_update().select_related("contact__user").get(pk=link.pk)
        if link.state != LinkState.VALID:
            raise _refusal(link.state)
        if not link.code_hash:
            raise ContactError("Ask for a code first.", field="code")
        if link.code_expires_at <= timezone.now():
            raise ContactError("This code has expired. Ask for a new code.", field="code")
        if hmac.compare_digest(link.code_hash, _hash_code(link, code)):
            link.used_at = timezone.now()
            link.code_hash = ""
            attribute_change(link, link.contact.user, "signed in with the link and its code")
            link.save(update_fields=["used_at", "code_hash"])
            return link.contact
        link.failed_attempts += 1
        attribute_change(link, link.contact.user, f"wrong code ({link.failed_attempts})")
        link.save(update_fields=["failed_attempts"])
        left = settings.CONTACT_CODE_MAX_FAILURES - link.failed_attempts
    if left <= 0:
        raise _refusal(LinkState.LOCKED)
    raise ContactError(f"That code is not right. {left} attempt{'s' if left != 1 else ''} left.", field="code")


def contact_items(contact: CustomerContact):
    """The contact's items: assigned to them (or delegated), on keys of their own customer only."""
    return AttestationItem.objects.decidable_by(contact.user).filter(key__workflow__customer=contact.customer_id)


def pending_items(contact: CustomerContact):
    return contact_items(contact).filter(status=ItemStatus.PENDING, campaign__status=CampaignStatus.ACTIVE)


def contact_keys(contact: CustomerContact):
    """The keys the contact owns, of their own customer only."""
    return ApiKey.objects.filter(owner=contact.user, workflow__customer=contact.customer_id)


def decide(contact: CustomerContact, item: AttestationItem, *, decision: str, justification: str = "",
           affirm: bool = False, reaffirm_exception: bool = False, reason: str = "") -> AttestationItem:
    """A contact's decision: confirm or release one of their own items, through the campaign service."""
    if decision not in CONTACT_DECISIONS:
        raise ContactError("Choose confirm or release.", field="decision")
    if not CustomerContact.objects.filter(pk=contact.pk, is_active=True, user__is_active=True).exists():
        raise ContactError("Your access to the portal has ended.")
    if not contact_items(contact).filter(pk=item.pk).exists():
        raise ContactError("This item is not yours to decide.")
    return decisions.record_decision(item, actor=contact.user, decision=decision, justification=justification,
                                     affirm=affirm, reaffirm_exception=reaffirm_exception, reason=reason)


def notify_reviewer(sender, *, user, campaign, count: int, reminder: bool, **kwargs) -> bool:
    """``reviewer_notice`` receiver: send a contact reviewer a fresh link instead of the inbox address;
    False if ``user`` is no contact."""
    contact = CustomerContact.objects.filter(user=user).first()
    if contact is None:
        return False
    if contact.is_active:
        due = f", due {campaign.due_on:%d %b %Y}" if campaign.due_on else ""
        send_access_link(contact, purpose=LinkPurpose.REMINDER if reminder else LinkPurpose.CAMPAIGN,
                         note=f"{campaign.name} ({count} key{'s' if count != 1 else ''}{due})")
    return True


def may_erase(user, contact: CustomerContact) -> bool:
    """Only admins erase a contact's personal data, once."""
    return roles.is_admin(user) and not contact.erased_at


def erased_username(contact_id: int) -> str:
    return f"erased-contact-{contact_id}"


def erase_contact(contact: CustomerContact, *, actor, reason: str) -> CustomerContact:
    """Erase a contact's personal data (name, email) on request, keeping every record verifiable.

    Admins only, with a reason. The contact loses access first (deactivated, links superseded). Their
    history records and access records keep salted digests of the erased values in a chained erasure
    record; the account keeps its keys and decisions under a name that is not personal
    (``erased-contact-<id>``), so reports still show who decided, as an erased contact.
    """
    if not roles.is_admin(actor):
        raise ContactError("Only admins erase a contact's personal data.")
    reason = (reason or "").strip()
    if not reason:
        raise ContactError("Say why the personal data is erased (the request it answers).", field="reason")
    with sealed_atomic():
        contact = CustomerContact.objects.select_for_update().select_related("user").get(pk=contact.pk)
        if contact.erased_at:
            raise ContactError("This contact's personal data is already erased.")
        user, email = contact.user, contact.email
        if contact.is_active:
            contact.is_active = False
            attribute_change(contact, actor, f"deactivated before erasure: {reason}")
            contact.save()
        _supersede_open_links(contact, actor, "contact erased")
        pseudonym = erased_username(contact.pk)
        access_ids = list(AccessRecord.objects.filter(Q(user=user) | Q(username__iexact=email))
                          .values_list("pk", flat=True))
        history_ids = list(contact.history.values_list("history_id", flat=True))
        erase_personal(
            {CustomerContact.history.model: history_ids, AccessRecord: access_ids},
            actor=actor, reason=reason, subject=f"customer contact #{contact.pk}",
            replacement=lambda model, name, record_id: {"name": ERASED, "email": f"{pseudonym}@erased.invalid",
                                                        "username": pseudonym}[name],
        )
        contact.name, contact.email, contact.erased_at = ERASED, f"{pseudonym}@erased.invalid", timezone.now()
        attribute_change(contact, actor, "personal data erased on request")
        contact.save()
        user.username, user.email, user.first_name, user.last_name = pseudonym, "", "", ""
        user.is_active = False
        user.set_unusable_password()
        user.save()
    return contact
