"""Review trends per campaign schedule on the compliance dashboard: the figures of each closed cycle,
the rubber-stamping signal, a fixed number of queries, and the section with its charts and table."""

import datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from attestations.choices import CampaignStatus, ItemStatus
from attestations.models import AttestationItem, Campaign, CampaignSchedule
from dashboard.charts import trend_charts
from dashboard.trends import ADHOC_NAME, schedule_trends
from tests import factories

pytestmark = pytest.mark.django_db

HOUR = 3600
DAY = 86400
START = timezone.now() - datetime.timedelta(days=400)


def closed_cycle(schedule, keys, creator, *, week: int, outcomes, status=CampaignStatus.CLOSED):
    """A campaign of ``schedule`` launched ``week`` weeks after START and closed a week later; one item per
    outcome ``(status, seconds from start to decision, seconds from launch to first shown or None)``."""
    launched = START + datetime.timedelta(weeks=week)
    campaign = Campaign.objects.create(
        name=f"{schedule.name if schedule else 'Ad hoc'} week {week}", schedule=schedule, status=status,
        created_by=creator, launched_at=launched, closed_at=launched + datetime.timedelta(weeks=1),
    )
    for key, (item_status, took, shown) in zip(keys, outcomes, strict=False):
        shown_at = launched + datetime.timedelta(seconds=shown) if shown is not None else None
        decided = item_status != ItemStatus.EXPIRED
        AttestationItem.objects.create(
            campaign=campaign, key=key, reviewer=key.owner, status=item_status, shown_at=shown_at,
            decided_by=key.owner if decided else None,
            decided_at=(shown_at or launched) + datetime.timedelta(seconds=took) if decided else None,
        )
    return campaign


@pytest.fixture
def keys(owner, other_owner):
    return [factories.ApiKeyFactory(owner=owner if n % 2 else other_owner) for n in range(5)]


@pytest.fixture
def quarterly(keys, compliance_user):
    """Three closed cycles: a careful first, a second that confirms more and faster (rubber-stamping),
    a third that confirms less and slower; plus a running campaign that is not a past cycle."""
    schedule = CampaignSchedule.objects.create(name="Quarterly")
    cycle = {
        "first": closed_cycle(schedule, keys, compliance_user, week=0, outcomes=[
            (ItemStatus.CONFIRMED, 2 * HOUR, HOUR),  # from first shown: 2 h
            (ItemStatus.CONFIRMED, DAY, None),  # from launch: 1 d
            (ItemStatus.RELEASED, 2 * HOUR, None),
            (ItemStatus.EXPIRED, 0, None),
        ]),
        "second": closed_cycle(schedule, keys, compliance_user, week=13, outcomes=[
            (ItemStatus.CONFIRMED, 600, None),
            (ItemStatus.CONFIRMED, 1200, None),
            (ItemStatus.CONFIRMED, 1800, None),
            (ItemStatus.REASSIGNED, HOUR, None),
        ]),
        "third": closed_cycle(schedule, keys, compliance_user, week=26, outcomes=[
            (ItemStatus.CONFIRMED, DAY, None),
            (ItemStatus.RELEASED, 2 * DAY, None),
            (ItemStatus.EXPIRED, 0, None),
        ]),
    }
    closed_cycle(schedule, keys, compliance_user, week=39, status=CampaignStatus.ACTIVE,
                 outcomes=[(ItemStatus.PENDING, 0, None)])
    return schedule, cycle


def test_figures_of_each_closed_cycle_oldest_first(quarterly):
    schedule, cycle = quarterly
    [trend] = schedule_trends()
    assert trend["name"] == "Quarterly" and trend["schedule_id"] == schedule.pk and not trend["adhoc"]
    assert [c["campaign_id"] for c in trend["cycles"]] == [cycle["first"].pk, cycle["second"].pk, cycle["third"].pk]
    first, second, third = trend["cycles"]
    assert (first["total"], first["decided"], first["confirmed"], first["released"], first["expired"]) == (4, 3, 2, 1, 1)
    assert (first["completion_rate"], first["confirm_rate"], first["release_rate"], first["reassign_rate"],
            first["expired_rate"]) == (75.0, 50.0, 25.0, 0.0, 25.0)
    # 2 h from first shown, 1 d and 2 h from launch: the median is 2 h.
    assert first["median_seconds"] == 2 * HOUR and first["median_label"] == "2.0 h"
    assert (second["completion_rate"], second["confirm_rate"], second["reassign_rate"], second["expired_rate"]) == (
        100.0, 75.0, 25.0, 0.0)
    assert second["median_seconds"] == 1500 and second["median_label"] == "25 min"
    assert (third["confirm_rate"], third["release_rate"], third["expired_rate"]) == (33.3, 33.3, 33.3)
    assert third["completion_rate"] == 66.7
    assert third["median_seconds"] == 1.5 * DAY


def test_a_rising_confirm_rate_with_a_falling_time_is_flagged(quarterly):
    [trend] = schedule_trends()
    assert [c["rubber_stamping"] for c in trend["cycles"]] == [False, True, False]
    assert trend["flagged"] == 1
    charts = trend_charts(trend)
    assert len(charts["rates"]["flags"]) == 1 and len(charts["time"]["flags"]) == 1
    assert "Possible rubber-stamping" in charts["rates"]["summary"]


