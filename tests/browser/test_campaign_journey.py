"""A whole attestation campaign in a real browser, on the demo data of `seed_demo`.

Compliance creates and launches a campaign over Northwind Logistics' and Acme Payments' production
keys; owner1 confirms one key and releases another in the inbox, each in place without a page
reload; owner2 does nothing; compliance closes the campaign, and owner2's keys get the default
action. Every step is then checked in the database and on each key's history timeline.
"""

import datetime
import re

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from playwright.sync_api import expect

from attestations.choices import CampaignStatus, DefaultAction, ItemStatus
from attestations.models import AttestationItem, Campaign
from attestations.services import campaigns
from keys.choices import Environment, KeyStatus, LifecycleAction, RevocationReason
from keys.models import ApiKey, Customer
from keys.services import releases

from .conftest import login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CAMPAIGN = "Browser journey 2026-Q4"
CUSTOMERS = ["Northwind Logistics", "Acme Payments"]
CONFIRMED = "tracking-ingest"
RELEASED = "payouts-backfill"  # a manual issuing system: revocation needs no webhook call
CAMPAIGN_PATH = re.compile(r"/campaigns/(\d+)/$")


@pytest.fixture
def demo(transactional_db):
    # pytest-django runs with DEBUG off, which seed_demo refuses without its explicit flag.
    call_command("seed_demo", allow_production=True)
    return {user.username: user for user in get_user_model().objects.all()}


def log_out(page):
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(re.compile(r"/login/"))


def mark_page(page):
    """A marker that only survives as long as the document does: a full reload would drop it."""
    page.evaluate("window.__campaignJourney = 'same document'")


def expect_same_document(page):
    assert page.evaluate("window.__campaignJourney") == "same document", "the page reloaded"


def decide_in_inbox(page, item: AttestationItem, decision: str, *, justification: str, affirm: bool = False,
                    reason: str = ""):
    row = page.locator(f"#item-{item.pk}")
    expect(row).to_contain_text(item.key.label)
    panel = row.locator("details.decision-panel").filter(has=page.locator(f"input[name='decision'][value='{decision}']"))
    panel.locator("summary").click()
    form = panel.locator("form")
    if affirm:
        form.get_by_label("I affirm the purpose, scope and ownership are still right").check()
    if reason:
        form.get_by_label("Reason").select_option(label=reason)
    form.locator("textarea[name='justification']").fill(justification)
    form.locator("button[type='submit']").click()
    return page.locator(f"#item-{item.pk}")


def expect_timeline_entry(page, live_server, key: ApiKey, title: str, reason_part: str, actor: str):
    page.goto(f"{live_server.url}/keys/{key.pk}/")
    history = page.get_by_role("region", name="History")
    entry = history.locator("li.timeline-entry").filter(has_text=title).filter(has_text=reason_part)
    expect(entry.first).to_be_visible()
    expect(entry.first).to_contain_text(f"by {actor}")


