import pytest
import yaml
from django.core.management import call_command
from django.urls import reverse

from . import client_for

pytestmark = pytest.mark.django_db

CONTRACT_PATHS = [
    "/api/v1/customers/", "/api/v1/workflows/", "/api/v1/keys/", "/api/v1/keys/{id}/history/",
    "/api/v1/keys/{id}/revoke/", "/api/v1/campaigns/", "/api/v1/campaigns/{id}/launch/",
    "/api/v1/campaigns/{id}/close/", "/api/v1/attestations/", "/api/v1/attestations/{id}/decide/",
    "/api/v1/exceptions/", "/api/v1/exceptions/{id}/", "/api/v1/usage/", "/api/v1/exposures/",
]


def test_schema_validates_without_warnings(tmp_path):
    target = tmp_path / "schema.yml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))
    schema = yaml.safe_load(target.read_text())
    for path in CONTRACT_PATHS:
        assert path in schema["paths"], path
    components = schema["components"]["schemas"]
    assert "secret" not in components["ApiKey"]["properties"]
    assert components["RegisterKey"]["properties"]["secret"]["writeOnly"] is True
    assert set(components["KeyStatusEnum"]["enum"]) == {"pending", "active", "suspended", "revoked", "expired"}
    assert set(components["ItemStatusEnum"]["enum"]) == {"pending", "confirmed", "released", "reassigned", "expired"}
    assert set(components["CampaignStatusEnum"]["enum"]) == {"draft", "active", "closed", "cancelled"}
    assert "409" in schema["paths"]["/api/v1/attestations/{id}/decide/"]["post"]["responses"]


def test_schema_and_docs_are_served(owner):
    assert client_for().get(reverse("api-schema")).status_code == 200
    assert client_for(owner).get(reverse("api-docs")).status_code == 200


def test_api_root_lists_every_endpoint(owner):
    body = client_for(owner).get(reverse("api-root"), HTTP_ACCEPT="application/json").json()
    assert set(body) == {"customers", "workflows", "keys", "exceptions", "usage", "exposures", "campaigns",
                         "attestations", "exports"}


@pytest.fixture
def closed_docs(settings):
    settings.API_DOCS_PUBLIC = False


@pytest.mark.parametrize("name", ["api-schema", "api-docs"])
def test_closed_schema_and_docs_refuse_anonymous_callers(closed_docs, name):
    response = client_for().get(reverse(name))
    assert response.status_code == 403
    assert b"openapi" not in response.content and b"swagger" not in response.content.lower()


@pytest.mark.parametrize("name", ["api-schema", "api-docs"])
def test_closed_schema_and_docs_serve_signed_in_users(closed_docs, owner, name):
    assert client_for(owner).get(reverse(name)).status_code == 200


def test_closed_schema_serves_personal_and_integration_tokens(closed_docs, owner, key):
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    from tests.integration_tokens import make_token, token_client

    personal = APIClient()
    personal.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=owner).key}")
    assert b"openapi" in personal.get(reverse("api-schema")).content
    _, plaintext = make_token(issuing_system=key.issuing_system)
    assert b"openapi" in token_client(plaintext).get(reverse("api-schema")).content
    assert client_for().get(reverse("api-schema"), HTTP_AUTHORIZATION="Token kpt_not-a-token").status_code in (401, 403)
