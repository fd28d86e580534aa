"""SCIM 2.0 provisioning at /scim/v2/, driven with the request bodies Okta and Entra ID send.

The bodies below are copied from the providers' SCIM 2.0 provisioning guides (Okta: "SCIM 2.0 protocol reference"
request examples; Microsoft Entra ID: "Tutorial: develop a sample SCIM endpoint" request examples and "Known issues
and resolutions with SCIM 2.0 protocol compliance"), with only ids filled in where the provider would put the ids
this service answered with.
"""

import copy
import json

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from attestations.choices import ItemStatus
from attestations.services import campaigns
from core import roles
from core.models import AccessAction, AccessRecord
from identity.models import AccountChange, ScimGroup, ScimToken
from identity.services import scim_tokens
from keys.choices import KeyStatus
from keys.models import OwnerProfile
from keys.services import lifecycle
from tests import factories

pytestmark = pytest.mark.django_db

User = get_user_model()
SCIM = "application/scim+json"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
GROUP_ROLES = {"Portal Admins": "admin", "Key Owners": "owner", "Compliance Team": "compliance"}

# Okta ---------------------------------------------------------------------------------------------------

OKTA_CREATE_USER = {
    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
    "userName": "test.user@okta.local",
    "name": {
        "givenName": "Test",
        "familyName": "User"
    },
    "emails": [{
        "primary": True,
        "value": "test.user@okta.local",
        "type": "work"
    }],
    "displayName": "Test User",
    "locale": "en-US",
    "externalId": "00ujl29u0le5T6Aj10h7",
    "groups": [],
    "password": "1mz050nq",
    "active": True
}

OKTA_REPLACE_USER = {
    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
    "id": "{id}",
    "userName": "test.user@okta.local",
    "name": {
        "givenName": "Another",
        "middleName": "Test",
        "familyName": "User"
    },
    "active": True,
    "emails": [{
        "primary": True,
        "value": "test.user@okta.local",
        "type": "work",
        "display": "test.user@okta.local"
    }],
    "meta": {
        "resourceType": "User"
    },
    "groups": [],
    "locale": "en-US"
}

OKTA_DEACTIVATE_USER = {
    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
    "Operations": [{
        "op": "replace",
        "value": {
            "active": False
        }
    }]
}

OKTA_CREATE_GROUP = {
    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
    "displayName": "Portal Admins",
    "members": []
}

OKTA_RENAME_GROUP = {
    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
    "Operations": [{
        "op": "replace",
        "value": {
            "id": "{id}",
            "displayName": "Key Owners"
        }
    }]
}

OKTA_ADD_MEMBERS = {
    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
    "Operations": [{
        "op": "add",
        "path": "members",
        "value": [{
            "value": "{id}",
            "display": "test.user@okta.local"
        }]
    }]
}

OKTA_REMOVE_MEMBER = {
    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
    "Operations": [{
        "op": "remove",
        "path": "members[value eq \"{id}\"]"
    }]
}

# Entra ID -----------------------------------------------------------------------------------------------

ENTRA_CREATE_USER = {
    "schemas": [
        "urn:ietf:params:scim:schemas:core:2.0:User",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
    "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
    "userName": "Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1",
    "active": True,
    "emails": [{
        "primary": True,
        "type": "work",
        "value": "Test_User_fd0ea19b-0777-472c-9f96-4f70d2226f2e@testuser.com"
    }],
    "meta": {
        "resourceType": "User"
    },
    "name": {
        "formatted": "givenName familyName",
        "familyName": "familyName",
        "givenName": "givenName"
    },
    "roles": []
}

ENTRA_UPDATE_USER = {
    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
    "Operations": [
        {
            "op": "Replace",
            "path": "emails[type eq \"work\"].value",
            "value": "updatedEmail@microsoft.com"
        },
        {
            "op": "Replace",
            "path": "name.familyName",
            "value": "updatedFamilyName"
        }
    ]
}

ENTRA_SET_MANAGER = {
    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
    "Operations": [
        {
            "op": "Add",
            "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
            "value": "{id}"
        },
        {
            "op": "Add",
            "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
            "value": "Payments"
        },
        {
            "op": "Add",
            "path": "title",
            "value": "Integration engineer"
        }
    ]
}

ENTRA_DISABLE_USER = {
    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
    "Operations": [
        {
            "op": "Replace",
            "path": "active",
            "value": False
        }
    ]
}

# Before Entra's SCIM compliance fixes (aadOptscim062020): the flag as a string.
ENTRA_DISABLE_USER_LEGACY = {
    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
    "Operations": [
        {
            "op": "Replace",
            "path": "active",
            "value": "False"
        }
    ]
}

# After them: path-less operations whose value names the attributes.
ENTRA_ENABLE_USER = {
    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
    "Operations": [
        {
            "op": "replace",
            "value": {
                "active": True
            }
        }
    ]
}

ENTRA_CREATE_GROUP = {
    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group",
                "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"],
    "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
    "displayName": "Compliance Team",
    "meta": {
        "resourceType": "Group"
    }
}

