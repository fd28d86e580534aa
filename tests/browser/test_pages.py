"""Every page of the portal as each role sees it, at a desktop and a phone size, on the demo data.

For admin, compliance, owner1, owner2, the auditor, a customer contact and an anonymous visitor, every page the role
reaches (lists, a detail page of each kind of object, forms, and forms sent empty so they show their
errors) is checked for template source or a literal "None" in the text, for sideways scrolling of the
page, for the main navigation collapsing into a menu on the phone, and for WCAG 2.1 A/AA violations
(axe-core). A screenshot of each page at each size is kept under ``test-artifacts/pages/<role>/``.

Objects are found in the database, so a richer demo only adds pages; a kind of object the demo lacks
is created through its service first. Every problem of every page is collected and reported together.
"""

import datetime
import re
from dataclasses import dataclass

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core import mail
from django.core.management import call_command
from django.test.signals import template_rendered
from django.urls import reverse
from django.utils import timezone

from attestations.choices import CampaignStatus, ItemStatus, TransferStatus
from attestations.models import AttestationItem, Campaign, EvidenceExport, OwnershipTransfer
from attestations.services import campaigns, decisions, exports
from contacts import access
from contacts.models import CustomerContact
from core import roles
from core.auditors import services as auditors
from identity.models import ScimToken
from identity.services import scim_tokens
from keys.choices import BlastRadius, ExceptionKind, KeyStatus, MigrationTarget, Replaceability
from keys.models import ApiKey, Exposure, IntegrationToken, KeyException
from keys.services import exposures, key_exceptions, tokens

from .conftest import ARTIFACTS, TIMEOUT_MS, login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SIZES = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
SOURCE_MARKERS = ("{#", "#}", "{%", "%}", "{{", "}}")
NONE_WORD = re.compile(r"\bNone\b")
CODE = re.compile(r"one-time code for the keys portal is (\d{6})")
SHOTS = ARTIFACTS / "pages"

# Templates no page visit here renders: PDF evidence (WeasyPrint), the API docs (excluded), htmx fragments
# answering a click, a lock-out, a second factor's prompt (needs an enrolled device), pages of more items than
# one page holds, review trends (need closed campaigns), and single sign-on's refusal (needs an identity provider:
# tests/browser/test_sso_journey.py renders it through one and checks it with axe).
NOT_PAGES = re.compile(
    r"^(evidence/|portal/swagger_ui\.html|registration/locked_out\.html|attestations/campaign_scope_preview\.html"
    r"|attestations/export_progress\.html|portal/two_factor_verify\.html|attestations/_inbox_pagination\.html"
    r"|portal/_line_chart\.html|identity/sso_refused\.html)"
)


@dataclass
class Page:
    name: str
    path: str
    submit_empty: bool = False  # send the page's main form with nothing filled in, to show its errors


@pytest.fixture
def demo(transactional_db, settings, live_server):
    settings.SITE_URL = live_server.url
    # pytest-django runs with DEBUG off, which seed_demo refuses without its explicit flag.
    call_command("seed_demo", allow_production=True)
    users = {user.username: user for user in get_user_model().objects.all()}
    complete_the_demo(users)
    return users


