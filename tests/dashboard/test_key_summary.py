"""The dashboard's key figures: counted live while the keys are few, read from the summary a worker job
refreshes once they are many; either way the same figures as a direct count (as of the refresh)."""

import datetime

import pytest
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from dashboard import summary, tasks
from dashboard.models import CustomerKeyCounts, KeySummaryRefresh
from keys.choices import LIVE_KEY_STATUSES, KeyStatus
from keys.models import ApiKey
from keys.services import lifecycle
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def keys(owner, other_owner):
    today = timezone.localdate()
    acme = factories.WorkflowFactory(customer=factories.CustomerFactory(name="Acme"))
    globex = factories.WorkflowFactory(customer=factories.CustomerFactory(name="Globex"))
    return [
        factories.ApiKeyFactory(owner=owner, workflow=acme, next_review_on=today + datetime.timedelta(days=3)),
        factories.ApiKeyFactory(owner=owner, workflow=acme, expires_on=today + datetime.timedelta(days=10),
                                orphaned=True),
        factories.ApiKeyFactory(owner=other_owner, workflow=globex, status=KeyStatus.SUSPENDED,
                                rotation_required=True),
        factories.ApiKeyFactory(owner=other_owner, workflow=globex, status=KeyStatus.REVOKED, unattested=True,
                                next_review_on=today - datetime.timedelta(days=3)),
        factories.ApiKeyFactory(owner=other_owner, workflow=globex, last_used_at=timezone.now()),
    ]


def direct_counts() -> dict:
    """The figures as the dashboard names them, each counted on its own."""
    horizon = timezone.localdate() + datetime.timedelta(days=summary.ATTENTION_HORIZON_DAYS)
    live = ApiKey.objects.filter(status__in=LIVE_KEY_STATUSES)
    return {
        "total": ApiKey.objects.count(),
        **{s.value: ApiKey.objects.filter(status=s).count() for s in KeyStatus},
        "due_for_review": live.filter(next_review_on__lte=horizon).count(),
        "expiring": live.filter(expires_on__lte=horizon).count(),
        "rotation_required": live.filter(rotation_required=True).count(),
        "orphaned": live.filter(orphaned=True).count(),
        "unattested": live.filter(unattested=True).count(),
    }


def page_counts(client) -> dict:
    context = client.get(reverse("dashboard")).context
    return {
        "total": context["total"],
        **{item["status"]: item["count"] for item in context["status_counts"]},
        "due_for_review": context["due_for_review"]["count"],
        "expiring": context["expiring"]["count"],
        "rotation_required": context["rotation_required"]["count"],
        "orphaned": context["flag_counts"]["orphaned"],
        "unattested": context["flag_counts"]["unattested"],
    }


def per_customer(client) -> dict:
    return {row["customer_name"]: (row["total"], row["active"], row["suspended"])
            for row in client.get(reverse("dashboard")).context["customer_rows"]}


def test_without_a_summary_the_page_counts_live(client, compliance_user, keys):
    client.force_login(compliance_user)
    assert page_counts(client) == direct_counts()
    lifecycle.suspend_key(keys[0], actor=compliance_user, reason="test")
    response = client.get(reverse("dashboard"))
    assert response.context["counted_at"] is None and 'data-testid="counted-at"' not in response.text
    assert page_counts(client) == direct_counts()
    assert per_customer(client) == {"Acme": (2, 1, 1), "Globex": (3, 1, 1)}


def test_a_summary_of_few_keys_is_not_read(client, compliance_user, keys, settings):
    settings.DASHBOARD_SUMMARY_MIN_KEYS = 6
    tasks.refresh_key_summary()
    lifecycle.suspend_key(keys[0], actor=compliance_user, reason="test")
    client.force_login(compliance_user)
    assert page_counts(client) == direct_counts()


def test_many_keys_are_read_from_the_summary_as_of_its_refresh(client, compliance_user, keys, settings):
    settings.DASHBOARD_SUMMARY_MIN_KEYS = 5
    assert tasks.refresh_key_summary() == 5
    client.force_login(compliance_user)
    counted = direct_counts()
    assert page_counts(client) == counted
    assert per_customer(client) == {"Acme": (2, 2, 0), "Globex": (3, 1, 1)}
    response = client.get(reverse("dashboard"))
    refresh = KeySummaryRefresh.objects.get()
    assert response.context["counted_at"] == refresh.refreshed_at
    assert 'data-testid="counted-at"' in response.text

    # A change shows at the next refresh, not before.
    lifecycle.suspend_key(keys[0], actor=compliance_user, reason="test")
    assert page_counts(client) == counted != direct_counts()
    tasks.refresh_key_summary()
    assert page_counts(client) == direct_counts()
    assert per_customer(client) == {"Acme": (2, 1, 1), "Globex": (3, 1, 1)}
    assert CustomerKeyCounts.objects.count() == 2 and KeySummaryRefresh.objects.count() == 1


def test_the_attention_lists_stay_live_beside_the_summary(client, compliance_user, keys, settings):
    settings.DASHBOARD_SUMMARY_MIN_KEYS = 1
    tasks.refresh_key_summary()
    due = direct_counts()["due_for_review"]
    assert due >= 2
    lifecycle.revoke_key(keys[0], actor=compliance_user, reason_code="released", reason="test")
    client.force_login(compliance_user)
    section = client.get(reverse("dashboard")).context["due_for_review"]
    # The number as of the refresh; the list as of now, without the key revoked since.
    assert section["count"] == due
    assert keys[0] not in [row["key"] for row in section["rows"]] and len(section["rows"]) == due - 1


def test_an_owner_is_always_counted_live(client, owner, compliance_user, keys, settings):
    settings.DASHBOARD_SUMMARY_MIN_KEYS = 1
    tasks.refresh_key_summary()
    lifecycle.suspend_key(keys[0], actor=compliance_user, reason="test")
    client.force_login(owner)
    context = client.get(reverse("dashboard")).context
    assert context["counted_at"] is None and context["customer_rows"] == []
    assert {item["status"]: item["count"] for item in context["status_counts"]}["suspended"] == 1
    assert context["total"] == 2


def test_a_customer_without_keys_leaves_the_summary(compliance_user, keys, settings):
    tasks.refresh_key_summary()
    ApiKey.objects.filter(workflow__customer__name="Acme").delete()
    tasks.refresh_key_summary()
    assert list(CustomerKeyCounts.objects.values_list("customer__name", flat=True)) == ["Globex"]


def test_the_summary_page_keeps_its_query_count(client, compliance_user, keys, settings, django_assert_max_num_queries):
    settings.DASHBOARD_SUMMARY_MIN_KEYS = 1
    tasks.refresh_key_summary()
    client.force_login(compliance_user)
    # 2 for the figures, 3 attention lists, 3 for the register of exceptions, 6 for the overview, 2 trends,
    # session and user, roles.
    with django_assert_max_num_queries(22):
        assert client.get(reverse("dashboard")).status_code == 200


def test_the_worker_refreshes_the_summary_every_five_minutes():
    job = PeriodicTask.objects.get(task="dashboard.tasks.refresh_key_summary")
    assert job.enabled and (job.interval.every, job.interval.period) == (5, "minutes")