ENTRA_ADD_MEMBER = {
    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
    "Operations": [{
        "op": "Add",
        "path": "members",
        "value": [{
            "$ref": None,
            "value": "{id}"
        }]
    }]
}

ENTRA_REMOVE_MEMBER = {
    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
    "Operations": [{
        "op": "Remove",
        "path": "members",
        "value": [{
            "$ref": None,
            "value": "{id}"
        }]
    }]
}


def filled(body, **ids):
    """A body with the ids this service answered filled in where the provider puts them."""
    text = json.dumps(body)
    for name, value in ids.items():
        text = text.replace("{" + name + "}", str(value))
    return json.loads(text)


class ScimClient:
    """A SCIM client as the provider is: a bearer token, no session."""

    def __init__(self, token: str, client: Client | None = None):
        self.client = client or Client()
        self.headers = {"Authorization": f"Bearer {token}"}

    def _send(self, method, path, body=None, raw=None):
        data = raw if raw is not None else (json.dumps(body) if body is not None else "")
        response = getattr(self.client, method)(f"/scim/v2/{path}", data=data, content_type=SCIM, headers=self.headers)
        response.document = json.loads(response.content) if response.content else None
        return response

    def get(self, path, **params):
        response = self.client.get(f"/scim/v2/{path}", params, headers=self.headers)
        response.document = json.loads(response.content) if response.content else None
        return response

    def post(self, path, body=None, raw=None):
        return self._send("post", path, body, raw)

    def put(self, path, body):
        return self._send("put", path, body)

    def patch(self, path, body=None, raw=None):
        return self._send("patch", path, body, raw)

    def delete(self, path):
        return self._send("delete", path)


@pytest.fixture
def scim_on(settings):
    settings.SCIM_ENABLED = True
    settings.IDENTITY_GROUP_ROLES = dict(GROUP_ROLES)


@pytest.fixture
def okta_token(scim_on, admin_user):
    return scim_tokens.create_token(actor=admin_user, name="Okta")


@pytest.fixture
def okta(okta_token):
    return ScimClient(okta_token[1])


@pytest.fixture
def entra(scim_on, admin_user):
    return ScimClient(scim_tokens.create_token(actor=admin_user, name="Entra ID")[1])


def assert_error(response, status, scim_type=None):
    assert response.status_code == status, response.content
    assert response["Content-Type"] == SCIM
    document = json.loads(response.content)
    assert document["schemas"] == [ERROR]
    assert int(document["status"]) == status
    if scim_type:
        assert document["scimType"] == scim_type, document


def verify_history() -> str:
    from io import StringIO

    out = StringIO()
    call_command("verify_history", stdout=out)  # raises CommandError when the chain is broken
    assert "History chain OK" in out.getvalue(), out.getvalue()
    return out.getvalue()


def provisioned(okta) -> dict:
    response = okta.post("Users", OKTA_CREATE_USER)
    assert response.status_code == 201, response.content
    return response.document


# Access ------------------------------------------------------------------------------------------------


def test_scim_is_off_unless_enabled(settings, admin_user):
    settings.SCIM_ENABLED = False
    _, plaintext = scim_tokens.create_token(actor=admin_user, name="Okta")
    response = ScimClient(plaintext).get("Users")
    assert_error(response, 404)
    assert not User.objects.filter(username="test.user@okta.local").exists()


