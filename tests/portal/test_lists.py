"""Every list page (core.lists.ObjectListView), through one set of tests.

Each list has an entry in ``LISTS``: how to make rows that belong to alice (the owner fixture), who sees
them, who may not open the page, a query that keeps them and one that drops them. For every list:
the right users see the rows, another owner does not, anonymous is sent to sign in, the filters narrow
the rows, pages follow one another, and the number of queries does not grow with the rows. A list view
routed without an entry fails ``test_every_list_view_has_an_entry``.
"""

import datetime
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import Client, RequestFactory
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from attestations.choices import ItemStatus
from attestations.models import EvidenceExport
from attestations.services import campaigns
from contacts import access as contact_access
from core.lists import ObjectListView
from keys.choices import ExposureSource, KeyStatus, ReleaseStatus, RevocationReason
from keys.models import Exposure, KeyRelease
from keys.services import lifecycle, tokens
from tests import factories

pytestmark = pytest.mark.django_db

ROLES = ("owner", "other", "compliance", "admin")


@dataclass(frozen=True)
class ListPage:
    """One list page: ``build(users, n)`` makes n rows belonging to alice and returns them."""

    name: str
    build: Callable[[dict, int], list]
    marker: Callable[[object], str]
    seen_by: frozenset
    match: dict
    miss: dict
    denied: frozenset = frozenset()
    per_page: int = 25
    url: Callable[[list], str] | None = None
    extra: dict = field(default_factory=dict)

    def url_for(self, rows: list) -> str:
        return self.url(rows) if self.url else reverse(self.name)

    @property
    def viewer(self) -> str:
        return next(role for role in ("owner", "compliance", "admin") if role in self.seen_by)


def alice_keys(users, n, **kwargs):
    return [factories.ApiKeyFactory(owner=users["owner"], **kwargs) for _ in range(n)]


def build_exceptions(users, n):
    return [factories.KeyExceptionFactory(key=key, requested_by=users["owner"]) for key in alice_keys(users, n)]


def build_releases(users, n):
    return [
        KeyRelease.objects.create(key=key, reason="No longer used.", status_before=KeyStatus.ACTIVE,
                                  requested_by=users["owner"], ends_at=timezone.now() + datetime.timedelta(days=7))
        for key in alice_keys(users, n, status=KeyStatus.SUSPENDED)
    ]


def build_revocations(users, n):
    keys = alice_keys(users, n)
    for key in keys:
        lifecycle.revoke_key(key, actor=users["admin"], reason_code=RevocationReason.MANUAL, reason="List test.")
    return [key.revocation_requests.get() for key in keys]


def build_exposures(users, n):
    return [
        Exposure.objects.create(key=key, fingerprint=f"{key.pk:064x}", location=f"gist {key.pk}",
                                source=ExposureSource.PORTAL, reported_by=users["other"])
        for key in alice_keys(users, n)
    ]


def build_tokens(users, n):
    system = factories.IssuingSystemFactory()
    return [
        tokens.create_token(actor=users["admin"], name=f"alice sync {factories.make_secret('')}", issuing_system=system,
                            acts_as=factories.UserFactory())[0]
        for _ in range(n)
    ]


def build_scim_tokens(users, n):
    from identity.services import scim_tokens

    return [scim_tokens.create_token(actor=users["admin"], name=f"Okta {factories.make_secret('')}")[0]
            for _ in range(n)]


def build_campaigns(users, n):
    return [campaigns.create_campaign(actor=users["compliance"], name=f"Alice review {factories.make_secret('')}")
            for _ in range(n)]


def build_campaign_items(users, n):
    keys = alice_keys(users, n)
    campaign = campaigns.create_campaign(actor=users["compliance"], name=f"Items {factories.make_secret('')}")
    campaigns.launch_campaign(campaign, actor=users["compliance"])
    return list(campaign.items.filter(key__in=keys))


def build_exports(users, n):
    return [
        EvidenceExport.objects.create(kind=EvidenceExport.Kind.KEY, key=key, requested_by=users["owner"],
                                      parameters={"kind": "key", "key": key.pk, "subject": str(key)})
        for key in alice_keys(users, n)
    ]


def build_successions(users, n):
    """Keys of owners who left, whose manager is alice."""
    rows = []
    for _ in range(n):
        departed = factories.OwnerFactory()
        factories.OwnerProfileFactory(user=departed, manager=users["owner"], is_active=False)
        rows.append(factories.ApiKeyFactory(owner=departed, orphaned=True))
    return rows


def build_contacts(users, n):
    customer = factories.CustomerFactory()
    return [
        contact_access.invite_contact(actor=users["compliance"], customer=customer, name=f"Contact {i}",
                                      email=f"alice-contact-{customer.pk}-{i}@customer.test")[0]
        for i in range(n)
    ]


def build_customer_key_counts(users, n):
    """Customers with one key of alice's each: their rows on the per-customer list, counted when it is opened."""
    return [factories.ApiKeyFactory(owner=users["owner"]).workflow.customer for _ in range(n)]


