import datetime

import pytest
from django.utils import timezone

from keys.choices import LifecycleAction
from keys.models import ApiKey, LifecycleEvent, UsageDaily, UsageEventReceipt
from keys.services import usage
from tests import factories

pytestmark = pytest.mark.django_db


def at(hours_ago: float = 1, days_ago: int = 0) -> str:
    return (timezone.now() - datetime.timedelta(hours=hours_ago, days=days_ago)).isoformat()


def event(api_key, n, **overrides):
    return {"id": f"evt-{n}", "key": api_key.pk, "at": at(), "source": "10.0.0.1", **overrides}


def test_batch_is_aggregated_per_key_per_day(key, other_key):
    day1 = timezone.now().replace(hour=10, minute=0, second=0, microsecond=0) - datetime.timedelta(days=2)
    events = [
        {"id": "a1", "key": key.pk, "at": day1.isoformat(), "source": "s1"},
        {"id": "a2", "key": key.prefix, "at": (day1 + datetime.timedelta(hours=3)).isoformat(), "source": "s2"},
        {"id": "a3", "key": key.fingerprint.upper(), "at": (day1 + datetime.timedelta(hours=1)).isoformat(),
         "source": "s1"},
        {"id": "a4", "key": key.pk, "at": (day1 + datetime.timedelta(days=1)).isoformat(), "source": "s3"},
        {"id": "b1", "key": str(other_key.pk), "at": day1.isoformat()},
    ]
    result = usage.ingest_usage(events)
    assert (result.accepted, result.duplicates, result.rejected) == (5, 0, [])
    first = UsageDaily.objects.get(key=key, day=day1.date())
    assert first.count == 3
    assert first.first_seen == day1
    assert first.last_seen == day1 + datetime.timedelta(hours=3)
    assert first.sources == ["s1", "s2"]
    assert UsageDaily.objects.get(key=key, day=day1.date() + datetime.timedelta(days=1)).count == 1
    assert UsageDaily.objects.get(key=other_key).sources == []


def test_resending_a_batch_counts_nothing_twice(key):
    events = [event(key, n) for n in range(20)]
    assert usage.ingest_usage(events).accepted == 20
    again = usage.ingest_usage(events)
    assert (again.accepted, again.duplicates) == (0, 20)
    assert UsageDaily.objects.get(key=key).count == 20
    assert UsageEventReceipt.objects.count() == 20


def test_a_duplicate_within_the_batch_counts_once(key):
    result = usage.ingest_usage([event(key, 1), event(key, 1), event(key, 2)])
    assert (result.accepted, result.duplicates) == (2, 1)
    assert UsageDaily.objects.get(key=key).count == 2


def test_same_event_id_for_two_keys_counts_for_each(key, other_key):
    result = usage.ingest_usage([event(key, 1), event(other_key, 1)])
    assert result.accepted == 2


def test_idempotency_key_stands_in_for_missing_ids(key):
    events = [{"key": key.pk, "at": at()} for _ in range(5)]
    assert usage.ingest_usage(events, idempotency_key="batch-7").accepted == 5
    again = usage.ingest_usage(events, idempotency_key="batch-7")
    assert (again.accepted, again.duplicates) == (0, 5)
    assert usage.ingest_usage(events, idempotency_key="batch-8").accepted == 5
    assert UsageDaily.objects.get(key=key).count == 10


def test_every_rejected_event_is_reported_by_index_and_reason(key):
    factories.ApiKeyFactory(prefix="sk_dup")
    factories.ApiKeyFactory(prefix="sk_dup")
    now = timezone.now()
    events = [
        event(key, 0),
        "not an object",
        event(key, 2, at="yesterday"),
        event(key, 3, at=now.replace(tzinfo=None).isoformat()),
        event(key, 4, at=(now + datetime.timedelta(minutes=10)).isoformat()),
        event(key, 5, at=(now - datetime.timedelta(days=401)).isoformat()),
        event(key, 6, key=999999),
        event(key, 7, key="sk_dup"),
        event(key, 8, id="x" * 101),
        event(key, 9, source="s" * 201),
        {"key": key.pk, "at": at()},
        event(key, 11, key=True),
        event(key, 12, at=(now + datetime.timedelta(minutes=4)).isoformat()),
    ]
    result = usage.ingest_usage(events)
    assert result.accepted == 2
    reasons = {row["index"]: row["reason"] for row in result.rejected}
    assert sorted(reasons) == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
    assert reasons[3].startswith("at:") and "time zone" in reasons[3]
    assert "future" in reasons[4]
    assert "400 days" in reasons[5]
    assert reasons[6] == "key: no such key."
    assert "several keys" in reasons[7]
    assert reasons[8].startswith("id:")
    assert reasons[9].startswith("source:")
    assert "Idempotency-Key" in reasons[10]