def test_only_an_active_token_is_let_in(scim_on, okta_token, admin_user):
    token, plaintext = okta_token
    for headers in ({}, {"Authorization": "Bearer scim_not-a-token"}, {"Authorization": f"Token {plaintext}"},
                    {"Authorization": f"Basic {plaintext}"}):
        response = Client().post("/scim/v2/Users", json.dumps(OKTA_CREATE_USER), content_type=SCIM, headers=headers)
        assert_error(response, 401)
        assert response["WWW-Authenticate"] == 'Bearer realm="scim"'
    # A signed-in admin's session is no SCIM client.
    session = Client()
    session.force_login(admin_user)
    response = session.get("/scim/v2/Users")
    assert_error(response, 401)
    assert not User.objects.filter(username="test.user@okta.local").exists()

    client = ScimClient(plaintext)
    assert client.get("Users").status_code == 200
    token.refresh_from_db()
    assert token.last_used_at is not None
    record = AccessRecord.objects.filter(action=AccessAction.API_TOKEN_USED).latest("pk")
    assert record.user == token.acts_as and f"SCIM token #{token.pk}" in record.target

    scim_tokens.revoke_token(token, actor=admin_user)
    assert_error(client.get("Users"), 401)
    with pytest.raises(scim_tokens.ScimTokenError):
        scim_tokens.create_token(actor=factories.OwnerFactory(), name="Mine")


def test_the_token_is_shown_once_and_only_its_hash_is_kept(scim_on, admin_user, client):
    client.force_login(admin_user)
    response = client.post(reverse("scim-tokens"), {"name": "Okta"})
    assert response.status_code == 201
    plaintext = response.context["plaintext"]
    assert plaintext.startswith("scim_") and plaintext in response.text
    token = ScimToken.objects.get()
    assert token.token_hash == scim_tokens.hash_token(plaintext) and plaintext not in str(token.__dict__)
    assert token.acts_as.username == "scim:okta" and not token.acts_as.is_active
    assert not token.acts_as.has_usable_password()
    assert plaintext not in client.get(reverse("scim-tokens")).text
    assert ScimClient(plaintext).get("ServiceProviderConfig").status_code == 200
    response = client.post(reverse("scim-token-revoke", args=[token.pk]))
    assert response.status_code == 302
    assert_error(ScimClient(plaintext).get("Users"), 401)
    assert client.post(reverse("scim-tokens"), {"name": "  "}).status_code == 400


