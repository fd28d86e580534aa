"""The Django admin, the part of the site the permission matrix (test_permission_matrix.py) leaves out.

The admin is for staff only (the admin role): every one of its URLs — each registered model's list, add,
change, delete and history pages, custom admin pages (guardian's object permissions, the TOTP device's QR
code), the index, the app lists, the catch-all — sends anonymous users, owners and compliance to the admin's
sign-in page, whatever object it names; for the admin, every list page renders. The admin URLs are
enumerated from ``admin.site``, so a model or admin page registered later is covered without an entry.
"""

import re

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import URLPattern, URLResolver

from tests import factories

pytestmark = pytest.mark.django_db

NOT_STAFF = ("anon", "owner", "other", "compliance")
# Pages the admin serves to anyone by design: its sign-in page (and sign-out, a POST that just ends a session).
PUBLIC = {"login", "logout"}
ARGUMENT = re.compile(r"<(?:\w+:)?(\w+)>")


def _walk(patterns, prefix=""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern), pattern.name


def _concrete(route: str) -> str:
    """A requestable path for a route: every argument filled in (a missing object is the admin's to report)."""
    if route.startswith("^(?P<app_label>"):
        return "keys/"
    if route == "(?P<url>.*)$":
        return "no-such-page/"
    return ARGUMENT.sub("1", route)


ADMIN_ROUTES = sorted({(route, name or "") for route, name in _walk(admin.site.get_urls())})


def test_every_registered_model_is_enumerated():
    names = {name for _, name in ADMIN_ROUTES}
    for model in admin.site._registry:
        info = model._meta.app_label, model._meta.model_name
        assert f"{info[0]}_{info[1]}_changelist" in names
    assert len(ADMIN_ROUTES) > 5 * len(admin.site._registry)


@pytest.fixture
def users(owner, other_owner, compliance_user, admin_user):
    return {"anon": None, "owner": owner, "other": other_owner, "compliance": compliance_user, "admin": admin_user}


def _client(user) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


# Who tries what: the anonymous visitor reads, an owner posts, compliance (read-everything in the portal) reads.
ATTEMPTS = (("anon", "get"), ("owner", "post"), ("compliance", "get"))


def test_every_admin_url_sends_everyone_but_staff_to_sign_in(users):
    clients = {role: _client(users[role]) for role, _ in ATTEMPTS}
    checked = 0
    for route, name in ADMIN_ROUTES:
        if name in PUBLIC:
            continue
        path = "/admin/" + _concrete(route)
        for role, method in ATTEMPTS:
            response = getattr(clients[role], method)(path)
            assert response.status_code == 302, f"{role} {method.upper()} {path} ({name}): {response.status_code}"
            assert response["Location"].startswith("/admin/login/"), f"{role} {path}: {response['Location']}"
            checked += 1
    assert checked >= 3 * (len(ADMIN_ROUTES) - len(PUBLIC))


# The admin role manages the portal's own records; framework tables (auth groups, beat schedules...) may be
# left to a superuser, so for those a 403 is the right answer too. A server error never is.
PORTAL_APPS = {"keys", "attestations", "portal", "contacts"}


@pytest.mark.parametrize("model", sorted(admin.site._registry, key=lambda m: m._meta.label), ids=lambda m: m._meta.label)
def test_admin_lists_render_for_staff(users, model):
    factories.ApiKeyFactory(owner=users["owner"])
    response = _client(users["admin"]).get(f"/admin/{model._meta.app_label}/{model._meta.model_name}/")
    expected = {200} if model._meta.app_label in PORTAL_APPS else {200, 403}
    assert response.status_code in expected, f"{model._meta.label}: {response.status_code}"