def test_too_large_a_batch_is_refused_whole(key):
    with pytest.raises(usage.UsageError) as refused:
        usage.ingest_usage([event(key, n) for n in range(usage.MAX_EVENTS + 1)])
    assert "events" in refused.value.errors
    assert not UsageEventReceipt.objects.exists()


def test_scope_rejects_keys_outside_it_like_unknown_keys(key, other_key):
    result = usage.ingest_usage([event(key, 1), event(other_key, 2)], scope=ApiKey.objects.filter(pk=key.pk))
    assert result.accepted == 1
    assert result.rejected == [{"index": 1, "reason": "key: no such key."}]


def test_last_used_moves_only_forward_and_writes_no_history(key):
    records = key.history.count()
    recent = timezone.now() - datetime.timedelta(hours=1)
    usage.ingest_usage([event(key, 1, at=recent.isoformat())])
    key.refresh_from_db()
    assert key.last_used_at == recent
    usage.ingest_usage([event(key, 2, at=(recent - datetime.timedelta(days=3)).isoformat())])
    key.refresh_from_db()
    assert key.last_used_at == recent
    later = recent + datetime.timedelta(minutes=30)
    usage.ingest_usage([event(key, 3, at=later.isoformat())])
    key.refresh_from_db()
    assert key.last_used_at == later
    assert key.history.count() == records


def test_recent_use_lifts_the_stale_flag_with_a_recorded_reason(key, other_key):
    ApiKey.objects.filter(pk__in=[key.pk, other_key.pk]).update(stale=True)
    usage.ingest_usage([event(key, 1), event(other_key, 2, at=at(days_ago=200))])
    key.refresh_from_db()
    other_key.refresh_from_db()
    assert not key.stale
    assert other_key.stale, "a report of old calls does not make a key fresh"
    cleared = LifecycleEvent.objects.get(key=key, action=LifecycleAction.CLEAR_STALE)
    assert "usage report" in cleared.reason


def test_sources_are_capped(key):
    usage.ingest_usage([event(key, n, source=f"host-{n}") for n in range(60)])
    usage.ingest_usage([event(key, n + 100, source=f"late-{n}") for n in range(5)])
    assert len(UsageDaily.objects.get(key=key).sources) == usage.MAX_SOURCES


def test_a_batch_takes_a_bounded_number_of_queries(django_assert_max_num_queries):
    keys = factories.ApiKeyFactory.create_batch(10)
    events = [{"id": str(n), "key": keys[n % 10].prefix if n % 2 else keys[n % 10].pk, "at": at(n % 48 / 2)}
              for n in range(2000)]
    with django_assert_max_num_queries(30):
        result = usage.ingest_usage(events)
    assert result.accepted == 2000
    assert sum(UsageDaily.objects.values_list("count", flat=True)) == 2000


def test_sources_keep_first_seen_order_across_batches_up_to_the_cap(key):
    day = timezone.now().replace(hour=9, minute=0, second=0, microsecond=0) - datetime.timedelta(days=1)

    def batch(start, sources):
        return [{"id": f"o-{start + n}", "key": key.pk, "at": (day + datetime.timedelta(minutes=start + n)).isoformat(),
                 "source": source} for n, source in enumerate(sources)]

    usage.ingest_usage(batch(0, ["s1", "s2", "s1"]))
    usage.ingest_usage(batch(10, ["s3", "s1", "s4", "s3", ""]))
    assert UsageDaily.objects.get(key=key).sources == ["s1", "s2", "s3", "s4"]
    usage.ingest_usage(batch(100, ["s2"] + [f"late-{n}" for n in range(60)]))
    row = UsageDaily.objects.get(key=key)
    assert row.sources == ["s1", "s2", "s3", "s4"] + [f"late-{n}" for n in range(usage.MAX_SOURCES - 4)]
    assert row.count == 3 + 5 + 61
    usage.ingest_usage(batch(200, ["after-the-cap"]))
    assert "after-the-cap" not in UsageDaily.objects.get(key=key).sources
