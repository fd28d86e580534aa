"""Compliance asks for a campaign report in a real browser, watches it render, and downloads the PDF.

The export renders on a real Celery worker (in a thread, in-memory broker) so the page's htmx
progress panel is seen moving from queued to done before the download link appears.
"""

import io
import re

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from playwright.sync_api import expect
from pypdf import PdfReader

from attestations.choices import DefaultAction
from attestations.models import EvidenceExport
from attestations.services import campaigns, evidence
from tests.worker import running_worker

from .conftest import TIMEOUT_MS, login

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def closed_campaign(transactional_db, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    settings.EVIDENCE_SIGNING_PKCS12 = ""
    call_command("seed_demo", allow_production=True)
    compliance = get_user_model().objects.get(username="compliance")
    campaign = campaigns.create_campaign(actor=compliance, name="Evidence journey 2026-Q4",
                                         default_action=DefaultAction.KEEP_AND_FLAG)
    campaigns.launch_campaign(campaign, actor=compliance)
    campaigns.close_campaign(campaign, actor=compliance)
    return campaign


def test_compliance_requests_watches_and_downloads_a_campaign_report(page, live_server, closed_campaign, monkeypatch):
    monkeypatch.setattr(evidence, "CHUNK_SIZE", 2)  # several chunk tasks, so progress has steps to show
    login(page, live_server, "compliance", "demo")
    with running_worker():
        page.goto(f"{live_server.url}/campaigns/{closed_campaign.pk}/")
        page.get_by_role("button", name="Request campaign report").click()
        page.wait_for_url(re.compile(r"/exports/(\d+)/$"))
        export = EvidenceExport.objects.get(campaign=closed_campaign)
        progress = page.get_by_test_id("export-progress")
        expect(progress).to_be_visible()
        seen = {progress.get_attribute("data-status")}
        download_link = page.get_by_test_id("export-download")
        while not download_link.is_visible():
            page.wait_for_timeout(250)
            seen.add(page.get_by_test_id("export-progress").get_attribute("data-status"))
            assert "failed" not in seen, EvidenceExport.objects.get(campaign=closed_campaign).error
        seen.add(page.get_by_test_id("export-progress").get_attribute("data-status"))
    assert seen & {"queued", "rendering"} and "done" in seen, seen
    expect(page.get_by_test_id("export-status")).to_have_text("Done")
    with page.expect_download(timeout=TIMEOUT_MS) as info:
        download_link.click()
    download = info.value
    assert download.suggested_filename == f"evidence-{export.pk}-campaign.pdf"
    pdf = PdfReader(io.BytesIO(open(download.path(), "rb").read()))
    body = "\n".join(p.extract_text() for p in pdf.pages)
    export.refresh_from_db()
    assert export.status == EvidenceExport.Status.DONE and export.chunks_total > 1
    assert "Evidence journey 2026-Q4" in body and "Campaign report" in body
    assert len(pdf.pages) == export.page_count
    assert any(name.endswith(".csv") for name in pdf.attachments)


def test_compliance_asks_for_a_sample_size_and_sees_it_refused_then_kept(page, live_server, closed_campaign):
    login(page, live_server, "compliance", "demo")
    page.goto(f"{live_server.url}/exports/new/")
    page.get_by_label("Kind").select_option("campaign")
    page.get_by_label("Campaign").select_option(str(closed_campaign.pk))
    size = page.get_by_label("Sample size")
    size.fill("0")
    # The browser refuses it itself (the field says 1 to 1,000); without that check, the server does.
    assert size.evaluate("input => input.validity.rangeUnderflow")
    size.evaluate("input => { input.form.noValidate = true; }")
    page.get_by_role("button", name="Request export").click()
    expect(page.get_by_role("alert").filter(has_text="whole number of items from 1 to 1,000")).to_be_visible()
    assert not EvidenceExport.objects.filter(campaign=closed_campaign).exists()
    page.get_by_label("Sample size").fill("7")
    page.get_by_label("Print every item").check()
    page.get_by_role("button", name="Request export").click()
    page.wait_for_url(re.compile(r"/exports/(\d+)/$"))
    export = EvidenceExport.objects.get(campaign=closed_campaign)
    assert export.parameters["sample_size"] == 7 and export.parameters["print_all_items"] is True
    expect(page.get_by_test_id("export-items-printed")).to_contain_text("every item")
    expect(page.get_by_text(export.parameters["sample_seed"], exact=True)).to_be_visible()
