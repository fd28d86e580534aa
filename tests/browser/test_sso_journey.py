"""Single sign-on in a real browser, through a real OpenID Connect provider (oidc-provider-mock, served on
127.0.0.1 by the test): a person in the provider's compliance group signs in on the provider's page and lands
as compliance on the page they asked for; someone in no mapped group gets the clear refusal page; a group
changed at the provider changes the role at the next sign-in; with PASSWORD_LOGIN off an employee's password
is refused and the break-glass superuser's is taken. Screenshots go to ``test-artifacts/``.
"""

import re

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from core import roles
from core.models import AccessAction, AccessRecord
from tests import factories
from tests.oidc_provider import running_provider

from .conftest import ARTIFACTS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


@pytest.fixture
def provider(transactional_db, settings, live_server):
    with running_provider() as running:
        running.configure(settings)
        running.set_user("u-carla", email="carla.diaz@example.test", preferred_username="carla", given_name="Carla",
                         family_name="Diaz", groups=["staff", "portal-compliance"])
        running.set_user("u-zed", email="zed.ng@example.test", preferred_username="zed", name="Zed Ng",
                         groups=["staff"])
        yield running


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"sso-{name}.png"), full_page=True)


def assert_accessible(page, where: str) -> None:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page, options={"runOnly": {"type": "tag", "values": AXE_TAGS}, "resultTypes": ["violations"]})
    violations = [f"{v['id']}: {v['help']}" for v in results.response["violations"]]
    assert not violations, f"{where}: {violations}"
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), f"{where} scrolls sideways"


def sign_in_at_provider(page, provider, sub: str) -> None:
    """From the portal's sign-in page: the provider's button, then the provider's own page."""
    page.get_by_role("link", name="Sign in with Example ID").click()
    page.wait_for_url(re.compile(re.escape(provider.issuer) + r"/oauth2/authorize"))
    page.locator("input[name='sub']").fill(sub)
    page.get_by_role("button", name="Authorize").click()


def test_compliance_signs_in_through_the_provider_and_an_unmapped_person_is_refused(page, live_server, provider):
    User = get_user_model()
    # Asked for the campaigns page, sent to sign in: the provider's button carries the page along.
    page.goto(f"{live_server.url}/campaigns/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/campaigns/"))
    expect(page.get_by_role("link", name="Sign in with Example ID")).to_be_visible()
    assert_accessible(page, "sign-in page")
    shot(page, "sign-in")
    sign_in_at_provider(page, provider, "u-carla")
    expect(page).to_have_url(f"{live_server.url}/campaigns/")
    expect(page.get_by_role("heading", name="Attestation campaigns", level=1)).to_be_visible()
    expect(page.locator(".usermenu")).to_contain_text("Carla Diaz")
    shot(page, "signed-in-as-compliance")
    carla = User.objects.get(username="carla")
    assert set(carla.groups.values_list("name", flat=True)) == {roles.COMPLIANCE}
    assert carla.owner_profile.external_id == "u-carla"
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()

    # In no group the portal maps: the refusal page, not an error.
    response_codes = []
    page.on("response", lambda response: response_codes.append((response.url, response.status)))
    sign_in_at_provider(page, provider, "u-zed")
    expect(page.get_by_role("heading", name="You cannot sign in to the portal")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("You have no role in the portal.")
    expect(page.locator("main")).to_contain_text("Ask the portal's administrators to add you to the group")
    assert any("/sso/callback/" in url and status == 403 for url, status in response_codes)
    assert_accessible(page, "refusal page")
    shot(page, "refused")
    page.set_viewport_size({"width": 390, "height": 844})
    assert_accessible(page, "refusal page on a phone")
    shot(page, "refused-phone")
    page.set_viewport_size({"width": 1280, "height": 900})
    assert not User.objects.filter(username="zed").exists()
    assert AccessRecord.objects.filter(action=AccessAction.LOGIN_FAILED, username="zed",
                                       target="single sign-on: no mapped group").exists()
    page.goto(f"{live_server.url}/")
    expect(page).to_have_url(re.compile(r"/login/"))

    # Carla moves to the owners' group at the provider: owner from her next sign-in on.
    provider.set_user("u-carla", email="carla.diaz@example.test", preferred_username="carla", given_name="Carla",
                      family_name="Diaz", groups=["staff", "portal-owners"])
    page.goto(f"{live_server.url}/keys/")
    sign_in_at_provider(page, provider, "u-carla")
    expect(page).to_have_url(f"{live_server.url}/keys/")
    expect(page.get_by_role("navigation", name="Main").get_by_role("link", name="Campaigns")).to_have_count(0)
    assert page.goto(f"{live_server.url}/campaigns/").status == 403
    carla.refresh_from_db()
    assert set(carla.groups.values_list("name", flat=True)) == {roles.OWNER}
    assert carla.owner_profile.history.first().history_change_reason == "single sign-on: roles owner"
    shot(page, "signed-in-as-owner")


def test_with_password_login_off_only_the_break_glass_superuser_signs_in_with_a_password(page, live_server, provider,
                                                                                        settings):
    settings.PASSWORD_LOGIN = False
    factories.ComplianceFactory(username="carol")
    get_user_model().objects.create_superuser("root", "root@example.test", "break-glass passphrase 7")
    page.goto(f"{live_server.url}/login/")
    expect(page.get_by_role("link", name="Sign in with Example ID")).to_be_visible()
    expect(page.locator("input[name='password']")).to_be_hidden()
    assert_accessible(page, "sign-in page, password folded away")
    shot(page, "password-off")
    page.get_by_text("Break-glass sign-in").click()
    page.get_by_label("Username").fill("carol")
    page.get_by_label("Password").fill("demo")
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("alert")).to_contain_text("Employees sign in with Example ID, not with a password")
    expect(page.locator("input[name='password']")).to_be_visible()  # the break-glass form stays open
    assert_accessible(page, "password refused")
    shot(page, "password-refused")
    assert AccessRecord.objects.filter(username="carol", action=AccessAction.LOGIN_FAILED,
                                       target="password sign-in is off for employees").exists()

    page.get_by_label("Username").fill("root")
    page.get_by_label("Password").fill("break-glass passphrase 7")
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page).to_have_url(f"{live_server.url}/")
    expect(page.locator(".usermenu")).to_contain_text("root")
    shot(page, "break-glass-signed-in")
