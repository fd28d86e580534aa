"""One permission matrix over every URL of the project (Django's admin and static files excepted).

For each route: which object it is asked about, and for anonymous, the object's owner, another owner,
compliance, admin, a signed-in customer contact (refused everywhere but the contact pages: 403 unless
an entry says otherwise) and an auditor with a current grant (reads evidence, history and exports; every
change refused with 403), the answer expected (a status code, or ``LOGIN`` for a redirect to sign in).
Requests carry an empty body, so an allowed change reaches validation (200/400 with errors, or a
redirect with a message) and changes nothing. The REST routes reuse the per-router matrices of
``tests/api`` and add any router they do not cover. A URL without an entry fails
``test_matrix_covers_every_url``; every HTML page answered is checked for inline script and style.
"""

import datetime
import importlib.util
import re

import pytest
from django.core.files.base import ContentFile
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone
from rest_framework.test import APIClient

from attestations.choices import DefaultAction
from attestations.models import EvidenceExport, OwnershipTransfer
from attestations.services import campaigns
from contacts import access as contact_access
from keys.choices import ExposureSource, KeyStatus, ReleaseStatus, RevocationReason
from keys.models import KeyRelease
from keys.services import lifecycle
from keys.services.exposures import report_exposure
from tests import factories
from tests.api import test_campaigns_api, test_keys_api

pytestmark = pytest.mark.django_db

ROLES = ("anon", "owner", "other", "compliance", "admin", "contact", "auditor")
LOGIN = "login"
EXCLUDED_PREFIXES = ("admin/", "static/", "media/")


def row(anon, owner, other, compliance, admin, contact=403, auditor=None):
    return {"anon": anon, "owner": owner, "other": other, "compliance": compliance, "admin": admin, "contact": contact,
            "auditor": auditor}


READS = {"get", "head", "options"}


def expected_for(spec: dict, role: str, method: str):
    # The routers' own matrices (tests/api) have no contact column: a contact session is refused there too.
    expected = spec.get(role, 403)
    if role == "auditor" and expected is None:
        # A row written without an auditor column: every change is refused; a read answers as to another user.
        return spec["other"] if method in READS else 403
    return expected


EVERYONE = row(LOGIN, 200, 200, 200, 200, auditor=200)
STAFF_ONLY = row(LOGIN, 403, 403, 200, 200, auditor=403)
# Compliance's and admins' pages of evidence and history, which an auditor reads too.
READERS = row(LOGIN, 403, 403, 200, 200, auditor=200)
SCIM_REFUSED = row(401, 401, 401, 401, 401)

