"""The contact service: invitation, assignment, links, codes, scoping and decisions."""

import datetime

import pytest
from django.contrib.auth.models import Group
from django.core import mail
from django.utils import timezone

from attestations.choices import ItemStatus
from attestations.services import campaigns
from contacts import access
from contacts.access import ContactError, LinkRefused
from contacts.choices import LinkState
from contacts.models import AccessLink, CustomerContact
from core import roles
from keys.choices import ContractStatus, KeyStatus
from tests import factories

from .conftest import last_code, last_link_token

pytestmark = pytest.mark.django_db


def test_invitation_creates_a_passwordless_contact_and_emails_a_link(compliance_user, django_capture_on_commit_callbacks):
    customer = factories.CustomerFactory(name="Acme Payments")
    with django_capture_on_commit_callbacks(execute=True):
        contact, token = access.invite_contact(actor=compliance_user, customer=customer, name=" Pat Lee ",
                                               email="Pat@Acme.test")
    assert contact.email == "pat@acme.test" and contact.name == "Pat Lee" and contact.invited_by == compliance_user
    assert not contact.user.has_usable_password()
    assert contact.user.groups.filter(name=roles.CUSTOMER_CONTACT).exists()
    record = contact.history.get()
    assert record.history_user == compliance_user and "invited by carol" in record.history_change_reason
    [message] = mail.outbox
    assert message.to == ["pat@acme.test"] and f"/c/{token}/" in message.body
    link = AccessLink.objects.get(contact=contact)
    assert link.token_hash == access.hash_token(token) and token not in link.token_hash
    assert link.state == LinkState.VALID


@pytest.mark.parametrize(("fields", "field", "message"), [
    ({"name": ""}, "name", "Give the contact's name."),
    ({"email": "not-an-address"}, "email", "Enter a valid email address."),
    ({"email": "alice@example.test"}, "email", "belongs to a portal account"),
    ({"customer": None}, "customer", "Choose the customer."),
])
def test_invitation_refuses_bad_input_per_field(compliance_user, owner, fields, field, message):
    arguments = {"customer": factories.CustomerFactory(), "name": "Pat", "email": "pat@acme.test", **fields}
    with pytest.raises(ContactError) as refused:
        access.invite_contact(actor=compliance_user, **arguments)
    assert message in " ".join(refused.value.errors[field])
    assert not CustomerContact.objects.exists()


def test_invitation_refuses_a_duplicate_and_an_ended_customer(compliance_user):
    customer = factories.CustomerFactory()
    access.invite_contact(actor=compliance_user, customer=customer, name="Pat", email="pat@acme.test")
    with pytest.raises(ContactError) as duplicate:
        access.invite_contact(actor=compliance_user, customer=customer, name="Pat", email="PAT@acme.test")
    assert "already a customer contact" in duplicate.value.errors["email"][0]
    ended = factories.CustomerFactory(contract_status=ContractStatus.ENDED)
    with pytest.raises(ContactError) as refused:
        access.invite_contact(actor=compliance_user, customer=ended, name="Sam", email="sam@acme.test")
    assert "contract has ended" in refused.value.errors["customer"][0]
    assert CustomerContact.objects.count() == 1
    assert Group.objects.get(name=roles.CUSTOMER_CONTACT).user_set.count() == 1


def test_a_contact_owns_only_keys_of_their_customer(world, admin_user):
    pat = world["pat"]
    assert {k.pk for k in access.contact_keys(pat)} == {k.pk for k in world["pat_keys"]}
    with pytest.raises(ContactError) as refused:
        access.assign_key(pat, world["quinn_key"], actor=admin_user)
    assert "another customer" in refused.value.errors["key"][0]
    key = world["pat_keys"][0]
    key.refresh_from_db()
    assert key.owner == pat.user and key.rotation_required
    assert key.events.filter(action="change_owner", actor=admin_user).exists()


def test_campaign_items_reach_a_contact_scoped_to_their_customer(world, admin_user):
    pat = world["pat"]
    assert [i.pk for i in access.pending_items(pat).order_by("pk")] == [i.pk for i in world["pat_items"]]
    assert world["quinn_item"].pk not in access.contact_items(pat).values_list("pk", flat=True)
    # A key of another customer given to Pat behind the contact service's back stays out of their pages.
    from keys.services import lifecycle

    lifecycle.change_owner(world["alice_key"], actor=admin_user, new_owner=pat.user, reason="Test: wrong customer?")
    stray = factories.ApiKeyFactory(workflow=world["quinn_key"].workflow, owner=pat.user)
    assert stray.pk not in access.contact_keys(pat).values_list("pk", flat=True)


def test_launch_and_reminders_send_contacts_a_fresh_link_not_the_inbox(world, django_capture_on_commit_callbacks):
    pat_mail = [m for m in mail.outbox if m.to == ["pat@acme.test"]]
    assert len(pat_mail) == 2  # the invitation, then the campaign's link
    assert "2026-Q4" in pat_mail[-1].body and "/inbox/" not in pat_mail[-1].body
    links = list(AccessLink.objects.filter(contact=world["pat"]).order_by("pk"))
    assert [link.state for link in links] == [LinkState.SUPERSEDED, LinkState.VALID]
    with pytest.raises(LinkRefused) as refused:
        access.open_link(world["pat_token"])
    assert refused.value.state == LinkState.SUPERSEDED
    from attestations.services import notifications

    with django_capture_on_commit_callbacks(execute=True):
        notifications.reminder(world["campaign"], world["pat"].user, 2)
    assert "still waits for your decision" in mail.outbox[-1].body
    assert AccessLink.objects.filter(contact=world["pat"]).count() == 3


