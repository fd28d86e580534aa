"""The contact's pages through HTTP: link, code, scoped session, decisions, refusals, and compliance's pages."""

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from attestations.choices import ItemStatus
from contacts.models import AccessLink, CustomerContact
from core.models import AccessAction, AccessRecord

from .conftest import last_code, last_link_token

pytestmark = pytest.mark.django_db


def sign_in(client, address, django_capture_on_commit_callbacks):
    """Open the latest emailed link, ask for a code and enter it: the contact's whole sign-in."""
    token = last_link_token(address)
    url = reverse("contacts:access", args=[token])
    assert client.get(url).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url)
    assert response.status_code == 302 and response.url == reverse("contacts:code")
    response = client.post(reverse("contacts:code"), {"code": last_code(address)})
    assert response.status_code == 302 and response.url == reverse("contacts:home"), response.content[:500]
    return token


def test_link_code_and_a_session_scoped_to_the_contact(world, django_capture_on_commit_callbacks):
    client = Client()
    token = sign_in(client, "pat@acme.test", django_capture_on_commit_callbacks)
    page = client.get(reverse("contacts:home"))
    html = page.content.decode()
    assert page.status_code == 200
    assert "Acme payouts 1" in html and "Acme payouts 2" in html
    assert "Acme internal" not in html and "Globex claims" not in html
    pat = world["pat"]
    actions = list(AccessRecord.objects.filter(user=pat.user).order_by("pk").values_list("action", flat=True))
    for expected in (AccessAction.CONTACT_LINK_OPENED, AccessAction.CONTACT_CODE_SENT, AccessAction.CONTACT_SIGNED_IN,
                     AccessAction.CONTACT_VISIT):
        assert expected in actions
    # The link is spent: a clear page, not an error, and no code is sent.
    sent = len(mail.outbox)
    again = Client().get(reverse("contacts:access", args=[token]))
    assert again.status_code == 410 and "already used" in again.content.decode()
    assert len(mail.outbox) == sent


@pytest.mark.parametrize("path", ["/", "/keys/", "/inbox/", "/campaigns/", "/contacts/", "/admin/", "/login/",
                                  "/exports/", "/no-such-page/"])
def test_a_contact_session_reaches_nothing_else(world, django_capture_on_commit_callbacks, path):
    client = Client()
    sign_in(client, "pat@acme.test", django_capture_on_commit_callbacks)
    response = client.get(path)
    assert response.status_code == 403
    assert "Not available to customer contacts" in response.content.decode()
    assert AccessRecord.objects.filter(user=world["pat"].user, action=AccessAction.CONTACT_REFUSED,
                                       target=f"GET {path}").exists()


def test_a_contact_session_gets_no_api(world, django_capture_on_commit_callbacks):
    client = Client()
    sign_in(client, "pat@acme.test", django_capture_on_commit_callbacks)
    for path in ("/api/v1/keys/", "/api/v1/attestations/", "/api/schema/"):
        response = client.get(path)
        assert response.status_code == 403 and "contact" in response.json()["detail"], path
    item = world["pat_items"][0]
    response = client.post(f"/api/v1/attestations/{item.pk}/decide/", {"decision": "confirm", "affirm": True},
                           content_type="application/json")
    assert response.status_code == 403
    item.refresh_from_db()
    assert item.status == ItemStatus.PENDING


def test_a_contact_decides_only_their_own_items(world, django_capture_on_commit_callbacks):
    client = Client()
    sign_in(client, "pat@acme.test", django_capture_on_commit_callbacks)
    other = client.post(reverse("contacts:decide", args=[world["quinn_item"].pk]), {"decision": "confirm", "affirm": "on"})
    assert other.status_code == 404
    item = world["pat_items"][0]
    refused = client.post(reverse("contacts:decide", args=[item.pk]), {"decision": "confirm"})
    assert refused.status_code == 400 and "Affirm that the key" in refused.content.decode()
    done = client.post(reverse("contacts:decide", args=[item.pk]),
                       {"decision": "confirm", "affirm": "on", "justification": "Still in use."})
    assert done.status_code == 302
    item.refresh_from_db()
    assert item.status == ItemStatus.CONFIRMED and item.decided_by == world["pat"].user
    assert AccessRecord.objects.filter(user=world["pat"].user, action=AccessAction.CONTACT_DECISION,
                                       target__startswith=f"confirm item #{item.pk}").exists()
    twice = client.post(reverse("contacts:decide", args=[item.pk]), {"decision": "release", "justification": "x"})
    assert twice.status_code == 400 and "already decided" in twice.content.decode()
    decided = client.get(reverse("contacts:home") + "?status=decided").content.decode()
    assert "Acme payouts 1" in decided
    client.post(reverse("contacts:sign-out"))
    assert client.get(reverse("contacts:home")).status_code == 401


def test_wrong_codes_then_a_locked_link_get_clear_pages(world, settings, django_capture_on_commit_callbacks):
    settings.CONTACT_CODE_MAX_FAILURES = 2
    client = Client()
    url = reverse("contacts:access", args=[last_link_token("pat@acme.test")])
    with django_capture_on_commit_callbacks(execute=True):
        client.post(url)
    code = last_code("pat@acme.test")
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    first = client.post(reverse("contacts:code"), {"code": wrong})
    assert first.status_code == 400 and "1 attempt left" in first.content.decode()
    malformed = client.post(reverse("contacts:code"), {"code": "12ab"})
    assert malformed.status_code == 400 and "Enter the 6-digit code." in malformed.content.decode()
    locked = client.post(reverse("contacts:code"), {"code": wrong})
    assert locked.status_code == 410 and "locked after too many wrong codes" in locked.content.decode()
    assert client.get(url).status_code == 410
    assert AccessRecord.objects.filter(action=AccessAction.CONTACT_CODE_FAILED, user=world["pat"].user).count() == 2
    assert client.get(reverse("contacts:home")).status_code == 401