# url name -> {"args": world fixtures or literal slugs, method: expected per role}. "owner" is alice,
# who owns ``key`` (and is reviewer of ``item``, requester of ``exception``, recipient of ``transfer``);
# "other" is bob, an owner of other keys.
PAGES = {
    "dashboard": {"get": EVERYONE},
    "dashboard:customers": {"get": READERS},
    "login": {"get": row(200, 302, 302, 302, 302, auditor=302)},
    "logout": {"post": row(302, 302, 302, 302, 302, auditor=302)},
    "two-factor-setup": {"get": row(LOGIN, 403, 403, 200, 200, auditor=200)},
    "two-factor-verify": {"get": row(LOGIN, 302, 302, 302, 302, auditor=302)},
    # Single sign-on is off here (no OIDC_ISSUER): not found. tests/identity/test_sso.py covers it on.
    "sso:start": {"get": row(404, 404, 404, 404, 404, auditor=404)},
    "sso:callback": {"get": row(404, 404, 404, 404, 404, auditor=404)},
    "keys:list": {"get": EVERYONE},
    "keys:workflow-options": {"get": EVERYONE},
    # An empty body names no filter: refused with a message and back to the list. Deleting needs one's own.
    "keys:filter-save": {"post": row(LOGIN, 302, 302, 302, 302, auditor=403)},
    "keys:filter-delete": {"args": ("999999",), "post": row(LOGIN, 404, 404, 404, 404, auditor=403)},
    "keys:register": {"get": row(LOGIN, 403, 403, 403, 200, auditor=403),
                      "post": row(LOGIN, 403, 403, 403, 400, auditor=403)},
    "keys:import": {"get": row(LOGIN, 403, 403, 403, 200, auditor=403), "post": row(LOGIN, 403, 403, 403, 400, auditor=403)},
    "keys:detail": {"args": ("key",), "get": row(LOGIN, 200, 404, 200, 200, auditor=200)},
    "keys:action": {"args": ("key", "suspend"), "post": row(LOGIN, 403, 404, 403, 400, auditor=403)},
    "keys:exceptions": {"get": EVERYONE},
    "keys:exception-request": {
        "args": ("key",),
        "get": row(LOGIN, 200, 404, 403, 200, auditor=403),
        "post": row(LOGIN, 400, 404, 403, 400, auditor=403),
    },
    "keys:exception": {"args": ("exception",), "get": row(LOGIN, 200, 404, 200, 200, auditor=200)},
    "keys:exception-action": {"args": ("exception", "reject"), "post": row(LOGIN, 400, 404, 400, 400, auditor=403)},
    "keys:revocations": {"get": READERS},
    "keys:revocation-confirm": {"args": ("revocation",), "post": row(LOGIN, 403, 403, 403, 302, auditor=403)},
    "keys:tokens": {"get": row(LOGIN, 403, 403, 403, 200, auditor=403), "post": row(LOGIN, 403, 403, 403, 400, auditor=403)},
    "keys:token-revoke": {"args": ("token",), "post": row(LOGIN, 403, 403, 403, 302, auditor=403)},
    "keys:exposures": {"get": READERS},
    "keys:exposure-report": {"get": row(LOGIN, 200, 200, 200, 200, auditor=403),
                             "post": row(LOGIN, 200, 200, 200, 200, auditor=403)},
    # bob's report of the fingerprint of alice's key, which he cannot see: compliance and admins triage it.
    "keys:exposure-triage": {"args": ("exposure",), "post": row(LOGIN, 403, 403, 302, 302, auditor=403)},
    # An auditor decides nothing: their inbox is empty.
    "attestations:inbox": {"get": EVERYONE},
    "attestations:bulk-confirm": {"post": row(LOGIN, 302, 302, 302, 302, auditor=403)},
    "attestations:bulk-decide": {"post": row(LOGIN, 302, 302, 302, 302, auditor=403)},
    "attestations:item": {"args": ("item",), "get": row(LOGIN, 200, 404, 200, 200, auditor=200)},
    "attestations:decide": {"args": ("item",), "post": row(LOGIN, 400, 404, 400, 400, auditor=403)},
    "attestations:transfer": {"args": ("transfer", "decline"), "post": row(LOGIN, 302, 404, 404, 404, auditor=403)},
    "keys:releases": {"get": EVERYONE},
    # alice owns the key of ``release``; compliance and admins may decide too; bob cannot see it.
    "keys:release-action": {"args": ("release", "rollback"), "post": row(LOGIN, 302, 404, 302, 302, auditor=403)},
    "attestations:successions": {"get": EVERYONE},
    # ``key`` is alice's and she has not left: nobody may name its successor (bob cannot see it).
    "attestations:succession-name": {"args": ("key",), "post": row(LOGIN, 403, 404, 403, 403, auditor=403)},
    "attestations:campaigns": {"get": READERS},
    "attestations:campaign-create": {"get": STAFF_ONLY, "post": row(LOGIN, 403, 403, 400, 400, auditor=403)},
    "attestations:campaign": {"args": ("campaign",), "get": READERS},
    "attestations:campaign-action": {"args": ("campaign", "cancel"), "post": row(LOGIN, 403, 403, 400, 400, auditor=403)},
    "attestations:exports": {"get": EVERYONE},
    # Generating an export is an action: an auditor reads the exports compliance requested.
    "attestations:export-create": {"get": row(LOGIN, 200, 200, 200, 200, auditor=403),
                                   "post": row(LOGIN, 400, 400, 400, 400, auditor=403)},
    "attestations:export": {"args": ("export",), "get": row(LOGIN, 200, 404, 200, 200, auditor=200)},
    "attestations:export-download": {"args": ("export",), "get": row(LOGIN, 200, 404, 200, 200, auditor=200)},
    "attestations:export-progress": {"args": ("export",), "get": row(LOGIN, 200, 404, 200, 200, auditor=200)},
    "attestations:export-certificate": {"get": EVERYONE},
    "api-root": {"get": row(403, 200, 200, 200, 200, auditor=200)},
    "api-schema": {"get": row(200, 200, 200, 200, 200, auditor=200)},
    "api-docs": {"get": row(200, 200, 200, 200, 200, auditor=200)},
    # An auditor sees contacts only as the evidence names them: never the contact pages.
    "contacts:list": {"get": STAFF_ONLY},
    "contacts:invite": {"get": STAFF_ONLY, "post": row(LOGIN, 403, 403, 400, 400, auditor=403)},
    "contacts:detail": {"args": ("contact_profile",), "get": STAFF_ONLY},
    "contacts:send-link": {"args": ("contact_profile",), "post": row(LOGIN, 403, 403, 302, 302, auditor=403)},
    "contacts:assign": {"args": ("contact_profile",), "post": row(LOGIN, 403, 403, 403, 400, auditor=403)},
    "contacts:deactivate": {"args": ("contact_profile",), "post": row(LOGIN, 403, 403, 400, 400, auditor=403)},
    "contacts:erase": {"args": ("contact_profile",), "post": row(LOGIN, 403, 403, 403, 400, auditor=403)},
    # The contact's side: the emailed link and code pages answer anyone; the rest only a contact session.
    "contacts:access": {"args": ("contact_token",), "get": row(200, 200, 200, 200, 200, 200, auditor=200),
                        "post": row(302, 302, 302, 302, 302, 302, auditor=403)},
    "contacts:code": {"get": row(400, 400, 400, 400, 400, 400, auditor=400),
                      "post": row(400, 400, 400, 400, 400, 400, auditor=403)},
    "contacts:code-resend": {"post": row(302, 302, 302, 302, 302, 302, auditor=403)},
    "contacts:home": {"get": row(401, 403, 403, 403, 403, 200, auditor=403)},
    "contacts:decide": {"args": ("contact_item",), "post": row(401, 403, 403, 403, 403, 400, auditor=403)},
    "contacts:sign-out": {"post": row(200, 200, 200, 200, 200, 200, auditor=403)},
    # Auditor access: compliance grants and ends it (admins read the list); ``other_grant`` is another
    # auditor's, so ending it leaves the signed-in auditor's own grant current.
    "auditors:list": {"get": row(LOGIN, 403, 403, 200, 200, auditor=403)},
    "auditors:grant": {"get": row(LOGIN, 403, 403, 200, 403, auditor=403),
                       "post": row(LOGIN, 403, 403, 400, 403, auditor=403)},
    "auditors:end": {"args": ("other_grant",), "post": row(LOGIN, 403, 403, 302, 403, auditor=403)},
    "auditors:send-link": {"args": ("other_grant",), "post": row(LOGIN, 403, 403, 302, 403, auditor=403)},
    # A new auditor's password link (here an unknown one: the page says the link does not work).
    "auditors:set-password": {"args": ("MTIzNDU", "set-password"), "get": row(200, 200, 200, 200, 200, auditor=200),
                              "post": row(200, 200, 200, 200, 200, auditor=403)},
    "auditors:password-set": {"get": row(200, 200, 200, 200, 200, auditor=200)},
    # Operations: no session needed. /health/ answers everyone (a contact session reaches only the contact pages);
    # /metrics answers the test client's loopback address whoever is signed in, and refuses other addresses
    # without the token (tests/portal/test_operations.py).
    "health": {"get": row(200, 200, 200, 200, 200, auditor=200)},
    "metrics": {"get": row(200, 200, 200, 200, 200, auditor=200)},
    "scim-tokens": {"get": row(LOGIN, 403, 403, 403, 200), "post": row(LOGIN, 403, 403, 403, 400)},
    "scim-token-revoke": {"args": ("scim_token",), "post": row(LOGIN, 403, 403, 403, 302)},
    # SCIM 2.0 (on in this world: SCIM_ENABLED) answers a SCIM client's bearer token only: a session, however
    # privileged, is no client, so every role gets 401 with a SCIM error (tests/identity/test_scim.py).
    **{f"scim:{name}": {method: SCIM_REFUSED for method in methods} for name, methods in {
        "root": ("get",), "search": ("post",), "users-search": ("post",), "users": ("get", "post"),
        "groups-search": ("post",), "groups": ("get", "post"), "me": ("get",), "service-provider-config": ("get",),
        "resource-types": ("get",), "schemas": ("get",), "bulk": ("post",),
    }.items()},
}

