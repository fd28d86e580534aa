"""The key list's search (trigram indexes on PostgreSQL) and its filter form's customer and workflow choices."""

import re

import pytest
from django.db import connection
from django.urls import reverse

from keys import filters
from keys.models import ApiKey
from tests import factories
from tests.postgres import requires_postgres

pytestmark = pytest.mark.django_db


def listed(client, **params) -> set[int]:
    response = client.get(reverse("keys:list"), params)
    assert response.status_code == 200
    return {row.record.pk for row in response.context["table"].page.object_list}


def test_search_finds_label_or_prefix_in_any_case(client, compliance_user):
    by_label = factories.ApiKeyFactory(label="Payroll export", prefix="sk_live_aaaa")
    by_prefix = factories.ApiKeyFactory(label="Nightly sync", prefix="sk_live_payr")
    underscore = factories.ApiKeyFactory(label="Other", prefix="sk_test_0001")
    factories.ApiKeyFactory(label="Unrelated", prefix="sk_live_bbbb")
    client.force_login(compliance_user)
    assert listed(client, q="PAYR") == {by_label.pk, by_prefix.pk}
    assert listed(client, q="  export ") == {by_label.pk}
    # "_" is a character to find, not LIKE's any-character.
    assert listed(client, q="test_0") == {underscore.pk}
    assert listed(client, q="t_s") == set()


@requires_postgres
def test_the_search_can_read_the_trigram_indexes():
    factories.ApiKeyFactory(label="Payroll export")
    searched = filters.ApiKeyFilterSet(data={"q": "sk_live_000a"}, queryset=ApiKey.objects.all()).qs
    sql, params = searched.query.sql_with_params()
    with connection.cursor() as cursor:
        # The test table is tiny: take scans of the whole table off the menu and ask whether the index fits.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_indexscan = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "keys_apikey_label_trgm" in plan and "keys_apikey_prefix_trgm" in plan, plan


def workflow_options(html: str, select_id: str = "id_workflow") -> list[str]:
    select = re.search(rf'<select[^>]*id="{select_id}".*?</select>', html, re.S).group(0)
    return re.findall(r'<option value="([^"]*)"', select)


@pytest.fixture
def many_workflows(monkeypatch):
    monkeypatch.setattr(filters, "WORKFLOW_CHOICES_SHOWN", 3)
    customers = [factories.CustomerFactory(), factories.CustomerFactory()]
    workflows = {customer.pk: [factories.WorkflowFactory(customer=customer) for _ in range(3)] for customer in customers}
    for listed_workflows in workflows.values():
        for workflow in listed_workflows:
            factories.ApiKeyFactory(workflow=workflow)
    return workflows


def test_more_workflows_than_shown_wait_for_a_customer(client, compliance_user, many_workflows):
    client.force_login(compliance_user)
    html = client.get(reverse("keys:list")).content.decode()
    assert workflow_options(html) == [""]
    assert "Choose a customer to list its workflows." in html
    assert 'aria-describedby="id_workflow_helptext"' in html
    customer, workflows = next(iter(many_workflows.items()))
    html = client.get(reverse("keys:list"), {"customer": customer}).content.decode()
    assert workflow_options(html) == ["", *(str(w.pk) for w in workflows)]
    # A workflow named in the query (a link, a saved filter) filters and stays shown, with or without its customer.
    chosen = workflows[1]
    response = client.get(reverse("keys:list"), {"workflow": chosen.pk})
    assert workflow_options(response.content.decode()) == ["", str(chosen.pk)]
    assert {row.record.workflow_id for row in response.context["table"].page.object_list} == {chosen.pk}


def test_few_workflows_are_all_offered(client, owner, many_workflows):
    key = factories.ApiKeyFactory(owner=owner)
    client.force_login(owner)
    assert workflow_options(client.get(reverse("keys:list")).content.decode()) == ["", str(key.workflow_id)]


def test_the_workflow_choices_follow_the_customer(client, compliance_user, many_workflows):
    client.force_login(compliance_user)
    (first, first_workflows), (second, second_workflows) = many_workflows.items()
    response = client.get(reverse("keys:workflow-options"), {"customer": second, "workflow": second_workflows[0].pk})
    html = response.content.decode()
    assert workflow_options(html) == ["", *(str(w.pk) for w in second_workflows)]
    assert 'selected' in html.split(f'value="{second_workflows[0].pk}"')[1].split(">")[0]
    assert "HX-Trigger" not in response
    # The customer changed under a workflow of the first one: the workflow is dropped and the table asked to refresh.
    response = client.get(reverse("keys:workflow-options"), {"customer": second, "workflow": first_workflows[0].pk})
    assert workflow_options(response.content.decode()) == ["", *(str(w.pk) for w in second_workflows)]
    assert response["HX-Trigger"] == "filter-choices-changed"


def test_an_owner_is_offered_only_workflows_they_see(client, owner, many_workflows):
    client.force_login(owner)
    hidden_customer, hidden = next(iter(many_workflows.items()))
    response = client.get(reverse("keys:workflow-options"), {"customer": hidden_customer})
    assert workflow_options(response.content.decode()) == [""]
    assert client.get(reverse("keys:list"), {"workflow": hidden[0].pk}).context["filter"].errors
