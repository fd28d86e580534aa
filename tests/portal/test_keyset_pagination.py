"""Keyset pagination (core.keyset) through the API's cursors and the HTML lists' First / Previous / Next.

Rows are made with ties in the sort columns (equal names, equal dates, NULLs) so that a page boundary falls
inside a run of equal values: a walk over every page must then give each row once, in the list's order.
"""

import datetime
import re

import pytest
from django.urls import reverse
from django.utils import timezone

from core import keyset
from core.api import CursorPagination
from core.lists import ObjectListView
from keys.choices import KeyStatus
from keys.models import ApiKey
from tests import factories
from tests.api import client_for as api_client_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def tied_keys(owner):
    """27 keys of one customer's two workflows, most with equal labels; expiry dates repeat and some are unset."""
    customer = factories.CustomerFactory(name="Acme")
    workflows = [factories.WorkflowFactory(customer=customer) for _ in range(2)]
    today = timezone.localdate()
    keys = []
    for i in range(27):
        keys.append(factories.ApiKeyFactory(
            owner=owner, workflow=workflows[i % 2], label="Same label" if i % 5 else f"Key {i}",
            expires_on=None if i % 4 == 0 else today + datetime.timedelta(days=i % 3),
            status=KeyStatus.SUSPENDED if i % 6 == 0 else KeyStatus.ACTIVE,
        ))
    return keys


def walk_api(client, url, params=None):
    pages, body = [], client.get(url, params or {}).json()
    pages.append(body)
    while body["next"]:
        body = client.get(body["next"]).json()
        pages.append(body)
    return pages


def test_the_api_walks_every_key_once_in_its_order(monkeypatch, owner, tied_keys):
    monkeypatch.setattr(CursorPagination, "page_size", 4)
    client = api_client_for(owner)
    pages = walk_api(client, reverse("apikey-list"))
    ids = [row["id"] for page in pages for row in page["results"]]
    expected = list(ApiKey.objects.filter(owner=owner).order_by("workflow__customer__name", "label", "pk")
                    .values_list("pk", flat=True))
    assert ids == expected and len(pages) == 7
    assert all("count" not in page for page in pages)
    assert pages[0]["previous"] is None and all(page["previous"] for page in pages[1:])
    # Backwards from the last page gives the same pages again.
    back = client.get(pages[-1]["previous"]).json()
    assert [row["id"] for row in back["results"]] == [row["id"] for row in pages[-2]["results"]]


def test_the_api_cursor_keeps_the_filters(monkeypatch, owner, tied_keys):
    monkeypatch.setattr(CursorPagination, "page_size", 4)
    pages = walk_api(api_client_for(owner), reverse("apikey-list"), {"status": KeyStatus.ACTIVE})
    assert all("status=active" in page["next"] for page in pages[:-1])
    ids = [row["id"] for page in pages for row in page["results"]]
    assert sorted(ids) == sorted(key.pk for key in tied_keys if key.status == KeyStatus.ACTIVE)
    assert len(ids) == len(set(ids))


def test_the_api_walks_a_descending_order_with_equal_times(monkeypatch, owner, compliance_user):
    monkeypatch.setattr(CursorPagination, "page_size", 3)
    key = factories.ApiKeyFactory(owner=owner)
    made = [factories.KeyExceptionFactory(key=key) for _ in range(8)]
    at = timezone.now()
    type(made[0]).objects.filter(pk__in=[e.pk for e in made[:5]]).update(requested_at=at)
    pages = walk_api(api_client_for(compliance_user), reverse("keyexception-list"))
    ids = [row["id"] for page in pages for row in page["results"]]
    expected = list(type(made[0]).objects.order_by("-requested_at", "-pk").values_list("pk", flat=True))
    assert ids == expected


def test_a_cursor_the_api_did_not_give_is_a_404(owner, tied_keys):
    client = api_client_for(owner)
    assert client.get(reverse("apikey-list"), {"cursor": "not-a-cursor"}).status_code == 404
    other_order = keyset.Keyset(ApiKey.objects.order_by("-label")).cursor_at(3)
    assert client.get(reverse("apikey-list"), {"cursor": other_order}).status_code == 404


def test_the_schema_describes_cursor_pages(client):
    schema = client.get(reverse("api-schema"), {"format": "json"}).json()
    listing = schema["paths"]["/api/v1/keys/"]["get"]
    assert "cursor" in {parameter["name"] for parameter in listing["parameters"]}
    assert "page" not in {parameter["name"] for parameter in listing["parameters"]}
    page_schema = schema["components"]["schemas"]["PaginatedApiKeyList"]["properties"]
    assert set(page_schema) == {"next", "previous", "results"}


# HTML lists


def walk_html(client, url, params):
    response = client.get(url, params)
    pages = [response]
    while response.context["table"].page.next_url:
        response = client.get(response.context["table"].page.next_url)
        pages.append(response)
    return pages


def shown(response) -> list[int]:
    return [row.record.pk for row in response.context["table"].page.object_list]