def test_discovery_endpoints(okta):
    config = okta.get("ServiceProviderConfig")
    assert config.status_code == 200 and config["Content-Type"] == SCIM
    assert config.document["patch"]["supported"] and config.document["filter"]["supported"]
    assert not config.document["bulk"]["supported"] and not config.document["changePassword"]["supported"]
    assert config.document["authenticationSchemes"][0]["type"] == "oauthbearertoken"
    types = okta.get("ResourceTypes").document["Resources"]
    user_type = next(t for t in types if t["id"] == "User")
    assert user_type["schemaExtensions"] == [{"schema": ENTERPRISE, "required": False}]
    schemas = {s["id"] for s in okta.get("Schemas").document["Resources"]}
    assert {"urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE} <= schemas
    assert okta.get("Bulk").status_code == 501


# People ------------------------------------------------------------------------------------------------


def test_okta_creates_finds_and_replaces_a_person(okta, okta_token):
    created = provisioned(okta)
    user = User.objects.get(username="test.user@okta.local")
    assert created["id"] == str(user.pk) and created["userName"] == "test.user@okta.local"
    assert created["active"] is True and created["externalId"] == "00ujl29u0le5T6Aj10h7"
    assert created["emails"] == [{"value": "test.user@okta.local", "type": "work", "primary": True}]
    assert created["meta"]["location"].endswith(f"/scim/v2/Users/{user.pk}")
    assert (user.first_name, user.last_name, user.email) == ("Test", "User", "test.user@okta.local")
    assert not user.has_usable_password()  # the password Okta sent is not kept: people sign in at Okta
    assert user.owner_profile.external_id == "00ujl29u0le5T6Aj10h7" and user.owner_profile.is_active
    change = AccountChange.objects.get(user=user)
    assert change.kind == AccountChange.Kind.PROVISIONED and change.actor == okta_token[0].acts_as
    assert user.owner_profile.history.first().history_user == okta_token[0].acts_as

    # Okta looks a person up by userName before creating them (case-insensitive), and reads them by id.
    found = okta.get("Users", filter='userName eq "Test.User@okta.local"', startIndex=1, count=100)
    assert found.document["totalResults"] == 1 and found.document["Resources"][0]["id"] == created["id"]
    assert okta.get("Users", filter='userName eq "nobody@okta.local"').document["totalResults"] == 0
    assert okta.get("Users", filter='externalId eq "00ujl29u0le5T6Aj10h7"').document["totalResults"] == 1
    assert okta.get(f"Users/{user.pk}").document["userName"] == "test.user@okta.local"
    assert_error(okta.get("Users", filter='favouriteColour eq "blue"'), 400, "invalidFilter")
    assert_error(okta.get("Users", filter='userName eq'), 400, "invalidFilter")
    assert_error(okta.get("Users/not-an-id"), 404)
    assert_error(okta.get(f"Users/{okta_token[0].acts_as.pk}"), 404)  # its own service account is no person
    contact = factories.UserFactory(username="pat", role=roles.CUSTOMER_CONTACT)
    assert_error(okta.get(f"Users/{contact.pk}"), 404)  # nor is a customer's contact
    assert_error(okta.patch(f"Users/{contact.pk}", OKTA_DEACTIVATE_USER), 404)
    assert User.objects.get(pk=contact.pk).is_active
    listed = okta.get("Users").document
    expected = User.objects.exclude(username__startswith="scim:").exclude(pk=contact.pk).order_by("pk")
    assert [r["userName"] for r in listed["Resources"]] == [u.username for u in expected]

    assert_error(okta.post("Users", OKTA_CREATE_USER), 409, "uniqueness")
    assert User.objects.filter(username__iexact="test.user@okta.local").count() == 1

    replaced = okta.put(f"Users/{user.pk}", filled(OKTA_REPLACE_USER, id=user.pk))
    assert replaced.status_code == 200, replaced.content
    user.refresh_from_db()
    assert (user.first_name, user.last_name, user.is_active) == ("Another", "User", True)
    assert user.owner_profile.external_id == "00ujl29u0le5T6Aj10h7"  # absent from the PUT: kept
    change = AccountChange.objects.filter(user=user).first()
    assert change.kind == AccountChange.Kind.UPDATED and change.fields == ["first_name"]
    assert change.values == {"first_name": ["Test", "Another"]}
    verify_history()


def test_entra_creates_and_patches_a_person(entra, okta):
    manager = factories.OwnerProfileFactory(user__username="mallory", external_id="entra-mallory").user
    created = entra.post("Users", ENTRA_CREATE_USER)
    assert created.status_code == 201, created.content
    user_id = created.document["id"]
    # Entra matches people by userName or by externalId.
    assert entra.get("Users", filter='externalId eq "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef"').document["totalResults"] == 1

    response = entra.patch(f"Users/{user_id}", ENTRA_UPDATE_USER)
    assert response.status_code == 200, response.content
    user = User.objects.get(pk=user_id)
    assert (user.email, user.last_name, user.first_name) == ("updatedEmail@microsoft.com", "updatedFamilyName", "givenName")
    # Entra's default mappings also send proxy addresses as "other" emails: the portal keeps the work one.
    other = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [
        {"op": "Add", "path": "emails[type eq \"other\"].value", "value": "smtp:alias@microsoft.com"}]}
    assert entra.patch(f"Users/{user_id}", other).status_code == 200
    assert User.objects.get(pk=user_id).email == "updatedEmail@microsoft.com"

    # The manager as Entra sends it (a bare id), the department, and an attribute the portal does not keep.
    response = entra.patch(f"Users/{user_id}", filled(ENTRA_SET_MANAGER, id=manager.pk))
    assert response.status_code == 200, response.content
    profile = OwnerProfile.objects.get(user=user)
    assert (profile.manager, profile.department) == (manager, "Payments")
    assert response.document[ENTERPRISE]["manager"]["value"] == str(manager.pk)
    assert profile.history.first().history_change_reason == "SCIM Entra ID: department, manager changed"
    # A manager named by their externalId at the provider is found too; one nobody has is refused.
    body = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [
        {"op": "replace", "path": f"{ENTERPRISE}:manager", "value": {"value": "entra-mallory"}}]}
    assert entra.patch(f"Users/{user_id}", body).status_code == 200
    body["Operations"][0]["value"] = {"value": "nobody-has-this"}
    assert_error(entra.patch(f"Users/{user_id}", body), 400, "invalidValue")
    profile.refresh_from_db()
    assert profile.manager == manager

    # Okta's PUT with the enterprise extension replaces department and manager.
    replace = filled(OKTA_REPLACE_USER, id=user_id) | {"userName": user.username,
                                                        ENTERPRISE: {"department": "Risk"}}
    assert okta.put(f"Users/{user_id}", replace).status_code == 200
    profile.refresh_from_db()
    assert (profile.department, profile.manager) == ("Risk", None)
    verify_history()


