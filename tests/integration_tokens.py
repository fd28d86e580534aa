"""Integration tokens for tests: create one through keys.services.tokens and get a client that sends it."""

from rest_framework.test import APIClient

from keys.services import tokens

from . import factories


def make_token(*, issuing_system=None, customer=None, name="Gateway sync", acts_as=None):
    """(token, plaintext) scoped as given, created by an admin, acting as a plain service account."""
    admin = factories.AdminFactory(username="token-issuer")
    acts_as = acts_as or factories.UserFactory(username=f"svc-{name.lower().replace(' ', '-')}")
    return tokens.create_token(actor=admin, name=name, issuing_system=issuing_system, customer=customer,
                               acts_as=acts_as)


def token_client(plaintext: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {plaintext}")
    return client