def complete_the_demo(users):
    """Create, through the services, one object of each kind the demo does not have yet."""
    admin, compliance, owner1, owner2 = (users[name] for name in ("admin", "compliance", "owner1", "owner2"))
    contact = CustomerContact.objects.filter(is_active=True).select_related("customer").first()
    if contact is None:
        from keys.models import Customer

        contact, _ = access.invite_contact(actor=admin, customer=Customer.objects.first(), name="Page Check",
                                           email="page.check@example.test")
    if not access.contact_keys(contact).exists():
        key = ApiKey.objects.filter(workflow__customer=contact.customer, status=KeyStatus.ACTIVE).first()
        if key is not None:
            access.assign_key(contact, key, actor=admin)
    # An exception before the campaign: the item of its key shows it.
    if not KeyException.objects.exists():
        key = ApiKey.objects.filter(owner=owner1, status=KeyStatus.ACTIVE).order_by("-pk").first()
        key_exceptions.request_exception(
            key, actor=owner1, kind=ExceptionKind.TRANSITIONAL, business_justification="The partner has no OAuth yet.",
            blast_radius=BlastRadius.MEDIUM, replaceability=Replaceability.WITH_EFFORT,
            migration_target=MigrationTarget.OAUTH, migration_plan="OAuth client credentials next quarter.",
            end_date=timezone.localdate() + datetime.timedelta(days=60),
        )
        key_exceptions.approve_exception(KeyException.objects.get(key=key), actor=compliance, reason="Migration planned.")
    if not Campaign.objects.filter(status=CampaignStatus.ACTIVE).exists():
        campaign = campaigns.create_campaign(actor=compliance, name="Page check 2026-Q4")
        campaigns.launch_campaign(campaign, actor=compliance)
    active = Campaign.objects.filter(status=CampaignStatus.ACTIVE).first()
    pending = AttestationItem.objects.filter(campaign=active, status=ItemStatus.PENDING, key__owner=owner1)
    pending = list(pending.order_by("pk")[:3])
    if len(pending) >= 3 and not AttestationItem.objects.exclude(status=ItemStatus.PENDING).exists():
        decisions.record_decision(pending[0], actor=owner1, decision="confirm", affirm=True,
                                  justification="Still used by the nightly sync.")
        decisions.record_decision(pending[1], actor=owner1, decision="release", reason="unused",
                                  justification="The integration was switched off.")
    # A reassignment waiting for its new owner (the inbox's transfers, the reassigned item's page).
    if pending and not OwnershipTransfer.objects.filter(status=TransferStatus.PENDING).exists():
        decisions.record_decision(pending[-1], actor=owner1, decision="reassign", to=owner2,
                                  justification="owner2's team runs this integration now.")
    if not Exposure.objects.exists():
        exposures.report_exposure(reporter=admin, source="portal", fingerprint="ab" * 32,
                                  location="https://paste.example.test/abc", notes="Found by a scanner.")
    if not IntegrationToken.objects.exists():
        from keys.models import IssuingSystem

        service = get_user_model().objects.create_user("svc-billing", email="svc-billing@example.test")
        tokens.create_token(actor=admin, name="Billing sync", acts_as=service, issuing_system=IssuingSystem.objects.first())
    if not EvidenceExport.objects.exists():
        exports.request_export(actor=compliance, kind="campaign", campaign=active)
    if not ScimToken.objects.exists():
        scim_tokens.create_token(actor=admin, name="Okta")


