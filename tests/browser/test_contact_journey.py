"""A customer contact attests in a real browser: compliance invites them, they open the emailed link,
enter the one-time code from the second email, see only the keys assigned to them and confirm one. The
link then shows a clear "already used" page, and their session reaches no other page of the portal.
"""

import re

import pytest
from django.core import mail
from playwright.sync_api import expect

from attestations.choices import DefaultAction, ItemStatus
from attestations.services import campaigns
from contacts import access
from contacts.models import CustomerContact
from core.models import AccessAction, AccessRecord
from tests import factories

from .conftest import ARTIFACTS, login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

EMAIL = "pat.lee@acme-payments.test"
LINK = re.compile(r"(http://\S+/c/[A-Za-z0-9_-]+/)")
CODE = re.compile(r"one-time code for the keys portal is (\d{6})")
# Every other part of the portal, as a contact might try it: pages, the admin, the API, exports.
OTHER_URLS = ("/", "/keys/", "/keys/exceptions/", "/inbox/", "/campaigns/", "/contacts/", "/contacts/invite/",
              "/exports/", "/admin/", "/login/", "/api/v1/keys/", "/api/v1/attestations/", "/api/docs/")


def mails_to(address):
    return [m for m in mail.outbox if address in m.to]


@pytest.fixture
def world(transactional_db, settings, live_server):
    settings.SITE_URL = live_server.url  # links in emails point at the test server
    factories.ComplianceFactory(username="carol")
    admin = factories.AdminFactory(username="dave")
    alice = factories.OwnerFactory(username="alice")
    acme = factories.CustomerFactory(name="Acme Payments")
    globex = factories.CustomerFactory(name="Globex")
    payouts = factories.WorkflowFactory(customer=acme, name="Payouts")
    keys = {label: factories.ApiKeyFactory(workflow=payouts, owner=alice, label=label)
            for label in ("Acme payouts", "Acme refunds", "Acme internal")}
    keys["Globex claims"] = factories.ApiKeyFactory(workflow=factories.WorkflowFactory(customer=globex), owner=alice,
                                                    label="Globex claims")
    return {"admin": admin, "acme": acme, "globex": globex, "keys": keys}