# REST routes: the per-router matrices of tests/api (url name -> method -> role -> status), each with
# its way of naming the object, plus routers those modules do not cover (same shape, with "args").
API_MATRICES = (
    (test_keys_api.MATRIX, test_keys_api.matrix_url),
    (test_campaigns_api.MATRIX, test_campaigns_api.matrix_url),
)
API_EXTRA = {
    "usage-list": {"post": row(403, 403, 403, 403, 400, auditor=403)},
    "exposure-list": {"get": row(403, 403, 403, 200, 200, auditor=200), "post": row(403, 400, 400, 400, 400, auditor=403)},
    "export-list": {"get": row(403, 200, 200, 200, 200, auditor=200), "post": row(403, 400, 400, 400, 400, auditor=403)},
    "export-detail": {"args": ("export",), "get": row(403, 200, 404, 200, 200, auditor=200)},
    "export-download": {"args": ("export",), "get": row(403, 200, 404, 200, 200, auditor=200)},
}


def _api_url(name, world):
    for matrix, url_for in API_MATRICES:
        if name in matrix:
            return url_for(name, world)
    return _reverse(name, API_EXTRA[name].get("args", ()), world)


API_ROUTES = {
    (name, method): expected
    # The routers' own matrices win over an entry here for the same route.
    for matrix in (API_EXTRA, *(m for m, _ in API_MATRICES))
    for name, methods in matrix.items()
    for method, expected in methods.items()
    if method != "args"
}