@pytest.mark.parametrize("body", [OKTA_DEACTIVATE_USER, ENTRA_DISABLE_USER, ENTRA_DISABLE_USER_LEGACY])
def test_each_provider_s_deactivation_is_a_departure(okta, body):
    user_id = provisioned(okta)["id"]
    response = okta.patch(f"Users/{user_id}", body)
    assert response.status_code == 200, response.content
    assert response.document["active"] is False
    user = User.objects.select_related("owner_profile").get(pk=user_id)
    assert not user.is_active and not user.owner_profile.is_active and user.owner_profile.departed_on
    assert AccountChange.objects.filter(user=user, kind=AccountChange.Kind.DEACTIVATED).count() == 1
    # Saying it again changes nothing twice.
    assert okta.patch(f"Users/{user_id}", body).status_code == 200
    assert AccountChange.objects.filter(user=user, kind=AccountChange.Kind.DEACTIVATED).count() == 1


def test_delete_deactivates_and_keeps_the_person(okta):
    user_id = provisioned(okta)["id"]
    response = okta.delete(f"Users/{user_id}")
    assert response.status_code == 204
    user = User.objects.get(pk=user_id)
    assert not user.is_active and not user.owner_profile.is_active
    assert okta.get(f"Users/{user_id}").document["active"] is False
    assert okta.delete(f"Users/{user_id}").status_code == 204


def test_deactivating_an_owner_hands_their_keys_and_items_on_at_once(
        okta, okta_token, compliance_user, django_capture_on_commit_callbacks):
    manager = factories.OwnerFactory(username="mallory", email="mallory@example.test")
    person = User.objects.get(pk=provisioned(okta)["id"])
    OwnerProfile.objects.filter(user=person).update(manager=manager)
    keys = [factories.ApiKeyFactory(owner=person) for _ in range(2)]
    campaign = campaigns.create_campaign(actor=compliance_user, name="2026-Q4")
    campaigns.launch_campaign(campaign, actor=compliance_user)
    assert campaign.items.filter(reviewer=person, status=ItemStatus.PENDING).count() == 2
    browser = Client()
    browser.force_login(person)  # signed in as they are deactivated
    assert browser.get(reverse("keys:list")).status_code == 200
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        response = okta.patch(f"Users/{person.pk}", OKTA_DEACTIVATE_USER)
    assert response.status_code == 200, response.content

    service_account = okta_token[0].acts_as
    # The successor handshake starts: the manager is asked to name successors for both keys.
    [message] = [m for m in mail.outbox if "need a new owner" in m.subject]
    assert message.to == ["mallory@example.test"] and person.username in message.subject
    assert all(key.prefix in message.body for key in keys)
    for key in keys:
        key.refresh_from_db()
        assert key.orphaned and key.status == KeyStatus.ACTIVE
        assert "frozen" in lifecycle.scope_change_refusal(key)
        assert key.events.get(action="flag_orphaned").actor == service_account
    # Their pending items went to the stage's fallback reviewer (compliance), recorded under the SCIM client.
    for item in campaign.items.all():
        assert item.reviewer_role == roles.COMPLIANCE and item.reviewer != person
        record = item.history.first()
        assert record.history_user == service_account and "departed" in record.history_change_reason
    # Their session ended: the next request is anonymous and is sent to sign in.
    response = browser.get(reverse("keys:list"))
    assert response.status_code == 302 and response.url.startswith(reverse("login"))
    profile = OwnerProfile.objects.get(user=person)
    assert profile.history.first().history_user == service_account
    assert profile.history.first().history_change_reason == "SCIM Okta: deactivated"
    verify_history()

    # Back again: the account and profile are active, the keys stay with the successor handshake.
    with django_capture_on_commit_callbacks(execute=True):
        response = okta.patch(f"Users/{person.pk}", ENTRA_ENABLE_USER)
    assert response.status_code == 200 and response.document["active"] is True
    profile.refresh_from_db()
    person.refresh_from_db()
    assert person.is_active and profile.is_active and profile.departed_on is None
    for key in keys:
        key.refresh_from_db()
        assert key.orphaned and key.owner == person  # nothing given back: the successor handshake goes on
    assert AccountChange.objects.filter(user=person, kind=AccountChange.Kind.REACTIVATED).exists()
    verify_history()


