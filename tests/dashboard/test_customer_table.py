"""The dashboard's table of keys per customer: the customers needing attention most (flagged keys, then reviews
due), a few of them, with the others on a paged, sortable list read from the key summary."""

import datetime
import re

import pytest
from django.urls import reverse
from django.utils import timezone

from dashboard import summary, tasks
from dashboard.models import KeySummaryRefresh
from dashboard.views import CUSTOMER_ROWS_SHOWN
from keys.choices import ContractStatus
from keys.services import lifecycle
from tests import factories

pytestmark = pytest.mark.django_db

LIST = reverse("dashboard:customers")
# Customer name -> (flagged keys, keys due for review); each customer also has one key with nothing to attend.
ATTENTION = {"Customer 05": (3, 0), "Customer 09": (2, 0), "Customer 02": (1, 1), "Customer 11": (0, 2)}
NAMES = [f"Customer {n:02}" for n in range(13)]
# Most flagged first, then most reviews due, then by name.
IN_ORDER = ["Customer 05", "Customer 09", "Customer 02", "Customer 11",
            *sorted(set(NAMES) - set(ATTENTION))]


@pytest.fixture
def customers(owner):
    today = timezone.localdate()
    later = today + datetime.timedelta(days=90)
    made = {}
    for name in NAMES:
        customer = factories.CustomerFactory(
            name=name, contract_status=ContractStatus.ENDING if name == "Customer 12" else ContractStatus.ACTIVE)
        workflow = factories.WorkflowFactory(customer=customer)
        flagged, due = ATTENTION.get(name, (0, 0))
        keys = [factories.ApiKeyFactory(owner=owner, workflow=workflow, orphaned=True, next_review_on=later)
                for _ in range(flagged)]
        keys += [factories.ApiKeyFactory(owner=owner, workflow=workflow, next_review_on=today + datetime.timedelta(days=2))
                 for _ in range(due)]
        keys.append(factories.ApiKeyFactory(owner=owner, workflow=workflow, next_review_on=later))
        made[name] = keys
    return made


@pytest.fixture(params=["live", "summary"])
def counted(request, settings):
    """The dashboard counting live (few keys) or reading the summary (many keys)."""
    if request.param == "summary":
        settings.DASHBOARD_SUMMARY_MIN_KEYS = 1
        tasks.refresh_key_summary()
    return request.param


def listed(response) -> list[str]:
    return [row.record.customer.name for row in response.context["table"].page.object_list]


@pytest.mark.parametrize("user_fixture", ["compliance_user", "admin_user"])
def test_the_dashboard_shows_the_customers_needing_attention_first(client, request, customers, counted, user_fixture):
    client.force_login(request.getfixturevalue(user_fixture))
    response = client.get(reverse("dashboard"))
    context = response.context
    assert [row["customer_name"] for row in context["customer_rows"]] == IN_ORDER[:CUSTOMER_ROWS_SHOWN]
    assert context["customer_count"] == len(NAMES)
    # The totals still count every customer's keys.
    assert context["total"] == sum(len(keys) for keys in customers.values()) == 13 + 9
    assert context["flag_counts"]["orphaned"] == 6
    assert f'href="{LIST}"' in response.text
    assert f"The {CUSTOMER_ROWS_SHOWN} customers with the most flagged keys and reviews due, of 13." in response.text
    assert "<caption" in response.text.split('data-testid="customer-table"')[1].split("</table>")[0]


def test_few_customers_are_all_shown_without_a_link(client, compliance_user, owner):
    for name in ("Acme", "Globex"):
        factories.ApiKeyFactory(owner=owner, workflow=factories.WorkflowFactory(customer=factories.CustomerFactory(name=name)))
    client.force_login(compliance_user)
    response = client.get(reverse("dashboard"))
    assert [row["customer_name"] for row in response.context["customer_rows"]] == ["Acme", "Globex"]
    assert LIST not in response.text and 'data-testid="customers-shown"' not in response.text


