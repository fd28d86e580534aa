"""An external auditor in a real browser, on PostgreSQL: compliance grants access in the form, the auditor
chooses a password from the emailed link and signs in, opens the evidence and downloads the signed campaign
report, is refused an action, and is signed out once compliance ends the access. Every page they opened is in
the access log."""

import datetime
import io
import re

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.management import call_command
from django.utils import timezone
from playwright.sync_api import expect
from pypdf import PdfReader

from attestations.models import EvidenceExport
from core.models import AccessAction, AccessRecord, AuditorGrantState
from tests.postgres import require_postgres

from .conftest import TIMEOUT_MS, login

pytestmark = [pytest.mark.browser, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

EMAIL = "ines.moreau@audit-firm.test"
PASSWORD = "Ledger-walk-47-harbour"
LINK = re.compile(r"(http://\S+/account/set-password/\S+/)")


@pytest.fixture
def demo(transactional_db, settings, live_server, tmp_path):
    require_postgres()
    settings.SITE_URL = live_server.url  # links in emails point at the test server
    settings.MEDIA_ROOT = tmp_path
    call_command("seed_demo", allow_production=True)  # with the closed campaign's signed report in Evidence
    return EvidenceExport.objects.get(status=EvidenceExport.Status.DONE, kind=EvidenceExport.Kind.CAMPAIGN)


def test_an_auditor_reads_the_evidence_until_compliance_ends_the_access(browser, live_server, demo):
    compliance = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    auditor = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB", accept_downloads=True)
    for context in (compliance, auditor):
        context.set_default_timeout(TIMEOUT_MS)
    try:
        # Compliance grants access in the form, first with a mistake the form points at.
        page = compliance.new_page()
        login(page, live_server, "compliance", "demo")
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Auditors").click()
        page.get_by_role("link", name="Grant access").click()
        page.get_by_label("New auditor's username").fill("ines.moreau")
        page.get_by_label("New auditor's name").fill("Inès Moreau")
        page.get_by_label("New auditor's email").fill(EMAIL)
        page.get_by_label("Engagement").fill("SOC 2 Type II 2027 (ref. AF-118)")
        page.get_by_label("Last day").fill((timezone.localdate() + datetime.timedelta(days=200)).isoformat())
        page.get_by_role("button", name="Grant access").click()
        expect(page.locator(".field-error")).to_contain_text("at most 90 days")
        page.get_by_label("Last day").fill((timezone.localdate() + datetime.timedelta(days=14)).isoformat())
        page.get_by_role("button", name="Grant access").click()
        expect(page.locator(".messages, [role='status']").first).to_contain_text("ines.moreau may read")
        grant_row = page.locator("tr", has_text="ines.moreau")
        expect(grant_row).to_contain_text("Current")

        # The auditor chooses a password from the emailed link, and signs in.
        (message,) = [m for m in mail.outbox if EMAIL in m.to]
        reader = auditor.new_page()
        reader.goto(LINK.search(message.body).group(1))
        reader.get_by_label("New password", exact=True).fill(PASSWORD)
        reader.get_by_label("New password confirmation").fill(PASSWORD)
        reader.get_by_role("button", name="Set password").click()
        expect(reader.get_by_role("heading", name="Your password is set")).to_be_visible()
        login(reader, live_server, "ines.moreau", PASSWORD)
        expect(reader.locator(".badge-auditor")).to_contain_text("Read-only until")

        # Opens the evidence and downloads the signed report.
        reader.get_by_role("navigation", name="Main").get_by_role("link", name="Evidence").click()
        reader.get_by_role("link", name=re.compile(rf"#{demo.pk}\b")).first.click()
        reader.wait_for_url(re.compile(rf"/exports/{demo.pk}/$"))
        expect(reader.get_by_text(demo.sha256)).to_be_visible()
        with reader.expect_download(timeout=TIMEOUT_MS) as info:
            reader.get_by_test_id("export-download").click()
        pdf = PdfReader(io.BytesIO(open(info.value.path(), "rb").read()))
        assert "Campaign report" in "\n".join(p.extract_text() for p in pdf.pages[:2])
        # Reads a key's history, without the owner's name or address.
        reader.goto(f"{live_server.url}/keys/?status=active")
        reader.locator("#key-table tbody a").first.click()
        expect(reader.get_by_role("heading", name="History")).to_be_visible()
        expect(reader.locator("a[href^='mailto:']")).to_have_count(0)

        # Is refused an action: the request form is not theirs, nor any change sent from a page.
        assert reader.goto(f"{live_server.url}/exports/new/").status == 403
        reader.goto(f"{live_server.url}/keys/")
        reader.evaluate("""() => { const form = document.createElement('form'); form.method = 'post';
            form.action = '/keys/filters/'; document.body.appendChild(form); form.submit(); }""")
        expect(reader.get_by_role("heading", name="Not available to auditors")).to_be_visible()

        # Compliance ends the access now.
        page.reload()
        page.locator("tr", has_text="ines.moreau").get_by_placeholder("Why (optional)").fill("fieldwork done")
        page.locator("tr", has_text="ines.moreau").get_by_role("button", name="End now").click()
        expect(page.locator(".messages")).to_contain_text("The access of ines.moreau for SOC 2 Type II 2027")
        page.get_by_label("Access", exact=True).select_option("ended")
        page.get_by_role("button", name="Filter").click()
        expect(page.locator("tr", has_text="ines.moreau")).to_contain_text("Ended early")
        # Compliance ends the access: the auditor's session ended with it, their next page is the sign-in, and
        # signing in again says why.
        reader.get_by_role("navigation", name="Main").get_by_role("link", name="Evidence").click()
        reader.wait_for_url(re.compile(r"/login/"))
        reader.get_by_label("Username").fill("ines.moreau")
        reader.get_by_label("Password").fill(PASSWORD)
        reader.get_by_role("button", name="Sign in").click()
        expect(reader.locator(".messages")).to_contain_text("Your auditor access for SOC 2 Type II 2027")
        assert "/login/" in reader.url
    finally:
        compliance.close()
        auditor.close()

    ines = get_user_model().objects.get(username="ines.moreau")
    assert ines.auditor_grants.get().state == AuditorGrantState.ENDED
    visits = list(AccessRecord.objects.filter(user=ines, action=AccessAction.AUDITOR_VIEW).values_list("target", flat=True))
    assert f"GET /exports/{demo.pk}/ 200" in visits and f"GET /exports/{demo.pk}/download/ 200" in visits
    assert any(target.startswith("GET /keys/") for target in visits)
    assert AccessRecord.objects.filter(user=ines, action=AccessAction.AUDITOR_REFUSED, target="POST /keys/filters/").exists()
    assert AccessRecord.objects.filter(user=ines, action=AccessAction.EXPORT_DOWNLOADED).exists()