def test_only_the_last_cycles_are_shown_and_the_first_shown_is_not_compared(quarterly):
    _, cycle = quarterly
    [trend] = schedule_trends(limit_cycles=2)
    assert [c["campaign_id"] for c in trend["cycles"]] == [cycle["second"].pk, cycle["third"].pk]
    assert [c["rubber_stamping"] for c in trend["cycles"]] == [False, False]


def test_campaigns_without_a_schedule_come_last_and_are_not_compared(quarterly, keys, compliance_user):
    closed_cycle(None, keys, compliance_user, week=1, outcomes=[(ItemStatus.CONFIRMED, DAY, None)])
    closed_cycle(None, keys, compliance_user, week=2, outcomes=[
        (ItemStatus.CONFIRMED, 60, None), (ItemStatus.CONFIRMED, 60, None)])
    CampaignSchedule.objects.create(name="Annual")  # never ran: not shown
    trends = schedule_trends()
    assert [t["name"] for t in trends] == ["Quarterly", ADHOC_NAME]
    adhoc = trends[1]
    assert adhoc["adhoc"] and [c["confirm_rate"] for c in adhoc["cycles"]] == [100.0, 100.0]
    assert not any(c["rubber_stamping"] for c in adhoc["cycles"])


def test_a_cycle_without_items_or_decisions_has_no_rates_and_no_median(keys, compliance_user):
    schedule = CampaignSchedule.objects.create(name="Empty")
    closed_cycle(schedule, keys, compliance_user, week=0, outcomes=[])
    closed_cycle(schedule, keys, compliance_user, week=1, outcomes=[(ItemStatus.EXPIRED, 0, None)])
    [trend] = schedule_trends()
    empty, unanswered = trend["cycles"]
    assert empty["confirm_rate"] is None and empty["median_seconds"] is None and empty["median_label"] == "—"
    assert unanswered["expired_rate"] == 100.0 and unanswered["completion_rate"] == 0.0
    assert unanswered["median_seconds"] is None
    charts = trend_charts(trend)
    assert charts["time"]["series"][0]["segments"] == []
    assert len(charts["rates"]["series"][0]["markers"]) == 1


def schedules_with_cycles(count: int, keys, creator, first: int = 0):
    for n in range(first, first + count):
        schedule = CampaignSchedule.objects.create(name=f"Schedule {n}")
        for week in range(3):
            closed_cycle(schedule, keys, creator, week=week, outcomes=[
                (ItemStatus.CONFIRMED, HOUR * (week + 1), None), (ItemStatus.RELEASED, HOUR, 60),
                (ItemStatus.REASSIGNED, DAY, None), (ItemStatus.EXPIRED, 0, None)])


def count_queries(function) -> int:
    with CaptureQueriesContext(connection) as queries:
        function()
    return len(queries)


def test_the_number_of_queries_does_not_grow_with_schedules(keys, compliance_user):
    schedules_with_cycles(1, keys, compliance_user)
    one = count_queries(schedule_trends)
    schedules_with_cycles(2, keys, compliance_user, first=1)
    assert len(schedule_trends()) == 3
    assert count_queries(schedule_trends) == one == 4


def test_the_dashboard_queries_do_not_grow_with_schedules(client, keys, compliance_user):
    client.force_login(compliance_user)
    schedules_with_cycles(1, keys, compliance_user)
    one = count_queries(lambda: client.get(reverse("dashboard")))
    schedules_with_cycles(2, keys, compliance_user, first=1)
    assert count_queries(lambda: client.get(reverse("dashboard"))) == one


def test_compliance_sees_the_trends_with_charts_and_table(client, quarterly, compliance_user):
    _, cycle = quarterly
    client.force_login(compliance_user)
    response = client.get(reverse("dashboard"))
    text = response.text
    assert "Review trends per schedule" in text
    section = text.split('id="review-trends"')[1]
    assert section.count("<svg class=\"trend-chart\"") == 2
    assert 'role="img"' in section and 'aria-labelledby="trend-1-rates-title"' in section
    assert '<title id="trend-1-rates-title">Quarterly, share of items per cycle over 3 closed cycles' in section
    assert 'viewBox="0 0 360 170"' in section
    assert "rising confirm rate with a falling time to decide" in section
    assert "<table" in section and cycle["second"].name in section and "25 min" in section
    assert section.count('<span class="badge badge-flag">Possible rubber-stamping</span>') == 1
    assert "{#" not in text and "style=" not in text


def test_an_owner_does_not_see_the_trends(client, quarterly, owner):
    client.force_login(owner)
    response = client.get(reverse("dashboard"))
    assert response.context["review_trends"] is None
    assert "Review trends per schedule" not in response.text and "trend-chart" not in response.text


def test_compliance_without_closed_campaigns_is_told_so(client, compliance_user):
    client.force_login(compliance_user)
    text = client.get(reverse("dashboard")).text
    assert "Review trends per schedule" in text and "No campaign has closed yet." in text