def test_the_list_pages_every_customer_in_order_of_attention(client, compliance_user, customers, counted):
    client.force_login(compliance_user)
    seen, url = [], LIST + "?per_page=5"
    while url:
        response = client.get(url)
        assert response.status_code == 200
        seen += listed(response)
        url = response.context["table"].page.next_url
    assert seen == IN_ORDER
    first = client.get(LIST + "?per_page=5")
    assert "1–5 of 13" in re.sub(r"\s+", " ", first.text)
    row = next(r.record for r in first.context["table"].page.object_list if r.record.customer.name == "Customer 02")
    assert (row.total, row.active, row.flagged, row.due_for_review) == (3, 3, 1, 1)


def test_the_list_sorts_and_filters(client, compliance_user, customers):
    client.force_login(compliance_user)
    assert listed(client.get(LIST + "?sort=-customer")) == sorted(NAMES, reverse=True)
    by_total = listed(client.get(LIST + "?sort=-total"))
    # 4 keys, then 3 each (the customer breaking ties in the sort's direction), then 1 each.
    assert by_total[:4] == ["Customer 05", "Customer 11", "Customer 09", "Customer 02"]
    assert listed(client.get(LIST + "?attention=true")) == IN_ORDER[:4]
    assert listed(client.get(LIST + "?attention=false")) == IN_ORDER[4:]
    assert listed(client.get(LIST + "?q=ustomer 1")) == ["Customer 11", "Customer 10", "Customer 12"]
    assert listed(client.get(LIST + "?contract=ending")) == ["Customer 12"]


def test_while_the_dashboard_counts_live_the_list_is_counted_when_the_summary_is_older_than_the_job(
        client, compliance_user, customers):
    client.force_login(compliance_user)
    assert KeySummaryRefresh.objects.count() == 0
    assert listed(client.get(LIST))[0] == "Customer 05"  # no summary yet: counted now
    for key in customers["Customer 10"][:1]:
        lifecycle.suspend_key(key, actor=compliance_user, reason="test")
    for name in ("Customer 10", "Customer 12"):
        for _ in range(4):
            factories.ApiKeyFactory(owner=customers[name][0].owner, workflow=customers[name][0].workflow,
                                    unattested=True, next_review_on=timezone.localdate() + datetime.timedelta(days=90))
    # As of the last count while it is younger than the job's interval ...
    assert listed(client.get(LIST))[0] == "Customer 05"
    # ... counted again once older (no worker has counted since).
    KeySummaryRefresh.objects.update(refreshed_at=timezone.now() - summary.SUMMARY_INTERVAL - datetime.timedelta(seconds=1))
    response = client.get(LIST)
    assert listed(response)[:3] == ["Customer 10", "Customer 12", "Customer 05"]
    assert response.context["counted_at"] == KeySummaryRefresh.objects.get().refreshed_at


def test_once_the_summary_is_read_the_list_shows_it_as_of_its_refresh(client, compliance_user, customers, settings):
    settings.DASHBOARD_SUMMARY_MIN_KEYS = 1
    refresh = tasks.refresh_key_summary()
    client.force_login(compliance_user)
    for _ in range(4):
        factories.ApiKeyFactory(owner=customers["Customer 10"][0].owner, workflow=customers["Customer 10"][0].workflow,
                                unattested=True)
    # Never counted per view once the keys are many, however old the job's last count.
    KeySummaryRefresh.objects.update(refreshed_at=timezone.now() - datetime.timedelta(hours=2))
    response = client.get(LIST)
    assert listed(response)[0] == "Customer 05"
    assert response.context["counted_at"] is not None and 'data-testid="counted-at"' in response.text
    assert refresh == 22
    tasks.refresh_key_summary()
    assert listed(client.get(LIST))[0] == "Customer 10"


def test_the_list_keeps_its_query_count(client, compliance_user, customers, settings, django_assert_max_num_queries):
    settings.DASHBOARD_SUMMARY_MIN_KEYS = 1
    tasks.refresh_key_summary()
    client.force_login(compliance_user)
    # Session, user, roles, the summary's refresh, the page of rows, the count, the navigation's inbox count.
    with django_assert_max_num_queries(9):
        assert client.get(LIST + "?per_page=5").status_code == 200


@pytest.mark.parametrize("user_fixture", ["owner", "other_owner"])
def test_owners_may_not_read_the_list(client, request, customers, user_fixture):
    client.force_login(request.getfixturevalue(user_fixture))
    assert client.get(LIST).status_code == 403