# Refusals change nothing -------------------------------------------------------------------------------


def test_a_malformed_body_gets_a_scim_error_and_changes_nothing(okta):
    user_id = provisioned(okta)["id"]
    before = AccountChange.objects.count(), User.objects.count()

    assert_error(okta.post("Users", raw="{not json"), 400, "invalidSyntax")
    assert_error(okta.post("Users", raw="[]"), 400, "invalidSyntax")
    assert_error(okta.post("Users", OKTA_CREATE_USER | {"userName": "x@okta.local", "favouriteColour": "blue"}),
                 400, "invalidSyntax")
    assert_error(okta.post("Users", OKTA_CREATE_USER | {"userName": "y@okta.local", "active": "maybe"}),
                 400, "invalidValue")
    assert_error(okta.post("Users", OKTA_CREATE_USER | {"userName": "has spaces"}), 400, "invalidValue")
    assert_error(okta.post("Users", {k: v for k, v in OKTA_CREATE_USER.items() if k != "userName"}), 400)
    assert_error(okta.put(f"Users/{user_id}", OKTA_REPLACE_USER | {"emails": [{"value": "not an address"}]}),
                 400, "invalidValue")
    assert_error(okta.patch(f"Users/{user_id}", {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"]}),
                 400, "invalidSyntax")
    # The first operation is fine, the second names no attribute: neither is applied.
    body = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [
        {"op": "replace", "path": "name.givenName", "value": "Changed"},
        {"op": "replace", "path": "favouriteColour", "value": "blue"}]}
    assert_error(okta.patch(f"Users/{user_id}", body), 400, "invalidPath")
    body["Operations"][1] = {"op": "remove"}
    assert_error(okta.patch(f"Users/{user_id}", body), 400, "noTarget")
    body["Operations"][1] = {"op": "frobnicate", "path": "active", "value": False}
    assert_error(okta.patch(f"Users/{user_id}", body), 400, "invalidSyntax")

    user = User.objects.get(pk=user_id)
    assert user.first_name == "Test" and user.is_active and user.email == "test.user@okta.local"
    assert (AccountChange.objects.count(), User.objects.count()) == before
    verify_history()


def test_a_failure_half_way_rolls_the_whole_request_back(okta, monkeypatch):
    """One transaction per request: the account was already saved inactive when the failure came."""
    from keys.services import sweeps

    user_id = provisioned(okta)["id"]
    factories.ApiKeyFactory(owner=User.objects.get(pk=user_id))
    changes = AccountChange.objects.count()

    def broken(*args, **kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(sweeps, "orphan_keys_of", broken)
    body = copy.deepcopy(ENTRA_UPDATE_USER)
    body["Operations"].append({"op": "replace", "path": "active", "value": False})
    assert_error(okta.patch(f"Users/{user_id}", body), 500)
    user = User.objects.select_related("owner_profile").get(pk=user_id)
    assert user.is_active and user.owner_profile.is_active and user.email == "test.user@okta.local"
    assert AccountChange.objects.count() == changes
    verify_history()


# Groups and roles --------------------------------------------------------------------------------------


def test_group_membership_gives_and_takes_roles(okta, entra, okta_token):
    person = User.objects.get(pk=provisioned(okta)["id"])
    created = okta.post("Groups", OKTA_CREATE_GROUP)
    assert created.status_code == 201, created.content
    group_id = created.document["id"]
    assert okta.get("Groups", filter='displayName eq "Portal Admins"').document["totalResults"] == 1
    assert not roles.is_admin(person)

    response = okta.patch(f"Groups/{group_id}", filled(OKTA_ADD_MEMBERS, id=person.pk))
    assert response.status_code == 200, response.content
    assert response.document["members"][0]["value"] == str(person.pk)
    person = User.objects.get(pk=person.pk)
    assert roles.is_admin(person) and person.is_staff
    change = AccountChange.objects.filter(user=person, kind=AccountChange.Kind.GROUPS).first()
    assert change.values == {"groups": [[], ["Portal Admins"]], "roles": [[], ["admin"]]}
    assert change.actor == okta_token[0].acts_as
    assert okta.get(f"Users/{person.pk}").document["groups"][0]["display"] == "Portal Admins"

    # Renamed to a group that maps to owner: the role follows the name.
    assert okta.patch(f"Groups/{group_id}", filled(OKTA_RENAME_GROUP, id=group_id)).status_code == 200
    person = User.objects.get(pk=person.pk)
    assert not roles.is_admin(person) and not person.is_staff and roles.is_owner(person)
    assert ScimGroup.objects.get(pk=group_id).history.first().history_change_reason.startswith("SCIM Okta: display")

    # Entra's group, and its two ways of removing a member.
    entra_group = entra.post("Groups", ENTRA_CREATE_GROUP)
    assert entra_group.status_code == 201, entra_group.content
    entra_id = entra_group.document["id"]
    assert entra_group.document["externalId"] == "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159"
    assert entra.patch(f"Groups/{entra_id}", filled(ENTRA_ADD_MEMBER, id=person.pk)).status_code == 200
    assert roles.is_compliance(User.objects.get(pk=person.pk))
    assert entra.patch(f"Groups/{entra_id}", filled(ENTRA_REMOVE_MEMBER, id=person.pk)).status_code == 200
    assert not roles.is_compliance(User.objects.get(pk=person.pk))
    assert okta.patch(f"Groups/{group_id}", filled(OKTA_REMOVE_MEMBER, id=person.pk)).status_code == 200
    person = User.objects.get(pk=person.pk)
    assert not roles.is_owner(person) and not person.scim_groups.exists()

    # A member nobody knows is refused, and the group stays as it was.
    assert_error(okta.patch(f"Groups/{group_id}", filled(OKTA_ADD_MEMBERS, id=999999)), 400, "invalidValue")
    assert not ScimGroup.objects.get(pk=group_id).members.exists()
    assert_error(okta.post("Groups", OKTA_CREATE_GROUP | {"displayName": "Key Owners"}), 409, "uniqueness")

    # Deleting a group takes its roles from its members; the group's history stays.
    okta.patch(f"Groups/{group_id}", filled(OKTA_ADD_MEMBERS, id=person.pk))
    assert roles.is_owner(User.objects.get(pk=person.pk))
    assert okta.delete(f"Groups/{group_id}").status_code == 204
    assert not roles.is_owner(User.objects.get(pk=person.pk))
    assert not ScimGroup.objects.filter(pk=group_id).exists()
    assert ScimGroup.history.filter(id=group_id, history_type="-").exists()
    verify_history()


def test_a_group_replaced_with_put(okta):
    person = User.objects.get(pk=provisioned(okta)["id"])
    group_id = okta.post("Groups", OKTA_CREATE_GROUP | {"members": [{"value": str(person.pk)}]}).document["id"]
    assert roles.is_admin(User.objects.get(pk=person.pk))
    response = okta.put(f"Groups/{group_id}", {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                                               "id": group_id, "displayName": "Portal Admins", "members": []})
    assert response.status_code == 200, response.content
    assert not roles.is_admin(User.objects.get(pk=person.pk))


def test_a_page_holds_at_most_max_results(okta, monkeypatch):
    from identity.scim import views

    provisioned(okta)
    monkeypatch.setattr(views, "MAX_RESULTS", 1)
    page = okta.get("Users", startIndex=1, count=5).document
    assert page["itemsPerPage"] == 1 and page["totalResults"] > 1
    assert_error(okta.get("Users", count="many"), 400)