def staff_pages(user) -> list[Page]:
    """The portal's pages for a signed-in user: every route of the URL conf with an object of each kind
    the user may see. Pages the user may not reach are tried too and left out when refused."""
    pages = [
        Page("dashboard", "/"),
        Page("customer-key-counts", reverse("dashboard:customers")),
        Page("key-list", reverse("keys:list")),
        Page("key-list-filtered", reverse("keys:list") + "?status=active"),
        Page("key-register", reverse("keys:register")),
        Page("key-register-errors", reverse("keys:register"), submit_empty=True),
        Page("key-import", reverse("keys:import")),
        Page("exception-list", reverse("keys:exceptions")),
        Page("revocation-list", reverse("keys:revocations")),
        Page("token-list", reverse("keys:tokens")),
        Page("scim-token-list", reverse("scim-tokens")),
        Page("scim-token-errors", reverse("scim-tokens"), submit_empty=True),
        Page("exposure-list", reverse("keys:exposures")),
        Page("exposure-report", reverse("keys:exposure-report")),
        Page("exposure-report-errors", reverse("keys:exposure-report"), submit_empty=True),
        Page("release-list", reverse("keys:releases")),
        Page("inbox", reverse("attestations:inbox")),
        Page("inbox-decided", reverse("attestations:inbox") + "?status=decided"),
        Page("campaign-list", reverse("attestations:campaigns")),
        Page("campaign-form", reverse("attestations:campaign-create")),
        Page("campaign-form-errors", reverse("attestations:campaign-create"), submit_empty=True),
        Page("export-list", reverse("attestations:exports")),
        Page("export-form", reverse("attestations:export-create")),
        Page("succession-list", reverse("attestations:successions")),
        Page("contact-list", reverse("contacts:list")),
        Page("contact-invite", reverse("contacts:invite")),
        Page("contact-invite-errors", reverse("contacts:invite"), submit_empty=True),
        Page("two-factor", reverse("two-factor-setup")),
        Page("auditor-list", reverse("auditors:list")),
        Page("auditor-grant", reverse("auditors:grant")),
        Page("auditor-grant-errors", reverse("auditors:grant"), submit_empty=True),
    ]
    # An auditor reads what the middleware lets them read: under their current grant.
    setattr(user, roles.AUDITOR_GRANT_ATTRIBUTE, auditors.current_grant(user))
    keys = ApiKey.objects.visible_to(user).order_by("pk")
    for status in KeyStatus.values:
        key = keys.filter(status=status).first()
        if key is not None:
            pages.append(Page(f"key-detail-{status}", reverse("keys:detail", args=[key.pk])))
    requestable = keys.filter(status=KeyStatus.ACTIVE).first()
    if requestable is not None:
        path = reverse("keys:exception-request", args=[requestable.pk])
        pages += [Page("exception-request", path), Page("exception-request-errors", path, submit_empty=True)]
    exception = key_exceptions.visible_exceptions(user).order_by("pk").first()
    if exception is not None:
        pages.append(Page("exception-detail", reverse("keys:exception", args=[exception.pk])))
    for campaign in _one_per_status():
        pages.append(Page(f"campaign-detail-{campaign.status}", reverse("attestations:campaign", args=[campaign.pk])))
    items = AttestationItem.objects.order_by("pk")
    if not roles.reads_everything(user):
        items = items.filter(key__in=keys)
    for status in ItemStatus.values:
        item = items.filter(status=status).first()
        if item is not None:
            pages.append(Page(f"item-detail-{status}", reverse("attestations:item", args=[item.pk])))
    item = items.filter(exception__isnull=False).first()
    if item is not None:
        pages.append(Page("item-detail-exception", reverse("attestations:item", args=[item.pk])))
    export = exports.exports_visible_to(user).order_by("pk").first()
    if export is not None:
        pages.append(Page("export-detail", reverse("attestations:export", args=[export.pk])))
    contact = CustomerContact.objects.order_by("pk").first()
    if contact is not None:
        pages.append(Page("contact-detail", reverse("contacts:detail", args=[contact.pk])))
    return pages


def _one_per_status():
    seen = {}
    for campaign in Campaign.objects.order_by("pk"):
        seen.setdefault(campaign.status, campaign)
    return list(seen.values())


