import datetime

import pytest
from django.urls import reverse
from django.utils import timezone

from keys.choices import KeyStatus
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def portfolio(owner, other_owner):
    today = timezone.localdate()
    acme = factories.CustomerFactory(name="Acme")
    globex = factories.CustomerFactory(name="Globex")
    acme_flow = factories.WorkflowFactory(customer=acme)
    globex_flow = factories.WorkflowFactory(customer=globex)
    return {
        "review": factories.ApiKeyFactory(
            owner=owner, workflow=acme_flow, label="alice-review", next_review_on=today + datetime.timedelta(days=3),
            expires_on=today + datetime.timedelta(days=300),
        ),
        "expiring": factories.ApiKeyFactory(
            owner=owner, workflow=acme_flow, label="alice-expiring", next_review_on=today + datetime.timedelta(days=90),
            expires_on=today + datetime.timedelta(days=10),
        ),
        "rotate": factories.ApiKeyFactory(
            owner=owner, workflow=globex_flow, label="alice-rotate", status=KeyStatus.SUSPENDED,
            rotation_required=True, next_review_on=today + datetime.timedelta(days=90),
        ),
        "revoked": factories.ApiKeyFactory(
            owner=owner, workflow=globex_flow, label="alice-revoked", status=KeyStatus.REVOKED,
            next_review_on=today - datetime.timedelta(days=3),
        ),
        "bob": factories.ApiKeyFactory(
            owner=other_owner, workflow=globex_flow, label="bob-review", next_review_on=today + datetime.timedelta(days=1),
        ),
    }


def test_anonymous_is_sent_to_login(client):
    response = client.get(reverse("dashboard"))
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


def test_login_page_renders(client):
    response = client.get(reverse("login"))
    assert response.status_code == 200
    assert 'name="username"' in response.text


def test_owner_sees_only_their_keys(client, owner, portfolio):
    client.force_login(owner)
    response = client.get(reverse("dashboard"))
    assert response.status_code == 200
    context = response.context
    counts = {item["status"]: item["count"] for item in context["status_counts"]}
    assert counts == {"pending": 0, "active": 2, "suspended": 1, "revoked": 1, "expired": 0}
    assert [row["key"].label for row in context["due_for_review"]["rows"]] == ["alice-review"]
    assert [row["key"].label for row in context["expiring"]["rows"]] == ["alice-expiring"]
    assert [row["key"].label for row in context["rotation_required"]["rows"]] == ["alice-rotate"]
    assert context["customer_rows"] == []
    assert "bob-review" not in response.text
    assert "Keys per customer" not in response.text


@pytest.mark.parametrize("user_fixture", ["compliance_user", "admin_user"])
def test_compliance_and_admin_see_everything_per_customer(client, request, portfolio, user_fixture):
    client.force_login(request.getfixturevalue(user_fixture))
    response = client.get(reverse("dashboard"))
    context = response.context
    assert context["total"] == 5
    assert {row["key"].label for row in context["due_for_review"]["rows"]} == {"alice-review", "bob-review"}
    rows = {row["customer_name"]: row for row in context["customer_rows"]}
    assert rows["Acme"]["total"] == 2 and rows["Acme"]["active"] == 2 and rows["Acme"]["due_for_review"] == 1
    assert rows["Globex"]["total"] == 3
    assert (rows["Globex"]["suspended"], rows["Globex"]["revoked"], rows["Globex"]["flagged"]) == (1, 1, 1)
    assert "Keys per customer" in response.text


def test_navigation_by_role(client, owner, admin_user):
    client.force_login(owner)
    text = client.get(reverse("dashboard")).text
    assert reverse("keys:list") in text
    assert reverse("keys:import") not in text
    assert reverse("admin:index") not in text
    assert reverse("api-docs") in text
    assert 'action="' + reverse("logout") + '"' in text

    client.force_login(admin_user)
    text = client.get(reverse("dashboard")).text
    assert reverse("keys:import") in text
    assert reverse("admin:index") in text


def test_no_inline_scripts_or_styles(client, admin_user, portfolio):
    client.force_login(admin_user)
    pages = [reverse("dashboard"), reverse("keys:list"), reverse("keys:register"),
             reverse("keys:detail", args=[portfolio["review"].pk])]
    for url in pages:
        text = client.get(url).text
        assert "style=" not in text, url
        assert "<style" not in text, url
        assert " on" + "click=" not in text, url
        for chunk in text.split("<script")[1:]:
            assert chunk.lstrip().startswith("src="), url


def test_dashboard_query_count_is_bounded(client, compliance_user, portfolio, django_assert_max_num_queries):
    client.force_login(compliance_user)
    # 15 for the keys, 3 for the register of exceptions, 6 for the compliance overview, 2 for the review trends.
    with django_assert_max_num_queries(26):
        client.get(reverse("dashboard"))