def build_auditor_grants(users, n):
    return [factories.grant_access(factories.AuditorFactory(), by=users["compliance"]) for _ in range(n)]


EVERYONE_SEES = frozenset({"owner", "compliance", "admin"})
STAFF = frozenset({"compliance", "admin"})

LISTS = [
    ListPage("keys:list", lambda users, n: alice_keys(users, n), lambda key: f'href="/keys/{key.pk}/"',
             seen_by=EVERYONE_SEES, match={"status": KeyStatus.ACTIVE}, miss={"status": KeyStatus.REVOKED}),
    ListPage("keys:exceptions", build_exceptions, lambda exc: f'href="/keys/exceptions/{exc.pk}/"',
             seen_by=EVERYONE_SEES, match={"kind": "transitional"}, miss={"kind": "permanent"}),
    ListPage("keys:releases", build_releases, lambda release: f'id="release-{release.pk}"',
             seen_by=EVERYONE_SEES, match={"state": "open"}, miss={"state": ReleaseStatus.ROLLED_BACK}, per_page=50),
    ListPage("keys:revocations", build_revocations, lambda request: f'id="revocation-{request.pk}"',
             seen_by=STAFF, denied=frozenset({"owner", "other"}), match={"emergency": "false"},
             miss={"emergency": "true"}),
    ListPage("keys:exposures", build_exposures, lambda exposure: f'id="exposure-{exposure.pk}"',
             seen_by=STAFF, denied=frozenset({"owner", "other"}), match={"matched": "true"}, miss={"matched": "false"}),
    ListPage("keys:tokens", build_tokens, lambda token: f'id="token-{token.pk}"',
             seen_by=frozenset({"admin"}), denied=frozenset({"owner", "other", "compliance"}),
             match={"active": "true"}, miss={"active": "false"}, per_page=50),
    ListPage("scim-tokens", build_scim_tokens, lambda token: f'id="scim-token-{token.pk}"',
             seen_by=frozenset({"admin"}), denied=frozenset({"owner", "other", "compliance"}),
             match={"active": "true"}, miss={"active": "false"}, per_page=50),
    ListPage("attestations:campaigns", build_campaigns, lambda campaign: f'href="/campaigns/{campaign.pk}/"',
             seen_by=STAFF, denied=frozenset({"owner", "other"}), match={"status": "draft"}, miss={"status": "active"}),
    ListPage("attestations:campaign", build_campaign_items, lambda item: f'href="/items/{item.pk}/"',
             seen_by=STAFF, denied=frozenset({"owner", "other"}), match={"status": ItemStatus.PENDING},
             miss={"status": ItemStatus.CONFIRMED}, per_page=25,
             url=lambda items: reverse("attestations:campaign", args=[items[0].campaign_id])),
    ListPage("attestations:exports", build_exports, lambda export: f'href="/exports/{export.pk}/"',
             seen_by=EVERYONE_SEES, match={"kind": "key"}, miss={"kind": "campaign"}, per_page=50),
    ListPage("attestations:successions", build_successions, lambda key: f'id="succession-key-{key.pk}"',
             seen_by=frozenset({"owner", "admin"}), match={"owner": "user"}, miss={"owner": "nobody-by-this-name"},
             per_page=50),
    ListPage("contacts:list", build_contacts, lambda contact: f'href="/contacts/{contact.pk}/"',
             seen_by=STAFF, denied=frozenset({"owner", "other"}), match={"active": "yes"}, miss={"active": "no"},
             per_page=50),
    ListPage("dashboard:customers", build_customer_key_counts, lambda customer: f'href="/keys/?customer={customer.pk}"',
             seen_by=STAFF, denied=frozenset({"owner", "other"}), match={"contract": "active"},
             miss={"contract": "ended"}, per_page=50),
    ListPage("auditors:list", build_auditor_grants, lambda grant: f'id="grant-{grant.pk}"',
             seen_by=STAFF, denied=frozenset({"owner", "other"}), match={"state": "current"}, miss={"state": "ended"},
             per_page=50),
]
BY_NAME = {page.name: page for page in LISTS}


@pytest.fixture
def users(owner, other_owner, compliance_user, admin_user):
    return {"owner": owner, "other": other_owner, "compliance": compliance_user, "admin": admin_user}


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def list_views():
    def walk(patterns, namespace=""):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, ":".join(filter(None, [namespace, pattern.namespace])))
            elif isinstance(pattern, URLPattern):
                view_class = getattr(pattern.callback, "view_class", None)
                if view_class is not None and issubclass(view_class, ObjectListView):
                    yield ":".join(filter(None, [namespace, pattern.name]))

    return set(walk(get_resolver().url_patterns))


def test_every_list_view_has_an_entry():
    assert list_views() == set(BY_NAME)