def test_a_whole_campaign(page, live_server, demo):
    owner1, owner2, compliance = demo["owner1"], demo["owner2"], demo["compliance"]
    customers = Customer.objects.filter(name__in=CUSTOMERS)
    assert customers.count() == 2, "seed_demo's customers changed"

    # Compliance creates the campaign through the form.
    login(page, live_server, "compliance", "demo")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Campaigns").click()
    expect(page.get_by_role("heading", name="Attestation campaigns", level=1)).to_be_visible()
    page.get_by_role("link", name="New campaign").click()
    expect(page.get_by_role("heading", name="New campaign", level=1)).to_be_visible()

    page.get_by_label(re.compile(r"^Name( \*)?$")).fill(CAMPAIGN)
    page.get_by_label("Customers").select_option(label=CUSTOMERS)
    page.locator("#campaign-scope").get_by_label(Environment.PRODUCTION.label, exact=True).check()
    page.get_by_label("On no response").select_option(DefaultAction.SUSPEND)
    page.get_by_label("Reminder days").fill("3, 7")
    page.get_by_label("Escalation day").fill("10")

    unsaved = Campaign(environments=[Environment.PRODUCTION])
    expected_scope = campaigns.scope_queryset(unsaved).filter(workflow__customer__in=customers)
    in_scope = expected_scope.count()
    assert expected_scope.filter(owner=owner1).count() >= 2 and expected_scope.filter(owner=owner2).exists()
    expect(page.locator("#scope-preview")).to_contain_text(f"{in_scope} live keys in scope")

    page.get_by_role("button", name="Create draft").click()
    expect(page).to_have_url(CAMPAIGN_PATH)
    expect(page.get_by_role("status")).to_contain_text(f"Created the draft campaign {CAMPAIGN}")
    campaign = Campaign.objects.get(name=CAMPAIGN)
    assert campaign.status == CampaignStatus.DRAFT
    assert set(campaign.customers.values_list("name", flat=True)) == set(CUSTOMERS)
    assert campaign.environments == [Environment.PRODUCTION]
    assert campaign.reminder_days == [3, 7]

    # ... and launches it.
    actions = page.get_by_role("region", name="Actions")
    actions.locator("summary", has_text="Launch").click()
    actions.locator("#action-launch").get_by_role("button", name="Launch").click()
    expect(page.get_by_role("status")).to_contain_text(f"Launched {CAMPAIGN}: {in_scope} items")
    expect(page.locator(".page-header")).to_contain_text(CampaignStatus.ACTIVE.label)
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.ACTIVE
    assert set(campaign.items.values_list("key_id", flat=True)) == set(expected_scope.values_list("pk", flat=True))
    items = {item.key.label: item for item in campaign.items.select_related("key")}
    confirmed_item, released_item = items[CONFIRMED], items[RELEASED]
    assert confirmed_item.reviewer == owner1 and released_item.reviewer == owner1
    confirmed_key, released_key = confirmed_item.key, released_item.key
    review_before = confirmed_key.next_review_on
    owner2_items = list(campaign.items.filter(reviewer=owner2).select_related("key"))
    assert owner2_items
    log_out(page)

    # owner1 confirms one key and releases another, each in place.
    login(page, live_server, "owner1", "demo")
    page.goto(f"{live_server.url}/inbox/")
    expect(page.get_by_role("heading", name="Inbox", level=1)).to_be_visible()
    expect(page.locator(f"#item-{confirmed_item.pk}")).to_be_visible()
    mark_page(page)

    row = decide_in_inbox(page, confirmed_item, "confirm", justification="Feeds the tracking portal every hour.",
                          affirm=True)
    expect(row.locator(".badge-item-confirmed")).to_be_visible()
    expect(row).to_contain_text(ItemStatus.CONFIRMED.label)
    expect(row.locator("details.decision-panel")).to_have_count(0)
    expect_same_document(page)

    row = decide_in_inbox(page, released_item, "release", reason="No longer needed",
                          justification="Backfill finished; no longer needed.")
    expect(row.locator(".badge-item-released")).to_be_visible()
    expect(row).to_contain_text(ItemStatus.RELEASED.label)
    expect_same_document(page)
    assert page.url == f"{live_server.url}/inbox/"
    log_out(page)

    # owner2 does nothing; compliance closes the campaign from its page.
    login(page, live_server, "compliance", "demo")
    page.goto(f"{live_server.url}{campaign.get_absolute_url()}")
    expect(page.get_by_test_id("decided-count")).to_have_text("2")
    actions = page.get_by_role("region", name="Actions")
    expect(actions.locator("summary", has_text="Launch")).to_have_count(0)
    actions.locator("summary", has_text="Close").click()
    actions.locator("#action-close").get_by_role("button", name="Close").click()
    expect(page.get_by_role("status")).to_contain_text(f"Closed {CAMPAIGN}: {in_scope - 2} undecided items")
    expect(page.locator(".page-header")).to_contain_text(CampaignStatus.CLOSED.label)
    expect(page.get_by_role("region", name="Actions")).to_have_count(0)
    expect(page.get_by_test_id("pending-count")).to_have_text("0")

    # The database: every outcome, with its history.
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.CLOSED
    assert campaign.closed_by == compliance

    confirmed_key.refresh_from_db()
    confirmed_item.refresh_from_db()
    assert confirmed_item.status == ItemStatus.CONFIRMED and confirmed_item.decided_by == owner1
    assert confirmed_key.status == KeyStatus.ACTIVE
    assert confirmed_key.next_review_on > (review_before or confirmed_key.issued_on)
    assert confirmed_key.last_attested_at is not None
    attest = confirmed_key.events.get(action=LifecycleAction.ATTEST)
    assert attest.actor == owner1 and CAMPAIGN in attest.reason

    released_key.refresh_from_db()
    released_item.refresh_from_db()
    assert released_item.status == ItemStatus.RELEASED
    # Released: suspended for the grace window first, revoked when the window ends without traffic.
    assert released_key.status == KeyStatus.SUSPENDED
    release = releases.open_release(released_key)
    assert release is not None and release.requested_by == owner1
    suspend = released_key.events.get(action=LifecycleAction.RELEASE_GRACE)
    assert suspend.actor == owner1 and "Backfill finished" in suspend.reason
    assert releases.finalise_due_releases(now=release.ends_at + datetime.timedelta(seconds=1))["revoked"] == 1
    released_key.refresh_from_db()
    assert released_key.status == KeyStatus.REVOKED
    assert released_key.revocation_reason == RevocationReason.RELEASED
    revoke = released_key.events.get(action=LifecycleAction.REVOKE)
    assert revoke.actor.username == "system" and "Backfill finished" in revoke.reason

    for item in owner2_items:
        item.refresh_from_db()
        key = item.key
        key.refresh_from_db()
        assert item.status == ItemStatus.EXPIRED
        assert item.default_action_applied == DefaultAction.SUSPEND
        assert key.status == KeyStatus.SUSPENDED, key.label
        assert key.unattested
        assert key.events.filter(action=LifecycleAction.FLAG, actor=compliance, reason__contains=CAMPAIGN).exists()
        assert item.history.filter(history_change_reason__contains="no response").exists()
    suspended = [i.key for i in owner2_items if i.key.events.filter(action=LifecycleAction.SUSPEND,
                                                                      reason__contains=CAMPAIGN).exists()]
    assert suspended, "no owner2 key was active before the close"

    for item in (confirmed_item, released_item):
        assert list(item.history.order_by("history_date").values_list("history_user", flat=True)) == [
            compliance.pk, owner1.pk
        ]

    # The key pages' timelines, as compliance sees them.
    expect_timeline_entry(page, live_server, confirmed_key, LifecycleAction.ATTEST.label, CAMPAIGN, "owner1")
    expect_timeline_entry(page, live_server, released_key, LifecycleAction.RELEASE_GRACE.label, "Backfill finished", "owner1")
    expect_timeline_entry(page, live_server, released_key, LifecycleAction.REVOKE.label, "grace window", "system")
    expect(page.locator(".page-header")).to_contain_text(KeyStatus.REVOKED.label)
    for key in suspended:
        expect_timeline_entry(page, live_server, key, LifecycleAction.SUSPEND.label, CAMPAIGN, "compliance")
        expect_timeline_entry(page, live_server, key, LifecycleAction.FLAG.label, CAMPAIGN, "compliance")
