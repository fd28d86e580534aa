"""A two-stage review in a real browser, on the demo data of `seed_demo`.

Compliance creates a campaign whose first stage is the keys' owners and whose second is compliance, for
high and critical keys' confirmations only. owner1 confirms a high and a critical key (they move on to
compliance) and releases another high key with a reason code (final: releases do not move on); owner2
confirms a critical key. Compliance sees the owners' decisions with what they saw, signs one off and
overrules another, then closes the campaign: owner2's confirmation, never signed off, is kept. The
campaign report, rendered on a real worker, prints both stages' decisions and reason codes, and its
attached CSV has each stage's columns.
"""

import csv
import io
import re

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from playwright.sync_api import expect
from pypdf import PdfReader

from attestations.choices import ItemStatus
from attestations.models import Campaign, EvidenceExport
from keys.choices import KeyStatus
from tests.worker import running_worker

from .conftest import ARTIFACTS, TIMEOUT_MS, login
from .test_campaign_journey import decide_in_inbox, log_out

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

CAMPAIGN = "Two-stage review 2026-Q4"
CUSTOMERS = ["Northwind Logistics", "Acme Payments"]
SIGNED_OFF, OVERRULED, RELEASED, UNSIGNED = ("tracking-ingest", "payouts-reconcile", "payouts-backfill",
                                             "customs-submit")
CONFIRM_TEXT = "Feeds the tracking portal every hour."


@pytest.fixture
def demo(transactional_db, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    settings.EVIDENCE_SIGNING_PKCS12 = ""
    call_command("seed_demo", allow_production=True)
    return {user.username: user for user in get_user_model().objects.all()}


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"staged-review-{name}.png"), full_page=True)