class Checker:
    def __init__(self, browser, live_server):
        self.browser = browser
        self.live_server = live_server
        self.problems: list[str] = []
        self.visited: dict[str, list[str]] = {}
        from axe_playwright_python.sync_playwright import Axe

        self.axe = Axe()

    def context(self, size):
        context = self.browser.new_context(viewport=SIZES[size], locale="en-GB")
        context.set_default_timeout(TIMEOUT_MS)
        return context, context.new_page()

    def open(self, page, role, size, target: Page) -> bool:
        """Visit a page; False when the role may not see it (refused or sent elsewhere)."""
        response = page.goto(self.live_server.url + target.path)
        if response is None or response.status in (403, 404, 405) or "/login/" in page.url and target.path != "/login/":
            return False
        if target.submit_empty:
            form = page.locator("main form[method='post'], main form[method='POST']").filter(
                has=page.locator("button[type='submit']")).last
            page.evaluate("document.querySelectorAll('form').forEach(form => { form.noValidate = true; })")
            with page.expect_navigation():
                form.locator("button[type='submit']").last.click()
            if not page.locator(".field-error, .errorlist, .alert-error").count():
                self.problems.append(f"{role} {size} {target.name}: the empty form shows no error")
        self.check(page, role, size, target.name)
        return True

    def check(self, page, role, size, name):
        where = f"{role} {size} {name} ({page.url.removeprefix(self.live_server.url)})"
        self.visited.setdefault(role, []).append(f"{name}-{size}")
        text = page.evaluate("document.body.innerText")
        for marker in SOURCE_MARKERS:
            if marker in text:
                start = text.index(marker)
                self.problems.append(f"{where}: template source {text[max(0, start - 40):start + 60]!r}")
                break
        for match in list(NONE_WORD.finditer(text))[:3]:
            self.problems.append(f"{where}: 'None' shown in {text[max(0, match.start() - 50):match.end() + 20]!r}")
        widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        if widths[0] > widths[1]:
            wide = page.evaluate("""() => [...document.querySelectorAll('main *')]
                .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
                .filter(e => !e.closest('.table-scroll'))
                .slice(0, 4).map(e => e.tagName.toLowerCase() + (e.className ? '.' + e.className : ''))""")
            self.problems.append(f"{where}: the page scrolls sideways ({widths[0]} > {widths[1]}): {wide}")
        if size == "phone":
            self.check_menu(page, where)
        elif page.locator("button.nav-toggle").is_visible():
            self.problems.append(f"{where}: the menu button shows on the desktop, where the navigation is in view")
        results = self.axe.run(page, options={"runOnly": {"type": "tag", "values": AXE_TAGS},
                                              "resultTypes": ["violations"]})
        for violation in results.response["violations"]:
            targets = [", ".join(node["target"]) for node in violation["nodes"][:3]]
            self.problems.append(f"{where}: axe {violation['id']} ({violation['help']}) at {targets}")
        folder = SHOTS / role
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(folder / f"{name}-{size}.png"), full_page=True)

    def check_menu(self, page, where):
        nav = page.locator("nav.mainnav")
        if not nav.count():
            return  # the contact's and the sign-in pages have no main navigation
        toggle = page.locator("button.nav-toggle")
        if not toggle.count() or not toggle.is_visible():
            self.problems.append(f"{where}: no menu button for the main navigation on the phone")
            return
        if toggle.get_attribute("aria-expanded") != "false" or nav.locator("ul").is_visible():
            self.problems.append(f"{where}: the main navigation is not collapsed on the phone")
            return
        toggle.click()
        if toggle.get_attribute("aria-expanded") != "true" or not nav.locator("ul").is_visible():
            self.problems.append(f"{where}: the menu button does not open the main navigation")
        toggle.click()


def contact_sign_in(page, live_server, contact, checker: Checker | None, size: str):
    """Open a fresh emailed link, ask for the code, enter it (checking the pages on the way)."""
    _link, token = access.send_access_link(contact)
    link_page = Page("link", reverse("contacts:access", args=[token]))
    page.goto(live_server.url + link_page.path)
    if checker:
        checker.check(page, "contact", size, "link")
    page.get_by_role("button", name="Email me a code").click()
    page.wait_for_url(re.compile(r"/contact/code/"))
    if checker:
        checker.check(page, "contact", size, "code")
    code = CODE.search([m for m in mail.outbox if contact.email in m.to][-1].body).group(1)
    field = page.get_by_label("One-time code from your email")
    field.fill(f"{(int(code) + 1) % 1_000_000:06d}")
    page.get_by_role("button", name="Continue").click()
    page.locator(".field-error").wait_for()
    if checker:
        checker.check(page, "contact", size, "code-errors")
    field.fill(code)
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(re.compile(r"/contact/$"))


def auditor_refused(page, live_server, checker: Checker, size: str):
    """The page an auditor gets for any change they send (here a saved filter, posted from the key list)."""
    page.goto(f"{live_server.url}{reverse('keys:list')}")
    with page.expect_navigation():
        page.evaluate("""() => { const form = document.createElement('form'); form.method = 'post';
            form.action = '/keys/filters/'; document.body.appendChild(form); form.submit(); }""")
    checker.check(page, "auditor", size, "refused")