def test_a_customer_contact_attests_through_link_and_code(page, live_server, world):
    # Compliance invites the contact through the portal.
    login(page, live_server, "carol", "demo")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Contacts").click()
    expect(page.get_by_role("heading", name="Customer contacts", level=1)).to_be_visible()
    page.get_by_role("link", name="Invite a contact").click()
    page.get_by_label("Customer").select_option(label="Acme Payments")
    page.get_by_label("Name").fill("Pat Lee")
    page.get_by_label("Email").fill("not an address")
    page.get_by_role("button", name="Send the invitation").click()
    expect(page.locator(".field-invalid")).to_contain_text("Enter a valid email address.")
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_role("button", name="Send the invitation").click()
    expect(page.get_by_role("status")).to_contain_text(f"Pat Lee is invited: a sign-in link was emailed to {EMAIL}")
    contact = CustomerContact.objects.get(email=EMAIL)
    assert contact.invited_by.username == "carol" and not contact.user.has_usable_password()
    [invitation] = mails_to(EMAIL)
    assert LINK.search(invitation.body)
    page.get_by_role("button", name="Log out").click()

    # Two Acme keys are assigned to Pat; a campaign over Acme and Globex sends Pat a fresh link.
    for label in ("Acme payouts", "Acme refunds"):
        access.assign_key(contact, world["keys"][label], actor=world["admin"])
    campaign = campaigns.create_campaign(actor=world["admin"], name="Customer review 2026-Q4",
                                         customers=[world["acme"], world["globex"]],
                                         default_action=DefaultAction.KEEP_AND_FLAG)
    campaigns.launch_campaign(campaign, actor=world["admin"])
    launch_mail = mails_to(EMAIL)[-1]
    assert "Customer review 2026-Q4" in launch_mail.body and "/inbox/" not in launch_mail.body
    link = LINK.search(launch_mail.body).group(1)

    # The invitation's link was replaced by the newer one: a clear page, not an error.
    page.goto(LINK.search(invitation.body).group(1))
    expect(page.get_by_role("alert")).to_contain_text("replaced by a newer one")

    # The contact opens the link from the email and asks for the code.
    page.goto(link)
    expect(page.get_by_role("heading", name="Review your API keys")).to_be_visible()
    page.get_by_role("button", name="Email me a code").click()
    expect(page.get_by_role("heading", name="Enter your one-time code")).to_be_visible()
    code = CODE.search(mails_to(EMAIL)[-1].body).group(1)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    page.get_by_label("One-time code from your email").fill(wrong)
    page.get_by_role("button", name="Continue").click()
    expect(page.locator(".field-error")).to_contain_text("That code is not right. 4 attempts left.")
    page.get_by_label("One-time code from your email").fill(code)
    page.get_by_role("button", name="Continue").click()

    # Only the keys assigned to Pat, of Pat's customer.
    expect(page.get_by_role("heading", name="Your API keys at Acme Payments")).to_be_visible()
    items = page.get_by_role("region", name="Waiting for your decision")
    expect(items.locator("li.inbox-item")).to_have_count(2)
    expect(items).to_contain_text("Acme payouts")
    expect(items).to_contain_text("Acme refunds")
    body = page.locator("main")
    expect(body).not_to_contain_text("Acme internal")
    expect(body).not_to_contain_text("Globex claims")

    # Pat confirms one key.
    item = campaign.items.get(key=world["keys"]["Acme payouts"])
    row = page.locator(f"#item-{item.pk}")
    row.locator("summary", has_text="Confirm").click()
    row.get_by_label("I affirm the purpose, scope and ownership are still right").check()
    row.get_by_label("Justification").fill("Our nightly payout run still uses it.")
    row.locator("button[type='submit']", has_text="Confirm").click()
    expect(page.get_by_role("status")).to_contain_text("Confirmed Acme payouts")
    expect(items.locator("li.inbox-item")).to_have_count(1)
    item.refresh_from_db()
    assert item.status == ItemStatus.CONFIRMED and item.decided_by == contact.user
    assert item.history.latest().history_user == contact.user
    assert campaign.items.get(key=world["keys"]["Acme refunds"]).status == ItemStatus.PENDING

    # The link cannot be used again.
    page.goto(link)
    expect(page.get_by_role("heading", name="This link cannot be used")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("already used")

    # Nothing else of the portal is reachable from the contact's session.
    for path in OTHER_URLS:
        response = page.goto(f"{live_server.url}{path}")
        assert response.status == 403, f"{path}: {response.status}"
        if not path.startswith("/api/"):
            expect(page.get_by_role("heading", name="Not available to customer contacts")).to_be_visible()
    page.goto(f"{live_server.url}/contact/")
    expect(page.get_by_role("heading", name="Your API keys at Acme Payments")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="You are signed out")).to_be_visible()

    recorded = set(AccessRecord.objects.filter(user=contact.user).values_list("action", flat=True))
    assert {AccessAction.CONTACT_LINK_OPENED, AccessAction.CONTACT_CODE_FAILED, AccessAction.CONTACT_SIGNED_IN,
            AccessAction.CONTACT_VISIT, AccessAction.CONTACT_DECISION, AccessAction.CONTACT_REFUSED,
            AccessAction.LOGOUT} <= recorded


def test_an_admin_erases_a_contacts_personal_data(page, live_server, world):
    contact, _ = access.invite_contact(actor=world["admin"], customer=world["acme"], name="Pat Lee", email=EMAIL)
    access.assign_key(contact, world["keys"]["Acme payouts"], actor=world["admin"])
    login(page, live_server, "dave", "demo")
    page.goto(f"{live_server.url}/contacts/{contact.pk}/")
    expect(page.get_by_role("heading", name="Erase personal data")).to_be_visible()
    page.get_by_label("Erasure request").fill("   ")  # blank to the server: refused with a message
    page.get_by_role("button", name="Erase this contact's personal data").click()
    expect(page.locator(".field-error")).to_contain_text("Say why the personal data is erased")
    page.get_by_label("Erasure request").fill("Data subject request DSR-2026-114")
    page.get_by_role("button", name="Erase this contact's personal data").click()
    expect(page.get_by_role("status")).to_contain_text("personal data is erased")
    main = page.locator("main")
    expect(main).not_to_contain_text(EMAIL)
    expect(main).not_to_contain_text("Pat Lee")
    expect(main).to_contain_text("Personal data erased on")
    assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "contact-erased.png"), full_page=True)
    contact.refresh_from_db()
    assert contact.erased_at and not contact.is_active
    # Compliance sees that it was erased, and may not erase anyone.
    other, _ = access.invite_contact(actor=world["admin"], customer=world["acme"], name="Sam Roe",
                                     email="sam.roe@acme-payments.test")
    page.get_by_role("button", name="Log out").click()
    login(page, live_server, "carol", "demo")
    page.goto(f"{live_server.url}/contacts/{contact.pk}/")
    expect(page.locator("main")).to_contain_text("Personal data erased on")
    page.goto(f"{live_server.url}/contacts/{other.pk}/")
    expect(page.get_by_role("heading", name="Erase personal data")).to_have_count(0)