def _walk(patterns, prefix="", namespace=""):
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            inner = ":".join(filter(None, [namespace, pattern.namespace]))
            yield from _walk(pattern.url_patterns, route, inner)
        elif isinstance(pattern, URLPattern):
            name = ":".join(filter(None, [namespace, pattern.name])) if pattern.name else route
            yield route, name, pattern.callback


def served_routes() -> tuple[set[str], set[tuple[str, str]]]:
    """Every page name, and every REST (name, method), the project serves outside the admin and static files."""
    pages, api = set(), set()
    for route, name, callback in _walk(get_resolver().url_patterns):
        if route.lstrip("^").startswith(EXCLUDED_PREFIXES):
            continue
        actions = getattr(callback, "actions", None)
        if actions:
            api.update((name, method) for method in actions)
        else:
            pages.add(name)
    return pages, api


SERVED_PAGES, SERVED_API = served_routes()


def test_matrix_covers_every_url():
    """A served URL without an entry fails. (An entry whose URL is not served is skipped below, so an entry
    may land before the feature it describes.)"""
    assert not SERVED_PAGES - set(PAGES), f"pages without a matrix entry: {sorted(SERVED_PAGES - set(PAGES))}"
    assert not SERVED_API - set(API_ROUTES), f"API routes without a matrix entry: {sorted(SERVED_API - set(API_ROUTES))}"


def skip_unless_served(served: bool, label: str) -> None:
    if not served:
        pytest.skip(f"{label} is not served in this tree")


