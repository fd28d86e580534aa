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


def test_a_mixed_batch_resolves_each_reference_once_and_refuses_by_index(key, other_key):
    twin_a, twin_b = factories.ApiKeyFactory(prefix="sk_twin_0001"), factories.ApiKeyFactory(prefix="sk_twin_0001")
    outside = factories.ApiKeyFactory()
    usage.ingest_usage([event(key, "sent-before")])
    events = [
        event(key, 1),                                        # 0 by id
        event(key, 2, key=key.prefix),                        # 1 by prefix
        event(other_key, 3, key=other_key.fingerprint.upper()),  # 2 by fingerprint, any case
        event(other_key, 4, key=str(other_key.pk)),          # 3 a numeric string that is nobody's prefix: an id
        event(key, 5, key="sk_nobody_has_this"),              # 4 unknown
        event(twin_a, 6, key="sk_twin_0001"),                 # 5 ambiguous prefix
        event(outside, 7),                                    # 6 outside the scope: refused as unknown
        event(key, 1),                                        # 7 a duplicate within the batch
        event(key, "sent-before"),                            # 8 re-sent from an earlier batch
        event(key, 9, key=10**30),                            # 9 not a 64-bit id
    ]
    scope = ApiKey.objects.exclude(pk=outside.pk)
    result = usage.ingest_usage(events, scope=scope)
    assert (result.accepted, result.duplicates) == (4, 2)
    assert [row["index"] for row in result.rejected] == [4, 5, 6, 9]
    reasons = {row["index"]: row["reason"] for row in result.rejected}
    assert reasons[4] == reasons[6] == "key: no such key."
    assert "several keys" in reasons[5]
    assert UsageDaily.objects.get(key=key).count == 1 + 2
    assert UsageDaily.objects.get(key=other_key).count == 2
    assert not UsageDaily.objects.filter(key__in=[twin_a, twin_b, outside]).exists()


def test_stale_keys_used_again_are_lifted_together_each_with_its_record(owner):
    from core.chain import verify_chain

    fresh, old = timezone.now() - datetime.timedelta(hours=2), timezone.now() - datetime.timedelta(days=200)
    stale = factories.ApiKeyFactory.create_batch(4, owner=owner)
    ApiKey.objects.filter(pk__in=[k.pk for k in stale]).update(stale=True)
    records = {k.pk: k.history.count() for k in stale}
    events = [event(k, f"s{n}", at=(fresh if n < 3 else old).isoformat()) for n, k in enumerate(stale)]
    usage.ingest_usage(events)
    for n, k in enumerate(stale):
        k.refresh_from_db()
        if n < 3:
            assert not k.stale
            assert k.history.count() == records[k.pk] + 1
            latest = k.history.latest()
            assert latest.history_change_reason == f"Used again on {fresh.date().isoformat()} (usage report)"
            assert latest.last_used_at == fresh and not latest.stale
            cleared = LifecycleEvent.objects.get(key=k, action=LifecycleAction.CLEAR_STALE)
            assert cleared.reason == latest.history_change_reason
            assert cleared.details == {"last_used_at": fresh.isoformat()}
        else:
            assert k.stale, "a report of old calls does not make a key fresh"
            assert not LifecycleEvent.objects.filter(key=k, action=LifecycleAction.CLEAR_STALE).exists()
    verified = verify_chain(checkpoint=False)
    assert verified.ok, verified.problems  # the lifted keys' records are sealed: none is reported unsealed
    # Lifted once: the same keys used again record nothing more.
    usage.ingest_usage([event(k, f"again-{n}") for n, k in enumerate(stale[:3])])
    assert LifecycleEvent.objects.filter(key__in=stale, action=LifecycleAction.CLEAR_STALE).count() == 3


def _batch_queries(keys: int, stale: int, per_key: int) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    made = factories.ApiKeyFactory.create_batch(keys)
    ApiKey.objects.filter(pk__in=[k.pk for k in made[:stale]]).update(stale=True)
    refs = ("pk", "prefix", "fingerprint")
    events = [{"id": f"q-{k.pk}-{n}", "key": getattr(k, refs[n % 3]), "at": at(n % 40 / 2), "source": f"h{n % 9}"}
              for k in made for n in range(per_key)]
    with CaptureQueriesContext(connection) as queries:
        result = usage.ingest_usage(events)
    assert result.accepted == keys * per_key and not result.rejected
    assert ApiKey.objects.filter(pk__in=[k.pk for k in made], stale=True).count() == 0
    return len(queries)


def test_a_batch_takes_as_many_queries_for_ten_events_as_for_three_thousand():
    from tests.postgres import require_postgres

    require_postgres()  # SQLite binds every value: its receipts and daily rows go in chunks of a few hundred
    _batch_queries(keys=1, stale=1, per_key=1)  # the first batch also looks up what the process then keeps
    small = _batch_queries(keys=2, stale=1, per_key=5)
    large = _batch_queries(keys=60, stale=25, per_key=50)
    assert small == large, (small, large)
