"""A transitional exception in a real browser, from request to a lapsed exception in the next campaign.

The owner requests the exception on the key's page and is not offered the approval; an admin is
refused it; compliance approves it. Its end date then passes (set directly) and the daily sweep marks it
expired. The next campaign, limited to keys due for review, still includes the key: the owner's inbox
shows the exception flagged as lapsed, and confirming is refused until the owner re-affirms it.
"""

import datetime
import re

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from attestations.choices import ItemStatus
from attestations.services import campaigns
from keys import tasks as exception_tasks
from keys.choices import ExceptionStatus, MigrationTarget
from keys.models import KeyException
from tests import factories

from .conftest import login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

JUSTIFICATION = "The billing vendor's SDK only takes a static key until v5."


@pytest.fixture
def people(transactional_db):
    return {
        "owner": factories.OwnerFactory(username="owner1"),
        "compliance": factories.ComplianceFactory(username="compliance"),
        "admin": factories.AdminFactory(username="admin"),
    }


def log_out(page):
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(re.compile(r"/login/"))


def test_lapsed_transitional_exception_is_flagged_in_the_next_campaign(page, live_server, people):
    owner, compliance = people["owner"], people["compliance"]
    today = timezone.localdate()
    key = factories.ApiKeyFactory(owner=owner, label="billing-export", next_review_on=today + datetime.timedelta(days=80))

    # The owner requests a transitional exception from the key's page.
    login(page, live_server, "owner1", "demo")
    page.goto(f"{live_server.url}/keys/{key.pk}/")
    page.get_by_role("link", name="Request exception").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Request an exception for billing-export")
    page.get_by_label("Transitional (migrating away)").check()
    page.get_by_label("Business justification").fill(JUSTIFICATION)
    page.get_by_label("Blast radius").select_option("medium")
    page.get_by_label("Replaceability").select_option("with_effort")
    page.get_by_label("Stored in a secret manager").check()
    page.get_by_label("Migration target").select_option(MigrationTarget.OAUTH)
    page.get_by_role("button", name="Request exception").click()
    expect(page.locator(".alert-error")).to_contain_text("correct the fields")
    expect(page.locator(".field-invalid")).to_contain_text("Give the end date.")
    page.get_by_label("End date").fill((today + datetime.timedelta(days=60)).isoformat())
    page.get_by_role("button", name="Request exception").click()
    expect(page.get_by_role("status")).to_contain_text("compliance decides it")
    exception = KeyException.objects.get(key=key)
    assert exception.status == ExceptionStatus.REQUESTED and exception.requested_by == owner

    # The owner is not offered the approval of their own request.
    actions = page.get_by_role("region", name="Actions")
    expect(actions.locator("summary", has_text="Withdraw")).to_be_visible()
    expect(actions.locator("summary", has_text="Approve")).to_have_count(0)
    log_out(page)

    # An admin is not compliance: the approval is refused with a clear message.
    login(page, live_server, "admin", "demo")
    page.goto(f"{live_server.url}/keys/exceptions/{exception.pk}/")
    expect(page.get_by_role("region", name="Actions").locator("summary", has_text="Approve")).to_have_count(0)
    page.evaluate(
        """([url, token]) => {
            const form = document.createElement('form');
            form.method = 'post'; form.action = url;
            form.innerHTML = `<input type="hidden" name="csrfmiddlewaretoken" value="${token}">`;
            document.body.appendChild(form); form.submit();
        }""",
        [f"/keys/exceptions/{exception.pk}/approve/",
         page.locator("input[name='csrfmiddlewaretoken']").first.get_attribute("value")],
    )
    expect(page.locator(".alert-error").first).to_contain_text("Only compliance can approve or reject an exception.")
    exception.refresh_from_db()
    assert exception.status == ExceptionStatus.REQUESTED
    log_out(page)

    # Compliance approves it.
    login(page, live_server, "compliance", "demo")
    page.goto(f"{live_server.url}/keys/exceptions/")
    page.get_by_role("link", name="billing-export").first.wait_for()
    page.goto(f"{live_server.url}/keys/exceptions/{exception.pk}/")
    actions = page.get_by_role("region", name="Actions")
    actions.locator("summary", has_text="Approve").click()
    actions.locator("#action-approve").get_by_label("Note (optional)").fill("Migration plan is credible.")
    actions.locator("#action-approve").get_by_role("button", name="Approve").click()
    expect(page.get_by_role("status")).to_contain_text("Approved")
    expect(page.locator(".page-header")).to_contain_text("Approved")
    exception.refresh_from_db()
    assert exception.status == ExceptionStatus.APPROVED and exception.decided_by == compliance
    log_out(page)

    # The end date passes without the migration; the daily sweep marks the exception expired.
    KeyException.objects.filter(pk=exception.pk).update(end_date=today - datetime.timedelta(days=1))
    assert exception_tasks.sweep_lapsed_exceptions() == [exception.pk]
    exception.refresh_from_db()
    assert exception.status == ExceptionStatus.EXPIRED and exception.lapsed_on == today

    # The next campaign covers only keys due for review, yet the key is in it, flagged.
    factories.ApiKeyFactory(owner=owner, label="due-key", next_review_on=today)
    campaign = campaigns.create_campaign(actor=compliance, name="Due keys", due_for_review_only=True)
    campaigns.launch_campaign(campaign, actor=compliance)
    item = campaign.items.get(key=key)
    assert item.exception == exception and item.exception_lapsed

    login(page, live_server, "owner1", "demo")
    page.goto(f"{live_server.url}/inbox/")
    row = page.locator(f"#item-{item.pk}")
    expect(row).to_contain_text("billing-export")
    flagged = row.get_by_role("region", name="Exception")
    expect(flagged).to_contain_text("Exception lapsed")
    expect(flagged).to_contain_text(JUSTIFICATION)
    expect(flagged).to_contain_text("Stored in a secret manager")

    panel = row.locator("details.decision-panel").filter(has=page.locator("input[name='decision'][value='confirm']"))
    panel.locator("summary").click()
    form = panel.locator("form")
    form.get_by_label("I affirm the purpose, scope and ownership are still right").check()
    form.locator("textarea[name='justification']").fill("Migration slipped; v5 ships next month.")
    form.locator("button[type='submit']").click()
    row = page.locator(f"#item-{item.pk}")
    expect(row.locator(".field-error")).to_contain_text("re-affirm its justification")
    item.refresh_from_db()
    assert item.status == ItemStatus.PENDING

    form = row.locator("details.decision-panel[open] form")
    form.get_by_label("I re-affirm the justification of the exception and its compensating controls").check()
    form.locator("button[type='submit']").click()
    expect(page.locator(f"#item-{item.pk} .badge-item-confirmed")).to_be_visible()
    item.refresh_from_db()
    key.refresh_from_db()
    assert item.status == ItemStatus.CONFIRMED and item.exception_reaffirmed
    assert key.next_review_on == today + datetime.timedelta(days=campaign.exception_review_cadence_days)

    # The key's history shows the exception's approval chain.
    page.goto(f"{live_server.url}/keys/{key.pk}/")
    history = page.get_by_role("region", name="History")
    expect(history).to_contain_text("approved: Migration plan is credible.")
    expect(history).to_contain_text("expired: migration not done")
    expect(page.get_by_role("region", name="Exceptions")).to_contain_text("Expired")
