"""A campaign's progress on its page and API: totals, stages and reviewers counted per request; per customer
and the reviewers' figures of a large campaign counted by the worker (as of then), of a small one per
request. Each compared with a direct count after decisions, a close and a refresh."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django_celery_beat.models import PeriodicTask

from attestations import tasks
from attestations.choices import Decision, DefaultAction, ItemStatus
from attestations.models import AttestationItem, CampaignFigures
from attestations.services import campaigns, decisions, progress
from attestations.tables import percent_decided
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def campaign(compliance_user, owner, other_owner):
    acme = factories.WorkflowFactory(customer=factories.CustomerFactory(name="Acme"))
    globex = factories.WorkflowFactory(customer=factories.CustomerFactory(name="Globex"))
    for n in range(3):
        factories.ApiKeyFactory(owner=owner, workflow=acme if n < 2 else globex)
        factories.ApiKeyFactory(owner=other_owner, workflow=globex)
    campaign = campaigns.create_campaign(actor=compliance_user, name="Q4", default_action=DefaultAction.SUSPEND)
    campaigns.launch_campaign(campaign, actor=compliance_user)
    campaign.refresh_from_db()
    return campaign


def confirm(item, actor):
    decisions.record_decision(item, actor=actor, decision=Decision.CONFIRM, justification="in use", affirm=True)


def direct_per_customer(campaign) -> dict:
    items = AttestationItem.objects.filter(campaign=campaign)
    return {name: (items.filter(key__workflow__customer__name=name).count(),
                   items.filter(key__workflow__customer__name=name, status=ItemStatus.PENDING).count())
            for name in ("Acme", "Globex")}


def page(client, campaign):
    response = client.get(reverse("attestations:campaign", args=[campaign.pk]))
    assert response.status_code == 200
    return response


def page_per_customer(response) -> dict:
    return {row["name"]: (row["total"], row["pending"]) for row in response.context["per_customer"]}


def page_totals(response) -> tuple:
    totals = response.context["progress"]["totals"]
    return totals["total"], totals["decided"], totals["pending"]


def direct_totals(campaign) -> tuple:
    items = AttestationItem.objects.filter(campaign=campaign)
    pending = items.filter(status=ItemStatus.PENDING).count()
    return items.count(), items.count() - pending, pending


def test_a_small_campaign_is_counted_per_request(client, compliance_user, campaign, owner):
    client.force_login(compliance_user)
    confirm(campaign.items.filter(reviewer=owner).first(), owner)
    response = page(client, campaign)
    assert page_per_customer(response) == direct_per_customer(campaign) == {"Acme": (2, 1), "Globex": (4, 4)}
    assert page_totals(response) == direct_totals(campaign) == (6, 1, 5)
    assert response.context["counted_at"] is None and 'data-testid="counted-at"' not in response.text
    assert [row["reviewer"] for row in response.context["reviewer_quality"]] == ["alice"]
    assert not CampaignFigures.objects.exists()


def page_per_reviewer(response) -> dict:
    return {row["name"]: (row["total"], row["pending"]) for row in response.context["per_reviewer"]}


def page_stages(response) -> list:
    return [row["pending"] for row in response.context["stages"]]


def test_a_large_campaign_shows_its_progress_as_counted_by_the_worker(client, compliance_user, campaign, owner,
                                                                      settings):
    settings.CAMPAIGN_FIGURES_MIN_ITEMS = 6
    client.force_login(compliance_user)
    # The first view counts what the worker has not counted yet.
    response = page(client, campaign)
    figures = CampaignFigures.objects.get(campaign=campaign)
    assert response.context["counted_at"] == figures.counted_at
    assert 'data-testid="counted-at"' in response.text and 'data-testid="progress-counted-at"' in response.text
    assert page_per_customer(response) == direct_per_customer(campaign)
    assert page_totals(response) == direct_totals(campaign) == (6, 0, 6)

    item = campaign.items.filter(reviewer=owner, key__workflow__customer__name="Acme").first()
    confirm(item, owner)
    response = page(client, campaign)
    # Everything as of the last count: totals, stages, reviewers, customers and the reviewers' figures.
    assert page_totals(response) == (6, 0, 6) != direct_totals(campaign)
    assert page_stages(response) == [6]
    assert page_per_reviewer(response) == {"alice": (3, 3), "bob": (3, 3)}
    assert page_per_customer(response) == {"Acme": (2, 2), "Globex": (4, 4)}
    assert response.context["reviewer_quality"] == []
    api = client.get(reverse("campaign-detail", args=[campaign.pk])).json()
    assert (api["progress"]["totals"]["decided"], api["pending_count"]) == (0, 6)

    assert tasks.refresh_campaign_figures() == [campaign.pk]
    response = page(client, campaign)
    assert page_totals(response) == direct_totals(campaign) == (6, 1, 5)
    assert response.context["progress"]["by_status"] == {"pending": 5, "confirmed": 1}
    assert page_stages(response) == [5]
    assert page_per_reviewer(response) == {"alice": (3, 2), "bob": (3, 3)}
    assert page_per_customer(response) == direct_per_customer(campaign) == {"Acme": (2, 1), "Globex": (4, 4)}
    assert [row["reviewer"] for row in response.context["reviewer_quality"]] == ["alice"]

    api = client.get(reverse("campaign-detail", args=[campaign.pk])).json()
    assert {row["customer"]: (row["total"], row["pending"]) for row in api["progress"]["per_customer"]} == {
        "Acme": (2, 1), "Globex": (4, 4)}
    assert {row["reviewer"]: (row["total"], row["pending"]) for row in api["progress"]["per_reviewer"]} == {
        "alice": (3, 2), "bob": (3, 3)}
    assert api["progress"]["counted_at"] is not None and api["progress"]["totals"]["decided"] == 1
    assert api["progress"]["by_status"] == {"pending": 5, "confirmed": 1}
    assert (api["item_count"], api["pending_count"]) == (6, 5)


def item_counts(client, campaign) -> tuple[int, list[str]]:
    """The page's queries, and those of them that count the campaign's items."""
    with CaptureQueriesContext(connection) as captured:
        page(client, campaign)
    return len(captured.captured_queries), [
        q["sql"] for q in captured.captured_queries
        if "COUNT(" in q["sql"].upper() and f'"attestations_attestationitem"."campaign_id" = {campaign.pk}' in q["sql"]]


def test_a_large_campaigns_page_counts_no_items(client, compliance_user, campaign, owner, settings,
                                                 django_assert_num_queries):
    """With its figures stored, the page reads them instead of counting the items: as many queries for a
    campaign twice the size, none of them counting items (a small campaign's page counts them)."""
    client.force_login(compliance_user)
    assert item_counts(client, campaign)[1] != []
    settings.CAMPAIGN_FIGURES_MIN_ITEMS = 6
    progress.refresh_campaign_figures(campaign)
    queries, counting = item_counts(client, campaign)
    assert counting == []

    for _ in range(12):
        factories.ApiKeyFactory(owner=owner)
    bigger = campaigns.create_campaign(actor=compliance_user, name="Q1")
    campaigns.launch_campaign(bigger, actor=compliance_user)
    bigger.refresh_from_db()
    assert bigger.items.count() == 12
    progress.refresh_campaign_figures(bigger)
    with django_assert_num_queries(queries):
        page(client, bigger)


def test_a_small_campaigns_stored_figures_are_not_read(client, compliance_user, campaign, owner, settings):
    """Figures stored while the threshold was lower are ignored once the campaign is below it."""
    settings.CAMPAIGN_FIGURES_MIN_ITEMS = 6
    progress.refresh_campaign_figures(campaign)
    confirm(campaign.items.filter(reviewer=owner).first(), owner)
    settings.CAMPAIGN_FIGURES_MIN_ITEMS = 7
    client.force_login(compliance_user)
    response = page(client, campaign)
    assert page_totals(response) == direct_totals(campaign) == (6, 1, 5)
    assert response.context["counted_at"] is None and 'counted-at"' not in response.text
    rows = {row.record.pk: row.record for row in client.get(reverse("attestations:campaigns")).context["table"].paginated_rows}
    assert (rows[campaign.pk].item_total, rows[campaign.pk].item_pending, rows[campaign.pk].counted_at) == (6, 5, None)


def test_a_close_is_counted_again_on_the_next_view(client, compliance_user, campaign, settings):
    settings.CAMPAIGN_FIGURES_MIN_ITEMS = 6
    client.force_login(compliance_user)
    page(client, campaign)
    campaigns.close_campaign(campaign, actor=compliance_user)
    campaign.refresh_from_db()
    assert list(progress.campaigns_to_count()) == [campaign]
    response = page(client, campaign)
    assert page_per_customer(response) == direct_per_customer(campaign) == {"Acme": (2, 0), "Globex": (4, 0)}
    assert CampaignFigures.objects.get().counted_at >= campaign.closed_at
    assert list(progress.campaigns_to_count()) == []


def test_the_worker_counts_large_running_campaigns(compliance_user, campaign, settings):
    assert list(progress.campaigns_to_count()) == []
    settings.CAMPAIGN_FIGURES_MIN_ITEMS = 6
    assert list(progress.campaigns_to_count()) == [campaign]
    assert tasks.refresh_campaign_figures() == [campaign.pk]
    figures = CampaignFigures.objects.get()
    assert {row["key__workflow__customer__name"]: row["total"] for row in figures.per_customer} == {
        "Acme": 2, "Globex": 4}
    # Still running: counted again every time.
    assert list(progress.campaigns_to_count()) == [campaign]
    job = PeriodicTask.objects.get(task="attestations.tasks.refresh_campaign_figures")
    assert job.enabled and (job.interval.every, job.interval.period) == (5, "minutes")


def test_the_customer_filter_offers_the_campaigns_customers(client, compliance_user, campaign, settings):
    factories.CustomerFactory(name="Initech")
    client.force_login(compliance_user)
    for minimum in (10_000, 6):
        settings.CAMPAIGN_FIGURES_MIN_ITEMS = minimum
        form = page(client, campaign).context["filter"].form
        assert [c.name for c in form.fields["customer"].queryset] == ["Acme", "Globex"]


def test_items_are_listed_in_their_own_order(client, compliance_user, campaign):
    client.force_login(compliance_user)
    rows = [row.record.pk for row in page(client, campaign).context["table"].rows]
    assert rows == sorted(rows) == list(campaign.items.order_by("pk").values_list("pk", flat=True))


def test_the_campaign_list_counts_items_per_campaign(client, compliance_user, campaign, owner):
    confirm(campaign.items.filter(reviewer=owner).first(), owner)
    empty = campaigns.create_campaign(actor=compliance_user, name="Draft")
    client.force_login(compliance_user)
    rows = {row.record.pk: row.record for row in client.get(reverse("attestations:campaigns")).context["table"].paginated_rows}
    assert (rows[campaign.pk].item_total, rows[campaign.pk].item_pending, percent_decided(rows[campaign.pk])) == (6, 5, 16)
    assert (rows[empty.pk].item_total, rows[empty.pk].item_pending, percent_decided(rows[empty.pk])) == (0, 0, 0)
    by_progress = client.get(reverse("attestations:campaigns"), {"sort": "-progress"}).context["table"].rows
    assert [row.record.pk for row in by_progress] == [campaign.pk, empty.pk]
    api = {row["id"]: row for row in client.get(reverse("campaign-list")).json()["results"]}
    assert (api[campaign.pk]["item_count"], api[campaign.pk]["pending_count"]) == (6, 5)
    assert (api[empty.pk]["item_count"], api[empty.pk]["pending_count"]) == (0, 0)


def list_rows(client) -> dict:
    response = client.get(reverse("attestations:campaigns"))
    return response, {row.record.pk: row.record for row in response.context["table"].paginated_rows}


def api_counts(client) -> dict:
    return {row["id"]: (row["item_count"], row["pending_count"])
            for row in client.get(reverse("campaign-list")).json()["results"]}


def test_the_campaign_list_reads_a_large_campaigns_counts_as_stored(client, compliance_user, campaign, owner,
                                                                     settings):
    settings.CAMPAIGN_FIGURES_MIN_ITEMS = 6
    small = campaigns.create_campaign(actor=compliance_user, name="Draft")
    progress.refresh_campaign_figures(campaign)
    figures = CampaignFigures.objects.get()
    confirm(campaign.items.filter(reviewer=owner).first(), owner)
    client.force_login(compliance_user)

    response, rows = list_rows(client)
    assert (rows[campaign.pk].item_total, rows[campaign.pk].item_pending) == (6, 6)
    assert rows[campaign.pk].counted_at == figures.counted_at and rows[small.pk].counted_at is None
    assert response.text.count('data-testid="counted-at"') == 1
    assert api_counts(client) == {campaign.pk: (6, 6), small.pk: (0, 0)}

    tasks.refresh_campaign_figures()
    _, rows = list_rows(client)
    assert (rows[campaign.pk].item_total, rows[campaign.pk].item_pending, percent_decided(rows[campaign.pk])) == (
        6, 5, 16)
    assert api_counts(client) == {campaign.pk: (6, 5), small.pk: (0, 0)}


def test_the_campaign_list_counts_a_campaign_closed_since_its_figures(client, compliance_user, campaign, settings):
    settings.CAMPAIGN_FIGURES_MIN_ITEMS = 6
    progress.refresh_campaign_figures(campaign)
    campaigns.close_campaign(campaign, actor=compliance_user)
    client.force_login(compliance_user)
    _, rows = list_rows(client)
    assert (rows[campaign.pk].item_total, rows[campaign.pk].item_pending, rows[campaign.pk].counted_at) == (6, 0, None)
    assert api_counts(client) == {campaign.pk: (6, 0)}
    tasks.refresh_campaign_figures()
    _, rows = list_rows(client)
    assert (rows[campaign.pk].item_pending, rows[campaign.pk].counted_at) == (0, CampaignFigures.objects.get().counted_at)


def test_the_items_filter_by_reviewer_username(client, compliance_user, campaign, owner):
    client.force_login(compliance_user)
    response = client.get(reverse("attestations:campaign", args=[campaign.pk]), {"reviewer": "alice"})
    listed = {row.record.pk for row in response.context["table"].rows}
    assert listed == set(campaign.items.filter(reviewer=owner).values_list("pk", flat=True)) and len(listed) == 3


def test_the_campaign_list_counts_in_as_many_queries_for_more_campaigns(client, compliance_user, campaign, owner,
                                                                        django_assert_num_queries):
    """The campaigns shown are counted together: as many queries for four launched campaigns as for one."""
    client.force_login(compliance_user)
    with CaptureQueriesContext(connection) as one:
        list_rows(client)
    with CaptureQueriesContext(connection) as one_api:
        client.get(reverse("campaign-list"))
    for n in range(3):
        factories.ApiKeyFactory(owner=owner)
        more = campaigns.create_campaign(actor=compliance_user, name=f"More {n}")
        campaigns.launch_campaign(more, actor=compliance_user)
        campaigns.create_campaign(actor=compliance_user, name=f"Draft {n}")
    with django_assert_num_queries(len(one.captured_queries)):
        _, rows = list_rows(client)
    assert len(rows) == 7
    assert {(row.name, row.item_total, row.item_pending) for row in rows.values() if row.name.startswith("More")} == {
        ("More 0", 1, 1), ("More 1", 1, 1), ("More 2", 1, 1)}
    with django_assert_num_queries(len(one_api.captured_queries)):
        assert len(client.get(reverse("campaign-list")).json()["results"]) == 7


def test_the_campaign_list_sorts_by_the_counts_it_shows(client, compliance_user, campaign, owner, settings):
    settings.CAMPAIGN_FIGURES_MIN_ITEMS = 6
    progress.refresh_campaign_figures(campaign)
    confirm(campaign.items.filter(reviewer=owner).first(), owner)
    factories.ApiKeyFactory(owner=owner)
    small = campaigns.create_campaign(actor=compliance_user, name="Small")
    campaigns.launch_campaign(small, actor=compliance_user)
    for item in small.items.all():
        confirm(item, owner)
    client.force_login(compliance_user)
    for sort, expected in (("item_pending", [small.pk, campaign.pk]), ("-item_total", [campaign.pk, small.pk]),
                           ("-progress", [small.pk, campaign.pk])):
        rows = client.get(reverse("attestations:campaigns"), {"sort": sort}).context["table"].paginated_rows
        assert [row.record.pk for row in rows] == expected, sort
    # As stored: the large campaign is still 0% decided.
    assert [(row.record.item_pending, percent_decided(row.record)) for row in rows] == [(0, 100), (6, 0)]
