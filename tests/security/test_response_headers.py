"""Headers on every answer: what a signed-in user saw is never stored by a browser or proxy cache
(``Cache-Control: no-store`` on signed-in pages and every API answer), and a Permissions-Policy turns off
browser features the portal never uses."""

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from contacts import access
from tests import factories
from tests.contacts.conftest import last_code, last_link_token

pytestmark = pytest.mark.django_db


def cache_control(response) -> set[str]:
    return {part.strip() for part in response.get("Cache-Control", "").split(",") if part.strip()}


def assert_not_stored(response, label):
    assert {"no-store", "private"} <= cache_control(response), f"{label}: {response.get('Cache-Control')!r}"


@pytest.mark.parametrize("name", ["dashboard", "keys:list", "attestations:inbox", "keys:exceptions"])
def test_signed_in_pages_are_not_stored(client, owner, key, name):
    client.force_login(owner)
    response = client.get(reverse(name))
    assert response.status_code == 200
    assert_not_stored(response, name)


def test_signed_in_redirects_and_refusals_are_not_stored(client, owner, key):
    client.force_login(owner)
    assert_not_stored(client.get(reverse("keys:tokens")), "403 page")
    assert_not_stored(client.get(reverse("keys:detail", args=[key.pk + 1000])), "404 page")


def test_api_answers_are_not_stored_whoever_asks(admin_user, key):
    token = Token.objects.create(user=admin_user)
    by_token = APIClient()
    by_token.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert_not_stored(by_token.get(reverse("apikey-list")), "token list")
    assert_not_stored(by_token.get(reverse("apikey-detail", args=[key.pk])), "token detail")
    by_session = APIClient()
    by_session.force_login(admin_user)
    assert_not_stored(by_session.get(reverse("apikey-list")), "session list")
    assert_not_stored(APIClient().get(reverse("apikey-list")), "anonymous refusal")


def test_a_customer_contacts_pages_are_not_stored(compliance_user, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        access.invite_contact(actor=compliance_user, customer=factories.CustomerFactory(), name="Pat", email="pat@acme.test")
    client = Client()
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("contacts:access", args=[last_link_token("pat@acme.test")]))
    signed_in = client.post(reverse("contacts:code"), {"code": last_code("pat@acme.test")})
    assert signed_in.status_code == 302
    assert_not_stored(client.get(reverse("contacts:home")), "contact home")


@pytest.mark.parametrize("signed_in", [False, True])
def test_permissions_policy_on_every_answer(client, owner, signed_in):
    if signed_in:
        client.force_login(owner)
    for url in (reverse("login"), reverse("dashboard"), reverse("apikey-list"), "/no-such-page/"):
        policy = client.get(url)["Permissions-Policy"]
        for feature in ("camera=()", "microphone=()", "geolocation=()", "payment=()", "usb=()"):
            assert feature in policy, (url, policy)
