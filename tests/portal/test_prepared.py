"""Querysets compiled once (portal.prepared): the same rows, objects and annotations as the queryset
itself for every set of values, compiled only on the first call, and a plain queryset when the values
cannot be found among the compiled parameters."""

import datetime
import threading

import pytest
from django.db import connection, connections, transaction
from django.db.models import Case, When
from django.db.transaction import TransactionManagementError
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from attestations import campaigns
from attestations.models import AttestationItem, may_decide
from keys.models import ApiKey, LifecycleEvent, UsageDaily
from portal.prepared import PreparedQuery
from tests import factories

pytestmark = pytest.mark.django_db


def _state(obj) -> dict:
    return {name: value for name, value in vars(obj).items() if not name.startswith("_")}


@pytest.fixture
def items(owner, other_owner, compliance_user):
    for user in (owner, other_owner):
        for _ in range(2):
            factories.ApiKeyFactory(owner=user)
    campaign = campaigns.create_campaign(actor=compliance_user, name="2026-Q4")
    campaigns.launch_campaign(campaign, actor=compliance_user)
    return list(campaign.items.order_by("pk"))


def _item_query(item, actor):
    return AttestationItem.objects.select_related("campaign", "key__workflow__customer").annotate(
        actor_may_decide=Case(When(may_decide(actor), then=True), default=False)
    ).filter(pk=item)


def test_same_objects_as_the_queryset_for_every_set_of_values(items, owner, other_owner):
    calls = []

    def build(item, actor):
        calls.append((item, actor))
        return _item_query(item, actor)

    prepared = PreparedQuery(build, "item", "actor")
    for item in items:
        for actor in (owner, other_owner):
            got = prepared.get(item=item.pk, actor=actor.pk)
            expected = _item_query(item.pk, actor.pk).get()
            assert _state(got) == _state(expected)
            assert got.actor_may_decide is expected.actor_may_decide is (item.reviewer_id == actor.pk)
            assert _state(got.campaign) == _state(expected.campaign)
            assert _state(got.key) == _state(expected.key) and _state(got.key.workflow.customer) == _state(
                expected.key.workflow.customer)
    assert len(calls) == 1  # built and compiled once; every other call substituted its values


def test_missing_row_and_values_lists(items, owner):
    prepared = PreparedQuery(lambda item, actor: _item_query(item, actor), "item", "actor")
    with pytest.raises(AttestationItem.DoesNotExist):
        prepared.get(item=items[-1].pk + 1000, actor=owner.pk)
    values = PreparedQuery(
        lambda key: LifecycleEvent.objects.filter(key=key).order_by("pk").values_list("action", "key_id"), "key")
    for item in items:
        assert values.all(key=item.key_id) == list(
            LifecycleEvent.objects.filter(key=item.key_id).order_by("pk").values_list("action", "key_id"))
    with pytest.raises(TypeError):
        values.all(key=str(items[0].key_id))


def test_a_value_not_found_among_the_parameters_falls_back_to_the_plain_queryset(items):
    calls = []

    def build(key):
        calls.append(key)
        # The value also reaches the SQL inside a string: substituting the integer alone would be wrong.
        return ApiKey.objects.filter(pk=key) | ApiKey.objects.filter(prefix=f"none-{key}")

    prepared = PreparedQuery(build, "key")
    for item in items:
        assert [key.pk for key in prepared.all(key=item.key_id)] == [item.key_id]
    assert len(calls) == 1 + len(items)  # the attempt to compile, then a plain queryset per call


@pytest.mark.django_db(transaction=True)
def test_locking_reads_lock_and_need_a_transaction(items, owner):
    prepared = PreparedQuery(
        lambda item, actor: _item_query(item, actor).select_for_update(of=("self",)), "item", "actor")
    if connection.features.has_select_for_update:
        with pytest.raises(TransactionManagementError):
            prepared.get(item=items[0].pk, actor=owner.pk)
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        assert prepared.get(item=items[0].pk, actor=owner.pk).pk == items[0].pk
        assert prepared.get(item=items[1].pk, actor=owner.pk).pk == items[1].pk
    selects = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("SELECT")]
    assert len(selects) == 2
    if connection.features.has_select_for_update_of:
        assert all("FOR UPDATE OF" in sql for sql in selects)


@pytest.mark.django_db(transaction=True)
def test_compiled_in_one_thread_run_in_others(items, owner):
    """Web servers run requests in threads, each with its own database connection."""
    prepared = PreparedQuery(lambda item, actor: _item_query(item, actor), "item", "actor")
    assert prepared.get(item=items[0].pk, actor=owner.pk).actor_may_decide
    found = {}

    def decide_in_thread(item):
        try:
            found[item.pk] = prepared.get(item=item.pk, actor=owner.pk).actor_may_decide
        finally:
            connections.close_all()

    threads = [threading.Thread(target=decide_in_thread, args=(item,)) for item in items]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert found == {item.pk: item.reviewer_id == owner.pk for item in items}


def test_dates_are_values_too(items):
    """On PostgreSQL dates reach the driver as dates and are substituted; SQLite's adapter turns them
    into strings, so there the query is built on every call. Either way the rows are the queryset's."""
    today = timezone.localdate()
    for item in items:
        for day in range(5):
            UsageDaily.objects.create(key_id=item.key_id, day=today - datetime.timedelta(days=day), count=day + 1,
                                      first_seen=timezone.now(), last_seen=timezone.now())
    calls = []

    def build(key, since, until):
        calls.append(key)
        return UsageDaily.objects.filter(key=key, day__gt=since, day__lte=until).order_by("-day").values_list(
            "day", "count")

    prepared = PreparedQuery(build, "key", dates=("since", "until"))
    for item in items:
        for since, until in ((today - datetime.timedelta(days=3), today), (today - datetime.timedelta(days=9),
                                                                           today - datetime.timedelta(days=2))):
            assert prepared.all(key=item.key_id, since=since, until=until) == list(
                build(item.key_id, since, until))
    compiled = prepared._compiled["default"] is not None
    assert compiled is (connection.vendor == "postgresql")
    with pytest.raises(TypeError):
        prepared.all(key=items[0].key_id, since=timezone.now(), until=today)