@pytest.mark.parametrize("page", LISTS, ids=lambda page: page.name)
def test_who_sees_the_rows(page, users):
    rows = page.build(users, 2)
    url = page.url_for(rows)
    anonymous = Client().get(url)
    assert anonymous.status_code == 302 and anonymous.url == f"{reverse('login')}?next={url}"
    for role in ROLES:
        response = client_for(users[role]).get(url)
        if role in page.denied:
            assert response.status_code == 403, role
            continue
        assert response.status_code == 200, role
        html = response.content.decode()
        assert "{#" not in html
        for row in rows:
            assert (page.marker(row) in html) == (role in page.seen_by), f"{role} {page.marker(row)}"


@pytest.mark.parametrize("page", LISTS, ids=lambda page: page.name)
def test_filters_narrow_the_rows(page, users):
    rows = page.build(users, 1)
    client = client_for(users[page.viewer])
    url = page.url_for(rows)
    assert page.marker(rows[0]) in client.get(url, page.match).content.decode()
    narrowed = client.get(url, page.miss)
    assert narrowed.status_code == 200 and page.marker(rows[0]) not in narrowed.content.decode()


@pytest.mark.parametrize("page", LISTS, ids=lambda page: page.name)
def test_pages_follow_one_another(page, users):
    rows = page.build(users, page.per_page + 1)
    client = client_for(users[page.viewer])
    url = page.url_for(rows)
    first = client.get(url)
    assert len(first.context["table"].page.object_list) == page.per_page
    assert 'rel="next"' in first.content.decode()
    second = client.get(first.context["table"].page.next_url)
    assert len(second.context["table"].page.object_list) >= 1
    assert 'rel="prev"' in second.content.decode()
    shown = first.content.decode() + second.content.decode()
    assert all(page.marker(row) in shown for row in rows)
    back = client.get(second.context["table"].page.previous_url)
    assert [row.record.pk for row in back.context["table"].page.object_list] == [
        row.record.pk for row in first.context["table"].page.object_list]


@pytest.mark.parametrize("page", LISTS, ids=lambda page: page.name)
def test_queries_do_not_grow_with_the_rows(page, users, django_assert_max_num_queries):
    client = client_for(users[page.viewer])
    # Two pages' worth against three times as many rows (a list of one page spares its count query).
    if page.url:
        # The page is one campaign's: its rows are made with it, so compare two campaigns.
        few = page.url_for(page.build(users, page.per_page + 1))
        many = page.url_for(page.build(users, 3 * page.per_page))
    else:
        page.build(users, page.per_page + 1)
        few = many = page.url_for([])
    client.get(few)
    with django_assert_max_num_queries(40) as small:
        client.get(few)
    if not page.url:
        page.build(users, 2 * page.per_page)
    with django_assert_max_num_queries(len(small.captured_queries)):
        response = client.get(many)
    assert len(response.context["table"].page.object_list) == page.per_page


@pytest.mark.parametrize("page", [p for p in LISTS if p.name in ("keys:list", "attestations:campaigns",
                                                                  "attestations:campaign")], ids=lambda page: page.name)
def test_htmx_refreshes_the_table_alone(page, users):
    rows = page.build(users, 1)
    client = client_for(users[page.viewer])
    url = page.url_for(rows)
    whole = client.get(url, headers={"HX-Request": "true", "HX-Target": "elsewhere"})
    assert "<html" in whole.content.decode()
    partial = client.get(url, page.match, headers={"HX-Request": "true", "HX-Target": whole.context["table_id"]})
    html = partial.content.decode()
    assert "<html" not in html and page.marker(rows[0]) in html and "<table" in html
    assert "HX-Request" in partial["Vary"]


@pytest.mark.parametrize("page", [p for p in LISTS if p.name not in ("keys:list", "attestations:campaigns",
                                                                      "attestations:campaign")], ids=lambda page: page.name)
def test_lists_reloaded_whole_answer_htmx_with_the_page(page, users):
    rows = page.build(users, 1)
    response = client_for(users[page.viewer]).get(page.url_for(rows), headers={"HX-Request": "true"})
    assert "<html" in response.content.decode() and "HX-Request" in response["Vary"]


def test_a_list_without_a_visibility_rule_refuses_to_guess(owner):
    class Unruled(ObjectListView):
        queryset = Exposure.objects.all()

    view = Unruled()
    view.setup(RequestFactory().get("/"))
    with pytest.raises(ImproperlyConfigured, match="visible_to"):
        view.visible_to(owner)


def test_a_page_for_given_roles_refuses_everyone_else(owner, compliance_user, admin_user):
    class AdminsOnly(ObjectListView):
        queryset = Exposure.objects.all()
        allowed_roles = ("admin",)

    factory = RequestFactory()
    for user, allowed in ((owner, False), (compliance_user, False), (admin_user, True)):
        request = factory.get("/")
        request.user = user
        view = AdminsOnly()
        view.setup(request)
        assert view.test_func() is allowed