@pytest.fixture
def world(owner, other_owner, compliance_user, admin_user, auditor_user, key, other_key, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    exception = factories.KeyExceptionFactory(key=key, requested_by=owner)
    contact, contact_token = contact_access.invite_contact(
        actor=compliance_user, customer=key.workflow.customer, name="Pat Contact", email="pat@customer.test"
    )
    contact_key = factories.ApiKeyFactory(workflow=key.workflow, owner=other_owner)
    contact_access.assign_key(contact, contact_key, actor=admin_user)
    # Keep-and-flag: the matrix's close of the campaign leaves the keys as they are.
    campaign = campaigns.create_campaign(
        actor=compliance_user, name="2026-Q4", default_action=DefaultAction.KEEP_AND_FLAG
    )
    campaigns.launch_campaign(campaign, actor=compliance_user)
    erin = factories.OwnerFactory(username="erin")
    moving = factories.ApiKeyFactory(owner=erin)
    transfer = OwnershipTransfer.objects.create(
        key=moving, from_user=erin, to_user=owner, requested_by=erin, reason="Erin moves to another team."
    )
    doomed = factories.ApiKeyFactory(owner=erin)
    lifecycle.revoke_key(doomed, actor=admin_user, reason_code=RevocationReason.MANUAL, reason="Matrix fixture.")
    export = EvidenceExport(kind=EvidenceExport.Kind.KEY, key=key, requested_by=owner,
                            status=EvidenceExport.Status.DONE, progress=100,
                            parameters={"kind": "key", "key": key.pk, "subject": str(key)})
    export.file.save("evidence-matrix.pdf", ContentFile(b"%PDF-1.7\n% matrix stand-in\n%%EOF\n"), save=False)
    export.sha256, export.size, export.page_count = "0" * 64, 30, 1
    export.save()
    token = None
    if importlib.util.find_spec("keys.services.tokens"):  # integration tokens may land after this matrix
        from keys.services import tokens

        token, _ = tokens.create_token(actor=admin_user, name="Gateway sync", issuing_system=key.issuing_system,
                                       acts_as=factories.UserFactory(username="svc-gateway"))
    exposure = report_exposure(reporter=other_owner, source=ExposureSource.PORTAL, fingerprint=key.fingerprint,
                               location="Matrix fixture.")
    scim_token = None
    if importlib.util.find_spec("identity.services.scim_tokens"):
        from identity.services import scim_tokens

        settings.SCIM_ENABLED = True
        scim_token, _ = scim_tokens.create_token(actor=admin_user, name="Okta")
    return {
        "contact": contact.user, "contact_profile": contact, "contact_token": contact_token, "exposure": exposure,
        "contact_item": campaign.items.get(key=contact_key),
        "export": export, "token": token, "scim_token": scim_token,
        "anon": None, "owner": owner, "other": other_owner, "compliance": compliance_user, "admin": admin_user,
        "auditor": auditor_user,
        "other_grant": factories.grant_access(factories.AuditorFactory(username="olaf"), by=compliance_user),
        "key": key, "other_key": other_key, "exception": exception, "campaign": campaign,
        "item": campaign.items.get(key=key), "other_item": campaign.items.get(key=other_key),
        "transfer": transfer, "revocation": doomed.revocation_requests.first(),
        "release": KeyRelease.objects.create(
            key=key, reason="Matrix fixture.", status_before=KeyStatus.ACTIVE, requested_by=owner,
            ends_at=timezone.now() + datetime.timedelta(days=7), status=ReleaseStatus.ROLLED_BACK),
    }


def _reverse(name, args, world):
    return reverse(name, args=[_arg(world[a]) if a in world else a for a in args])


def _arg(value):
    return value if isinstance(value, str) else value.pk


def client_for(user) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_login(user)
    return client


INLINE_SCRIPT = re.compile(r"<script\b(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>", re.I)
INLINE_STYLE = re.compile(r"<style\b|\sstyle=|\shx-on[:-]|\son[a-z]+=\s*[\"']|javascript:", re.I)


def assert_no_inline_code(response, label: str) -> None:
    """An HTML page the CSP can enforce: no inline script, style element, style attribute or handler."""
    if response.status_code != 200 or not response["Content-Type"].startswith("text/html"):
        return
    html = response.content.decode()
    assert not INLINE_SCRIPT.search(html), f"{label}: inline <script> {INLINE_SCRIPT.search(html).group(0)}"
    found = INLINE_STYLE.search(html)
    assert not found, f"{label}: inline code {html[max(found.start() - 80, 0):found.end() + 40]!r}"
    assert "Content-Security-Policy" in response, f"{label}: no CSP header"


def assert_answer(response, expected, label: str) -> None:
    if expected == LOGIN:
        assert response.status_code == 302, f"{label}: {response.status_code}"
        assert response.url.startswith(reverse("login") + "?next="), f"{label}: redirected to {response.url}"
    else:
        assert response.status_code == expected, f"{label}: {response.status_code} {response.content[:300]!r}"


@pytest.mark.parametrize(("name", "method"), [(n, m) for n, spec in PAGES.items() for m in spec if m != "args"])
def test_page_permissions(world, name, method):
    skip_unless_served(name in SERVED_PAGES, name)
    url = _reverse(name, PAGES[name].get("args", ()), world)
    for role in ROLES:
        response = getattr(client_for(world[role]), method)(url)
        label = f"{role} {method.upper()} {url} ({name})"
        assert_answer(response, expected_for(PAGES[name][method], role, method), label)
        assert_no_inline_code(response, label)
    world["key"].refresh_from_db()
    assert world["key"].status == KeyStatus.ACTIVE


@pytest.mark.parametrize(("name", "method"), sorted(API_ROUTES))
def test_api_permissions(world, name, method):
    skip_unless_served((name, method) in SERVED_API, f"{method.upper()} {name}")
    url = _api_url(name, world)
    for role in ROLES:
        response = getattr(client_for(world[role]), method)(url, {}, format="json")
        assert response.status_code == expected_for(API_ROUTES[(name, method)], role, method), (
            f"{role} {method.upper()} {url} ({name}): {response.status_code} {response.content[:300]!r}"
        )
    world["key"].refresh_from_db()
    assert world["key"].status == KeyStatus.ACTIVE
