"""The register of exceptions on compliance's dashboard lists the customers with the most exceptions in force,
a few of them, and links to the exception list for the rest."""

import pytest
from django.urls import reverse

from dashboard.views import ATTENTION_LIST_SIZE
from keys.choices import ExceptionKind, ExceptionStatus
from tests import factories

pytestmark = pytest.mark.django_db


def exceptions_for(name: str, count: int, **fields) -> None:
    workflow = factories.WorkflowFactory(customer=factories.CustomerFactory(name=name))
    for _ in range(count):
        factories.KeyExceptionFactory(key=factories.ApiKeyFactory(workflow=workflow), **fields)


def test_the_customers_with_the_most_exceptions_come_first(client, compliance_user):
    for n in range(ATTENTION_LIST_SIZE + 1):
        exceptions_for(f"Customer {n:02}", 1)
    exceptions_for("Most", 2, kind=ExceptionKind.PERMANENT, status=ExceptionStatus.APPROVED, end_date=None)
    exceptions_for("Rejected only", 3, status=ExceptionStatus.REJECTED)
    client.force_login(compliance_user)
    response = client.get(reverse("dashboard"))
    register = response.context["exception_register"]
    rows = [(row["key__workflow__customer__name"], row["permanent"], row["total"]) for row in register["by_customer"]]
    assert rows == [("Most", 2, 2), *((f"Customer {n:02}", 0, 1) for n in range(ATTENTION_LIST_SIZE - 1))]
    assert register["more_customers"] and register["total"] == ATTENTION_LIST_SIZE + 3
    assert 'data-testid="exceptions-customers-shown"' in response.text


def test_few_customers_are_all_listed(client, compliance_user):
    exceptions_for("Acme", 1)
    client.force_login(compliance_user)
    response = client.get(reverse("dashboard"))
    register = response.context["exception_register"]
    assert [row["key__workflow__customer__name"] for row in register["by_customer"]] == ["Acme"]
    assert not register["more_customers"] and 'data-testid="exceptions-customers-shown"' not in response.text