def test_expired_unknown_and_missing_links(world, django_capture_on_commit_callbacks):
    client = Client()
    unknown = client.get(reverse("contacts:access", args=["not-a-real-token"]))
    assert unknown.status_code == 404 and "not valid" in unknown.content.decode()
    token = last_link_token("pat@acme.test")
    AccessLink.objects.filter(contact=world["pat"]).update(expires_at=timezone.now())
    expired = client.get(reverse("contacts:access", args=[token]))
    assert expired.status_code == 410 and "has expired" in expired.content.decode()
    no_link = client.get(reverse("contacts:code"))
    assert no_link.status_code == 400 and "Open the link from your email first" in no_link.content.decode()


def test_an_expired_code_asks_for_a_new_one(world, django_capture_on_commit_callbacks):
    client = Client()
    url = reverse("contacts:access", args=[last_link_token("pat@acme.test")])
    with django_capture_on_commit_callbacks(execute=True):
        client.post(url)
    code = last_code("pat@acme.test")
    AccessLink.objects.filter(contact=world["pat"]).update(code_expires_at=timezone.now())
    response = client.post(reverse("contacts:code"), {"code": code})
    assert response.status_code == 400 and "This code has expired" in response.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        resent = client.post(reverse("contacts:code-resend"), follow=True)
    assert resent.redirect_chain == [(reverse("contacts:code"), 302)]
    assert "A new code is on its way" in resent.content.decode()
    sent = sorted(AccessRecord.objects.filter(user=world["pat"].user, action=AccessAction.CONTACT_CODE_SENT)
                  .values_list("target", flat=True))
    assert len(sent) == 2 and sent[1] == f"{sent[0]} (again)"
    assert client.post(reverse("contacts:code"), {"code": last_code("pat@acme.test")}).status_code == 302


def test_the_password_form_refuses_contacts(world, client):
    user = world["pat"].user
    user.set_password("a-password-someone-set")
    user.save()
    response = client.post(reverse("login"), {"username": user.username, "password": "a-password-someone-set"})
    assert response.status_code == 200
    assert "sign in with the link we email them" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_internal_users_get_no_contact_pages(world, owner, compliance_user):
    for user in (owner, compliance_user):
        client = Client()
        client.force_login(user)
        assert client.get(reverse("contacts:home")).status_code == 403
        assert client.post(reverse("contacts:decide", args=[world["pat_items"][0].pk]),
                           {"decision": "confirm", "affirm": "on"}).status_code == 403


def test_compliance_invites_with_errors_per_field(compliance_user, owner, django_capture_on_commit_callbacks):
    from tests import factories

    customer = factories.CustomerFactory(name="Acme Payments")
    client = Client()
    client.force_login(compliance_user)
    bad = client.post(reverse("contacts:invite"), {"customer": customer.pk, "name": "", "email": "nope"})
    html = bad.content.decode()
    assert bad.status_code == 400 and "Give the contact&#x27;s name." in html and "Enter a valid email address." in html
    taken = client.post(reverse("contacts:invite"), {"customer": customer.pk, "name": "Al", "email": owner.email})
    assert taken.status_code == 400 and "belongs to a portal account" in taken.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        done = client.post(reverse("contacts:invite"), {"customer": customer.pk, "name": "Pat", "email": "pat@acme.test"})
    contact = CustomerContact.objects.get()
    assert done.status_code == 302 and done.url == reverse("contacts:detail", args=[contact.pk])
    assert mail.outbox[-1].to == ["pat@acme.test"]
    assert AccessRecord.objects.filter(user=compliance_user, action=AccessAction.CONTACT_INVITED).exists()
    listing = client.get(reverse("contacts:list") + f"?customer={customer.pk}&q=pat")
    assert listing.status_code == 200 and "pat@acme.test" in listing.content.decode()
    owner_client = Client()
    owner_client.force_login(owner)
    assert owner_client.get(reverse("contacts:invite")).status_code == 403
    assert owner_client.get(reverse("contacts:detail", args=[contact.pk])).status_code == 403


def test_admin_assigns_keys_of_the_contacts_customer_only(world, admin_user, compliance_user):
    from tests import factories

    pat = world["pat"]
    key = factories.ApiKeyFactory(workflow=world["pat_keys"][0].workflow, label="Acme refunds")
    client = Client()
    client.force_login(compliance_user)
    assert client.post(reverse("contacts:assign", args=[pat.pk]), {"key": key.pk}).status_code == 403
    client.force_login(admin_user)
    wrong = client.post(reverse("contacts:assign", args=[pat.pk]), {"key": world["quinn_key"].pk})
    assert wrong.status_code == 400 and "Choose a key from the list." in wrong.content.decode()
    assert client.post(reverse("contacts:assign", args=[pat.pk]), {"key": key.pk}).status_code == 302
    key.refresh_from_db()
    assert key.owner == pat.user
    detail = client.get(reverse("contacts:detail", args=[pat.pk])).content.decode()
    assert "Acme refunds" in detail and "Globex claims" not in detail


def test_contact_list_query_count_does_not_grow(world, compliance_user, django_assert_max_num_queries):
    from contacts import access

    for n in range(15):
        access.invite_contact(actor=compliance_user, customer=world["acme"], name=f"C{n}", email=f"c{n}@acme.test")
    client = Client()
    client.force_login(compliance_user)
    with django_assert_max_num_queries(12):
        assert client.get(reverse("contacts:list")).status_code == 200