def test_a_link_is_single_use(world, django_capture_on_commit_callbacks):
    token = last_link_token("pat@acme.test")
    link = access.open_link(token)
    with django_capture_on_commit_callbacks(execute=True):
        access.send_code(link)
    code = last_code("pat@acme.test")
    assert code not in link.code_hash and not AccessLink.objects.filter(code_hash__contains=code).exists()
    assert access.verify_code(link, code) == world["pat"]
    for attempt in (lambda: access.open_link(token), lambda: access.verify_code(link, code), lambda: access.send_code(link)):
        with pytest.raises(LinkRefused) as refused:
            attempt()
        assert refused.value.state == LinkState.USED
        assert "already used" in refused.value.messages[0]


def test_unknown_and_expired_links_are_refused(world):
    with pytest.raises(LinkRefused) as unknown:
        access.open_link("no-such-token")
    assert unknown.value.state == "unknown"
    token = last_link_token("pat@acme.test")
    AccessLink.objects.filter(token_hash=access.hash_token(token)).update(expires_at=timezone.now())
    with pytest.raises(LinkRefused) as expired:
        access.open_link(token)
    assert expired.value.state == LinkState.EXPIRED and "expired" in expired.value.messages[0]


def test_wrong_codes_count_down_then_lock_the_link(world, settings, django_capture_on_commit_callbacks):
    settings.CONTACT_CODE_MAX_FAILURES = 3
    link = access.open_link(last_link_token("pat@acme.test"))
    with django_capture_on_commit_callbacks(execute=True):
        access.send_code(link)
    code = last_code("pat@acme.test")
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for left in (2, 1):
        with pytest.raises(ContactError) as refused:
            access.verify_code(link, wrong)
        assert refused.value.errors["code"] == [f"That code is not right. {left} attempt{'s' if left > 1 else ''} left."]
    with pytest.raises(LinkRefused) as locked:
        access.verify_code(link, wrong)
    assert locked.value.state == LinkState.LOCKED
    with pytest.raises(LinkRefused):
        access.verify_code(link, code)  # even the right code, once locked
    link.refresh_from_db()
    assert link.used_at is None and link.failed_attempts == 3


def test_codes_expire_and_a_new_code_replaces_the_old(world, settings, django_capture_on_commit_callbacks):
    settings.CONTACT_CODES_PER_LINK = 2
    link = access.open_link(last_link_token("pat@acme.test"))
    with django_capture_on_commit_callbacks(execute=True):
        access.send_code(link)
    first = last_code("pat@acme.test")
    AccessLink.objects.filter(pk=link.pk).update(code_expires_at=timezone.now() - datetime.timedelta(seconds=1))
    with pytest.raises(ContactError) as expired:
        access.verify_code(link, first)
    assert "expired" in expired.value.errors["code"][0]
    with pytest.raises(ContactError) as no_code_yet:
        access.verify_code(fresh_link(world["quinn"]), "123456")
    assert "Ask for a code first" in no_code_yet.value.errors["code"][0]
    with django_capture_on_commit_callbacks(execute=True):
        access.send_code(link)
    second = last_code("pat@acme.test")
    if second != first:
        with pytest.raises(ContactError):
            access.verify_code(link, first)
    with pytest.raises(ContactError) as too_many:
        access.send_code(link)
    assert "Too many codes" in too_many.value.messages[0]
    assert access.verify_code(link, second) == world["pat"]


def fresh_link(contact) -> AccessLink:
    link, _ = access.send_access_link(contact)
    return link


def test_a_deactivated_contact_loses_their_links(world, compliance_user):
    token = last_link_token("pat@acme.test")
    with pytest.raises(ContactError):
        access.deactivate_contact(world["pat"], actor=compliance_user, reason="")
    access.deactivate_contact(world["pat"], actor=compliance_user, reason="Left Acme")
    with pytest.raises(LinkRefused) as refused:
        access.open_link(token)
    assert refused.value.state in (LinkState.INACTIVE, LinkState.SUPERSEDED)
    with pytest.raises(ContactError):
        access.send_access_link(world["pat"], actor=compliance_user)
    with pytest.raises(ContactError):
        access.decide(world["pat"], world["pat_items"][0], decision="confirm", affirm=True)


def test_contact_decisions_go_through_the_campaign_service_once(world):
    pat, item = world["pat"], world["pat_items"][0]
    with pytest.raises(ContactError) as not_theirs:
        access.decide(pat, world["quinn_item"], decision="confirm", affirm=True)
    assert "not yours" in not_theirs.value.messages[0]
    with pytest.raises(ContactError):
        access.decide(pat, item, decision="reassign", affirm=True)
    with pytest.raises(campaigns.CampaignError) as no_affirm:
        access.decide(pat, item, decision="confirm")
    assert "affirm" in no_affirm.value.errors
    access.decide(pat, item, decision="confirm", affirm=True, justification="Still runs the payouts.")
    item.refresh_from_db()
    assert item.status == ItemStatus.CONFIRMED and item.decided_by == pat.user
    assert item.history.latest().history_user == pat.user
    item.key.refresh_from_db()
    assert item.key.last_attested_at is not None and item.key.status == KeyStatus.ACTIVE
    with pytest.raises(campaigns.CampaignError) as twice:
        access.decide(pat, item, decision="release", justification="Changed my mind")
    assert "already decided" in twice.value.messages[0]
    released = world["pat_items"][1]
    access.decide(pat, released, decision="release", reason="unused", justification="Integration switched off")
    released.key.refresh_from_db()
    # Released keys are revoked, or first suspended for a grace window where brownout release is on.
    assert released.status == ItemStatus.RELEASED or released.refresh_from_db() is None
    assert released.key.status in (KeyStatus.REVOKED, KeyStatus.SUSPENDED)
