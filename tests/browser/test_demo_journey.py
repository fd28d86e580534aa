"""What the README tells each demo user to try, in a real browser, on the demo data of `seed_demo`.

owner1 signs in, finds pending items in the inbox and decides one; compliance opens the closed campaign's
report in Evidence and downloads the signed PDF; the admin finds exceptions waiting for a decision.
"""

import io
import re

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from playwright.sync_api import expect
from pypdf import PdfReader

from attestations.choices import CampaignStatus, ItemStatus
from attestations.models import AttestationItem, EvidenceExport
from keys.choices import ExceptionStatus
from keys.models import KeyException

from .conftest import TIMEOUT_MS, login
from .test_campaign_journey import decide_in_inbox, log_out

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def demo(transactional_db, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    settings.EVIDENCE_SIGNING_PKCS12 = ""
    # pytest-django runs with DEBUG off, which seed_demo refuses without its explicit flag.
    call_command("seed_demo", allow_production=True)
    return {user.username: user for user in get_user_model().objects.all()}


def test_each_demo_user_has_something_to_do(page, live_server, demo):
    owner1 = demo["owner1"]
    pending = (AttestationItem.objects.decidable_by(owner1)
               .filter(status=ItemStatus.PENDING, campaign__status=CampaignStatus.ACTIVE, stage=1)
               .select_related("key").order_by("pk"))
    assert pending.count() >= 2, "seed_demo left owner1 nothing to decide"

    # owner1 decides one of their pending items in the inbox.
    login(page, live_server, "owner1", "demo")
    page.goto(f"{live_server.url}/inbox/")
    expect(page.get_by_role("heading", name="Inbox", level=1)).to_be_visible()
    expect(page.get_by_text("Nothing here")).to_have_count(0)
    for item in pending:
        expect(page.locator(f"#item-{item.pk}")).to_be_visible()
    item = next(i for i in pending if not i.exception_id)
    row = decide_in_inbox(page, item, "confirm", affirm=True,
                          justification="Still sends the customer's appointment reminders.")
    expect(row.locator("details.decision-panel")).to_have_count(0)
    item.refresh_from_db()
    assert item.decisions[-1]["by"] == "owner1" and item.decisions[-1]["decision"] == "confirm"
    log_out(page)

    # Compliance opens the closed campaign's report in Evidence and downloads it.
    export = EvidenceExport.objects.get(campaign__status=CampaignStatus.CLOSED)
    login(page, live_server, "compliance", "demo")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Evidence").click()
    page.get_by_role("link", name=f"Campaign report #{export.pk}").click()
    page.wait_for_url(re.compile(rf"/exports/{export.pk}/$"))
    expect(page.get_by_test_id("export-status")).to_have_text("Done")
    expect(page.get_by_test_id("export-progress")).to_contain_text("signed")
    with page.expect_download(timeout=TIMEOUT_MS) as info:
        page.get_by_test_id("export-download").click()
    with open(info.value.path(), "rb") as downloaded:
        pdf = PdfReader(io.BytesIO(downloaded.read()))
    text = " ".join(" ".join((p.extract_text() or "").split()) for p in pdf.pages)
    assert export.campaign.name in text
    assert any(field.get("/FT") == "/Sig" for field in (pdf.get_fields() or {}).values())
    log_out(page)

    # The admin sees exceptions waiting for a decision.
    requested = KeyException.objects.filter(status=ExceptionStatus.REQUESTED).select_related("key")
    assert requested.exists()
    login(page, live_server, "admin", "demo")
    page.goto(f"{live_server.url}/keys/exceptions/")
    expect(page.get_by_role("heading", name="Key exceptions", level=1)).to_be_visible()
    for exception in requested:
        row = page.locator("table.data-table tr").filter(has=page.get_by_role("link", name=exception.key.label,
                                                                               exact=True))
        expect(row).to_contain_text(ExceptionStatus.REQUESTED.label)