@pytest.mark.parametrize("sort", ["", "expires_on", "-expires_on", "owner", "-customer"])
def test_the_key_list_walks_every_key_once_under_each_sort(client, owner, tied_keys, sort, monkeypatch):
    monkeypatch.setattr(ObjectListView, "per_page", 4)
    client.force_login(owner)
    params = {"sort": sort} if sort else {}
    pages = walk_html(client, reverse("keys:list"), params)
    ids = [pk for page in pages for pk in shown(page)]
    assert sorted(ids) == sorted(key.pk for key in tied_keys) and len(ids) == len(set(ids))
    table = pages[0].context["table"]
    expected = list(keyset.Keyset(table.data.data).annotated.values_list("pk", flat=True))
    assert ids == expected
    if sort:
        assert all(f"sort={sort}" in page.context["table"].page.next_url for page in pages[:-1])
    # Previous from each page shows the page before it.
    for before, page in zip(pages, pages[1:], strict=False):
        assert shown(client.get(page.context["table"].page.previous_url)) == shown(before)


def test_nulls_sort_last_ascending_and_first_descending(client, owner, tied_keys, monkeypatch):
    monkeypatch.setattr(ObjectListView, "per_page", 100)
    client.force_login(owner)
    ascending = [ApiKey.objects.get(pk=pk).expires_on for pk in shown(client.get(reverse("keys:list"), {"sort": "expires_on"}))]
    assert ascending[-1] is None and ascending[0] is not None
    descending = [ApiKey.objects.get(pk=pk).expires_on for pk in shown(client.get(reverse("keys:list"), {"sort": "-expires_on"}))]
    assert descending[0] is None and descending[-1] is not None


def test_the_pagination_bar_links_first_previous_next_and_caps_the_count(client, owner, tied_keys, monkeypatch):
    monkeypatch.setattr(ObjectListView, "per_page", 10)
    client.force_login(owner)
    first = client.get(reverse("keys:list"), {"status": KeyStatus.ACTIVE})
    html = first.content.decode()
    active = sum(key.status == KeyStatus.ACTIVE for key in tied_keys)
    assert f"1–10 of\n        {active}" in html or f"1–10 of {active}" in " ".join(html.split())
    assert 'rel="next"' in html and 'rel="prev"' not in html and ">First<" not in html
    second = client.get(first.context["table"].page.next_url).content.decode()
    assert 'rel="prev"' in second and ">First<" in second and "status=active" in second
    # A sort link leaves the cursor behind: a new order starts at its first page.
    assert "cursor=" not in second.split("<thead")[1].split("</thead>")[0]
    monkeypatch.setattr(ObjectListView, "count_cap", 5)
    capped = " ".join(client.get(reverse("keys:list")).content.decode().split())
    assert "1–10 of more than 5" in capped


def test_a_stale_or_foreign_cursor_shows_the_first_page(client, owner, tied_keys, monkeypatch):
    monkeypatch.setattr(ObjectListView, "per_page", 4)
    client.force_login(owner)
    first = shown(client.get(reverse("keys:list")))
    assert shown(client.get(reverse("keys:list"), {"cursor": "garbage"})) == first
    sorted_cursor = client.get(reverse("keys:list"), {"sort": "owner"}).context["table"].page.next_url.split("cursor=")[1]
    assert shown(client.get(reverse("keys:list"), {"cursor": sorted_cursor})) == first


def test_a_deep_page_asks_no_offset(client, owner, tied_keys, monkeypatch, django_assert_max_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    monkeypatch.setattr(ObjectListView, "per_page", 4)
    client.force_login(owner)
    cursor = keyset.Keyset(client.get(reverse("keys:list")).context["table"].data.data).cursor_at(20)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse("keys:list"), {"cursor": cursor})
    expected = list(keyset.Keyset(response.context["table"].data.data).annotated.values_list("pk", flat=True))[20:24]
    assert shown(response) == expected
    assert not any("OFFSET" in query["sql"] for query in queries.captured_queries)


def test_a_page_starts_its_leading_column_at_one_comparison(owner, tied_keys):
    """``expires_on <= x``, not ``expires_on = x OR expires_on < x``: the database starts an index scan at the
    bound instead of filtering every row before it (a deep page sorted by expiry read half a million rows)."""
    rows = ApiKey.objects.filter(expires_on__isnull=False).order_by("-expires_on")
    paged = keyset.Keyset(rows)
    dated = list(paged.annotated[:6])
    for reverse_, lookup in ((False, "<="), (True, ">=")):
        condition = paged.beyond(paged.position(dated[3]), reverse_)
        sql = str(paged.annotated.filter(condition).query)
        assert f'"expires_on" {lookup} ' in sql
        assert not re.search(r'"expires_on" = \S+ OR "keys_apikey"\."expires_on" [<>]', sql), sql
    # The rows after the fourth are exactly those the order puts after it, equal dates included.
    after = list(paged.annotated.filter(paged.beyond(paged.position(dated[3]))).values_list("pk", flat=True))
    assert after == list(paged.annotated.values_list("pk", flat=True))[4:]