def test_a_two_stage_review(page, live_server, demo):
    # Compliance creates the campaign: stage 1 the owners, stage 2 compliance for high and critical confirmations.
    login(page, live_server, "compliance", "demo")
    page.goto(f"{live_server.url}/campaigns/new/")
    page.get_by_label(re.compile(r"^Name( \*)?$")).fill(CAMPAIGN)
    page.get_by_label("Customers").select_option(label=CUSTOMERS)
    page.locator("#campaign-scope").get_by_label("Production", exact=True).check()
    stage1, stage2 = page.locator("#stage-1"), page.locator("#stage-2")
    stage1.get_by_label("Reviewer", exact=True).select_option("owner")
    stage1.get_by_label("Duration (days)", exact=True).fill("10")
    stage2.get_by_label("Reviewer", exact=True).select_option("compliance")
    stage2.get_by_label("Duration (days)", exact=True).fill("5")
    for tier in ("High", "Critical"):
        stage2.get_by_role("group", name="Risk tiers that enter this stage").get_by_label(tier, exact=True).check()
    stage2.get_by_role("group", name="Decisions of stage 1 that move on").get_by_label("Confirm", exact=True).check()
    page.get_by_label("When a later stage ends without a sign-off").select_option("keep")
    shot(page, "1-form")
    page.get_by_role("button", name="Create draft").click()
    expect(page).to_have_url(re.compile(r"/campaigns/(\d+)/$"))
    campaign = Campaign.objects.get(name=CAMPAIGN)
    assert campaign.stages == [
        {"reviewer": "owner", "fallback": "compliance", "duration_days": 10, "risk_tiers": [], "moves_on": []},
        {"reviewer": "compliance", "fallback": "compliance", "duration_days": 5, "risk_tiers": ["high", "critical"],
         "moves_on": ["confirm"]},
    ]
    assert campaign.duration_days == 15
    expect(page.get_by_text("Stage 2: Compliance")).to_be_visible()
    actions = page.get_by_role("region", name="Actions")
    actions.locator("summary", has_text="Launch").click()
    actions.locator("#action-launch").get_by_role("button", name="Launch").click()
    expect(page.get_by_role("status")).to_contain_text(f"Launched {CAMPAIGN}")
    items = {item.key.label: item for item in campaign.items.select_related("key")}
    log_out(page)

    # owner1: two confirmations that move on to compliance, a release with a reason code that is final.
    login(page, live_server, "owner1", "demo")
    page.goto(f"{live_server.url}/inbox/")
    expect(page.locator(f"#item-{items[SIGNED_OFF].pk}")).to_contain_text("Stage 1 of 2")
    decide_in_inbox(page, items[SIGNED_OFF], "confirm", justification=CONFIRM_TEXT, affirm=True)
    decide_in_inbox(page, items[OVERRULED], "confirm", justification="Daily reconciliation job.", affirm=True)
    row = decide_in_inbox(page, items[RELEASED], "release", reason="Replaced by another key",
                          justification="The new payouts client uses OAuth.")
    expect(row.locator(".badge-item-released")).to_be_visible()
    for label in (SIGNED_OFF, OVERRULED):
        items[label].refresh_from_db()
        assert (items[label].status, items[label].stage) == (ItemStatus.PENDING, 2)
    items[RELEASED].refresh_from_db()
    assert (items[RELEASED].status, items[RELEASED].reason) == (ItemStatus.RELEASED, "replaced")
    log_out(page)

    login(page, live_server, "owner2", "demo")
    page.goto(f"{live_server.url}/inbox/")
    decide_in_inbox(page, items[UNSIGNED], "confirm", justification="Customs filings run on it.", affirm=True)
    log_out(page)

    # Compliance sees the owners' decisions and what they saw, signs one off and overrules another.
    login(page, live_server, "compliance", "demo")
    page.goto(f"{live_server.url}/inbox/")
    row = page.locator(f"#item-{items[SIGNED_OFF].pk}")
    expect(row).to_contain_text("Stage 2 of 2")
    trail = row.get_by_role("list", name="Decisions of earlier stages")
    expect(trail).to_contain_text("Stage 1")
    expect(trail).to_contain_text("owner1")
    expect(trail).to_contain_text(CONFIRM_TEXT)
    expect(trail).to_contain_text("They saw")
    shot(page, "2-compliance-inbox")
    decide_in_inbox(page, items[SIGNED_OFF], "confirm", justification="Scopes match the workflow.", affirm=True)
    decide_in_inbox(page, items[OVERRULED], "release", reason="Security concern",
                    justification="Full payout scope for a reconciliation job.")
    expect(page.locator(f"#item-{items[OVERRULED].pk}").locator(".badge-item-released")).to_be_visible()

    # ... and closes the campaign: owner2's confirmation was never signed off and is kept.
    page.goto(f"{live_server.url}{campaign.get_absolute_url()}")
    actions = page.get_by_role("region", name="Actions")
    actions.locator("summary", has_text="Close").click()
    actions.locator("#action-close").get_by_role("button", name="Close").click()
    expect(page.get_by_role("status")).to_contain_text("kept the earlier decision")
    shot(page, "3-closed")

    for item in items.values():
        item.refresh_from_db()
    signed, overruled, unsigned = items[SIGNED_OFF], items[OVERRULED], items[UNSIGNED]
    assert (signed.status, signed.decided_by.username) == (ItemStatus.CONFIRMED, "compliance")
    assert [(d["stage"], d["by"]) for d in signed.decisions] == [(1, "owner1"), (2, "compliance")]
    assert (overruled.status, overruled.reason) == (ItemStatus.RELEASED, "security")
    overruled.key.refresh_from_db()
    assert overruled.key.status == KeyStatus.SUSPENDED  # its grace window, as any release
    assert (unsigned.status, unsigned.kept_without_signoff, unsigned.decided_by.username) == (
        ItemStatus.CONFIRMED, True, "owner2")

    # The campaign report prints both stages; its CSV has each stage's columns.
    with running_worker():
        page.get_by_role("button", name="Request campaign report").click()
        page.wait_for_url(re.compile(r"/exports/(\d+)/$"))
        download_link = page.get_by_test_id("export-download")
        while not download_link.is_visible():
            page.wait_for_timeout(250)
            export = EvidenceExport.objects.get(campaign=campaign)
            assert export.status != EvidenceExport.Status.FAILED, export.error
    with page.expect_download(timeout=TIMEOUT_MS) as info:
        download_link.click()
    pdf = PdfReader(io.BytesIO(open(info.value.path(), "rb").read()))
    text = " ".join(" ".join(p.extract_text().split()) for p in pdf.pages)
    for fragment in ("Stage 1: The key's owner", "Stage 2: Compliance", "Security concern", "Replaced by another key",
                     "without stage 2 sign-off"):
        assert fragment in text, fragment
    csv_name = next(name for name in pdf.attachments if name.endswith(".csv"))
    rows = {row["key_label"]: row for row in csv.DictReader(io.StringIO(pdf.attachments[csv_name][0].decode()))}
    assert (rows[SIGNED_OFF]["stage1_by"], rows[SIGNED_OFF]["stage2_by"]) == ("owner1", "compliance")
    assert (rows[OVERRULED]["stage1_decision"], rows[OVERRULED]["stage2_decision"]) == ("confirm", "release")
    assert rows[OVERRULED]["stage2_reason"] == "security" and rows[OVERRULED]["reason"] == "security"
    assert (rows[RELEASED]["stage1_reason"], rows[RELEASED]["stage2_decision"]) == ("replaced", "")
    assert rows[UNSIGNED]["kept_without_signoff"] == "True"