def new_auditor_password(page, live_server, checker: Checker, size: str, compliance):
    """A new auditor's emailed link: the page choosing a password, its errors, the page once it is set, and a link
    that no longer works."""
    auditor = get_user_model().objects.create_user(f"page.check.{size}", email=f"page.check.{size}@audit.test")
    auditor.set_unusable_password()
    auditor.save()
    auditor.groups.add(Group.objects.get(name=roles.AUDITOR))
    link = auditors.set_password_url(auditor).removeprefix(live_server.url)
    page.goto(live_server.url + link)
    checker.check(page, "anonymous", size, "set-password")
    page.get_by_label("New password", exact=True).fill("short")
    page.get_by_label("New password confirmation").fill("different")
    page.get_by_role("button", name="Set password").click()
    page.wait_for_load_state()
    checker.check(page, "anonymous", size, "set-password-errors")
    page.get_by_label("New password", exact=True).fill("Ledger-walk-47-harbour")
    page.get_by_label("New password confirmation").fill("Ledger-walk-47-harbour")
    page.get_by_role("button", name="Set password").click()
    page.wait_for_url(re.compile(r"/account/set-password/done/$"))
    checker.check(page, "anonymous", size, "password-set")
    page.goto(live_server.url + link)
    checker.check(page, "anonymous", size, "set-password-used")


def test_every_page_as_each_role_sees_it(browser, live_server, demo):
    rendered: set[str] = set()

    def note(sender, template, **kwargs):
        if template.name:
            rendered.add(template.name)

    template_rendered.connect(note, weak=False)
    checker = Checker(browser, live_server)
    try:
        for size in SIZES:
            for role in ("admin", "compliance", "owner1", "owner2", "auditor"):
                context, page = checker.context(size)
                login(page, live_server, role, "demo")
                for target in staff_pages(demo[role]):
                    checker.open(page, role, size, target)
                if role == "auditor":
                    auditor_refused(page, live_server, checker, size)
                context.close()

            context, page = checker.context(size)
            contact = CustomerContact.objects.filter(is_active=True).select_related("customer").order_by("pk").first()
            contact_sign_in(page, live_server, contact, checker, size)
            checker.check(page, "contact", size, "home")
            page.goto(f"{live_server.url}{reverse('contacts:home')}?status=decided")
            checker.check(page, "contact", size, "home-decided")
            page.goto(f"{live_server.url}{reverse('keys:list')}")
            checker.check(page, "contact", size, "refused")
            page.goto(f"{live_server.url}{reverse('contacts:home')}")
            page.get_by_role("button", name="Sign out").click()
            page.wait_for_load_state()
            checker.check(page, "contact", size, "signed-out")
            page.goto(f"{live_server.url}{reverse('contacts:home')}")
            checker.check(page, "contact", size, "link-refused")
            context.close()

            context, page = checker.context(size)
            new_auditor_password(page, live_server, checker, size, demo["compliance"])
            page.goto(f"{live_server.url}/login/")
            checker.check(page, "anonymous", size, "login")
            page.locator("input[name='username']").fill("owner1")
            page.locator("input[name='password']").fill("not the password")
            page.locator("main button[type='submit']").click()
            page.wait_for_load_state()
            checker.check(page, "anonymous", size, "login-errors")
            context.close()
    finally:
        template_rendered.disconnect(note)

    from django.conf import settings

    template_dir = settings.BASE_DIR / "templates"
    ours = {str(path.relative_to(template_dir)) for path in template_dir.rglob("*.html")}
    unrendered = sorted(name for name in ours - rendered if not NOT_PAGES.match(name))
    if unrendered:
        checker.problems.append(f"templates no checked page rendered: {unrendered}")
    listing = "\n".join(f"  {role}: {len(names)} pages" for role, names in checker.visited.items())
    SHOTS.mkdir(parents=True, exist_ok=True)
    (SHOTS / "problems.txt").write_text("\n".join(checker.problems) + "\n" + listing + "\n")
    assert not checker.problems, f"{len(checker.problems)} problems:\n" + "\n".join(checker.problems) + "\n" + listing
