"""Journeys through the key pages in a real browser, on the demo data of `seed_demo`.

An owner sees exactly their keys, reads a key's page and history, and gets 404 for someone else's
key; an admin sees every key, filters the list by status and approves a pending key from its page.
"""

import re

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from playwright.sync_api import expect

from keys.choices import KeyStatus, LifecycleAction
from keys.models import ApiKey

from .conftest import login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

KEY_PATH = re.compile(r"^/keys/(\d+)/$")


@pytest.fixture
def demo(transactional_db):
    # pytest-django runs with DEBUG off, which seed_demo refuses without its explicit flag.
    call_command("seed_demo", allow_production=True)
    return {user.username: user for user in get_user_model().objects.all()}


def key_ids_on_page(page) -> list[int]:
    hrefs = page.locator("#key-table table a[href]").evaluate_all("links => links.map(a => a.getAttribute('href'))")
    return [int(match.group(1)) for href in hrefs if (match := KEY_PATH.match(href))]


def listed_key_ids(page) -> set[int]:
    """Every key id in the list, following the table's pagination from the current page."""
    ids = set(key_ids_on_page(page))
    for _ in range(100):
        next_link = page.locator("#key-table a[rel='next']")
        if next_link.count() == 0:
            return ids
        next_link.click()
        page.wait_for_load_state()
        ids.update(key_ids_on_page(page))
    raise AssertionError("the key list never reached its last page")


def expect_timeline_shows_events(page, key: ApiKey) -> None:
    history = page.get_by_role("region", name="History")
    expect(history).to_be_visible()
    events = list(key.events.order_by("at"))
    assert events, f"seed_demo recorded no lifecycle event for {key}"
    entries = history.locator("li.timeline-entry")
    for event in events:
        expect(entries.filter(has_text=event.get_action_display()).filter(has_text=event.reason).first).to_be_visible()


def test_owner_sees_only_their_keys(page, live_server, demo):
    owner1 = demo["owner1"]
    own_ids = set(ApiKey.objects.visible_to(owner1).values_list("pk", flat=True))
    assert own_ids, "seed_demo gave owner1 no keys"
    assert own_ids != set(ApiKey.objects.values_list("pk", flat=True)), "owner1 should not own every demo key"

    login(page, live_server, "owner1", "demo")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Keys").click()
    expect(page.get_by_role("heading", name="API keys", level=1)).to_be_visible()
    assert listed_key_ids(page) == own_ids

    key = ApiKey.objects.filter(owner=owner1).order_by("pk").first()
    page.goto(f"{live_server.url}/keys/")
    page.locator("#key-table").get_by_role("link", name=key.label, exact=True).first.click()
    expect(page).to_have_url(f"{live_server.url}/keys/{key.pk}/")
    expect(page.get_by_role("heading", level=1)).to_contain_text(key.label)
    expect(page.get_by_text(key.workflow.customer.name).first).to_be_visible()
    expect_timeline_shows_events(page, key)
    expect(page.get_by_role("region", name="Actions")).to_have_count(0)
    assert key.fingerprint  # shown on the page; the secret never existed here to show

    others = ApiKey.objects.exclude(pk__in=own_ids)
    for other in (others.order_by("pk").first(), others.order_by("-pk").first()):
        response = page.goto(f"{live_server.url}/keys/{other.pk}/")
        assert response.status == 404, f"owner1 opened {other} (owned by {other.owner})"
        expect(page.get_by_text(other.label, exact=True)).to_have_count(0)


def test_admin_filters_by_status_and_approves_a_pending_key(page, live_server, demo):
    admin = demo["admin"]
    pending = ApiKey.objects.filter(status=KeyStatus.PENDING).exclude(owner=admin)
    pending_ids = set(ApiKey.objects.filter(status=KeyStatus.PENDING).values_list("pk", flat=True))
    assert pending.exists(), "seed_demo made no pending key to approve"

    login(page, live_server, "admin", "demo")
    page.goto(f"{live_server.url}/keys/")
    expect(page.get_by_role("heading", name="API keys", level=1)).to_be_visible()
    assert listed_key_ids(page) == set(ApiKey.objects.values_list("pk", flat=True))

    page.goto(f"{live_server.url}/keys/")
    page.get_by_label("Status", exact=True).select_option(KeyStatus.PENDING)
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"[?&]status=pending"))
    rows = page.locator("#key-table table tbody tr")
    expect(rows).to_have_count(len(pending_ids))
    for row in rows.all():
        expect(row).to_contain_text(KeyStatus.PENDING.label)
    assert set(key_ids_on_page(page)) == pending_ids

    key = pending.order_by("pk").first()
    page.locator(f"#key-table a[href='/keys/{key.pk}/']").first.click()
    expect(page).to_have_url(f"{live_server.url}/keys/{key.pk}/")
    expect(page.locator(".page-header")).to_contain_text(KeyStatus.PENDING.label)

    actions = page.get_by_role("region", name="Actions")
    actions.locator("summary", has_text="Approve").click()
    actions.get_by_label("Reference").fill("CHG-4242")
    actions.get_by_role("button", name="Approve", exact=True).click()

    expect(page).to_have_url(f"{live_server.url}/keys/{key.pk}/")
    expect(page.get_by_role("status")).to_contain_text(f"Approve: done for {key.label}")
    expect(page.locator(".page-header")).to_contain_text(KeyStatus.ACTIVE.label)
    newest = page.get_by_role("region", name="History").locator("li.timeline-entry").first
    expect(newest).to_contain_text("Approved")
    expect(newest).to_contain_text(f"{KeyStatus.PENDING.label} → {KeyStatus.ACTIVE.label}")
    expect(newest).to_contain_text("by admin")
    expect(newest).to_contain_text("CHG-4242")

    key.refresh_from_db()
    assert key.status == KeyStatus.ACTIVE
    assert key.approved_by == admin
    assert key.approval_reference == "CHG-4242"
    assert key.events.filter(action=LifecycleAction.APPROVE, actor=admin).count() == 1
