"""Single-row saves compiled once per shape (portal.writes): the rows stored are those Django's own save
stores, for every shape (NULLs included), expressions and mismatches go through Django, and a history
record's returned row is what a later read gives."""

import datetime

import pytest
from django.db import connection
from django.db.models import F, Model
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from simple_history.signals import post_create_historical_record

from keys.models import ApiKey, LifecycleEvent
from portal import writes
from portal.chain import _columns
from portal.models import AccessAction, AccessRecord
from tests import factories

pytestmark = pytest.mark.django_db

KEY_COLUMNS = [f.attname for f in ApiKey._meta.concrete_fields]


def _stored(model, pk):
    return model._base_manager.filter(pk=pk).values(*[f.attname for f in model._meta.concrete_fields]).get()


def _django_save(obj, **kwargs):
    """The same save through Django's own compilers, for comparison."""
    original_insert, original_update = writes.CompiledWrites._do_insert, writes.CompiledWrites._do_update
    writes.CompiledWrites._do_insert = lambda self, *args: Model._do_insert(self, *args)
    writes.CompiledWrites._do_update = lambda self, *args: Model._do_update(self, *args)
    try:
        obj.save(**kwargs)
    finally:
        writes.CompiledWrites._do_insert, writes.CompiledWrites._do_update = original_insert, original_update


def _plans_for(model, kind):
    return {key: plan for key, plan in writes._plans.items() if key[0] == kind and key[1] is model}


@pytest.fixture
def keys(owner):
    return [factories.ApiKeyFactory(owner=owner) for _ in range(4)]


def test_updates_store_what_django_stores_for_every_shape(keys, owner, admin_user):
    compiled, reference = keys[0], keys[1]
    changes = [
        {"label": "Nightly <export>", "scopes": ["read:cases", "write:cases"], "next_review_on": datetime.date(2027, 2, 21)},
        {"steward_id": admin_user.pk, "approved_at": timezone.now(), "expires_on": datetime.date(2027, 1, 1)},
        {"steward_id": None, "approved_at": None, "expires_on": None, "scopes": []},  # NULLs: another shape
        {"label": "It's \"quoted\" – ünïcode", "scopes": {"odd": [1, None]}, "orphaned": True},
    ]
    for change in changes:
        for obj in (compiled, reference):
            for name, value in change.items():
                setattr(obj, name, value)
        compiled.save()
        _django_save(reference)
        got, expected = _stored(ApiKey, compiled.pk), _stored(ApiKey, reference.pk)
        for name in ("id", "fingerprint", "prefix", "label", "workflow_id", "issuing_system_id", "updated_at",
                     "created_at", "status_changed_at"):
            got.pop(name), expected.pop(name)
        assert got == expected
        assert {k: v for k, v in _stored(ApiKey, compiled.pk).items() if k in change} == change
    plans = _plans_for(ApiKey, "update")
    assert plans and all(plan is not None for plan in plans.values())
    assert len({key[4] for key in plans}) >= 2  # the NULL pattern is part of the shape


def test_a_compiled_update_is_one_statement_and_reports_a_missing_row(keys):
    key = keys[0]
    key.label = "first"
    key.save()  # compiles this shape
    key.label = "second"
    with CaptureQueriesContext(connection) as queries:
        key.save()
    assert [q["sql"].split()[0] for q in queries.captured_queries if "keys_apikey" in q["sql"]][:1] == ["UPDATE"]
    assert ApiKey.objects.get(pk=key.pk).label == "second"
    # A row that is gone: the UPDATE finds nothing, so save() inserts it again, as Django's save does.
    pk = key.pk
    ApiKey.objects.filter(pk=pk).delete()
    key.history.all().delete()
    key.label = "third"
    key.save()
    assert ApiKey.objects.get(pk=pk).label == "third"


def test_expressions_go_through_django(keys):
    event = LifecycleEvent.objects.create(key=keys[0], action="attest", actor=keys[0].owner, reason="x")
    event.reason = "changed"
    event.save()
    event.details = {"n": 1}
    event.save()
    # An F() value cannot be prepared here: Django compiles it, and no plan is kept for it.
    LifecycleEvent.objects.filter(pk=event.pk).update(reason="y")  # queryset updates never come here
    item_key = keys[1]
    item_key.pepper_version = F("pepper_version") + 1
    item_key.skip_history_when_saving = True  # simple-history cannot copy an expression into a record
    item_key.save()
    item_key.refresh_from_db()
    assert item_key.pepper_version == 2
    assert LifecycleEvent.objects.get(pk=event.pk).details == {"n": 1}


def test_inserts_return_converted_rows_and_keep_auto_now_add(owner, keys):
    first = AccessRecord.objects.create(user=owner, username=owner.username, action=AccessAction.LOGIN)
    second = AccessRecord.objects.create(user=None, username="nobody", action=AccessAction.LOGIN_FAILED,
                                         ip_address="192.0.2.7", target="x" * 255)
    for record in (first, second):
        stored = _stored(AccessRecord, record.pk)
        assert stored["at"] == record.at and stored["username"] == record.username
        assert stored["ip_address"] == record.ip_address
    plans = _plans_for(AccessRecord, "insert")
    assert plans and all(plan is not None for plan in plans.values())  # a second pre_save would move `at`

    # History records: the row the INSERT returned, converted, is the row a read gives.
    key = keys[2]
    key.scopes = {"nested": [1, "two", None]}
    key._history_user = owner
    created = []
    post_create_historical_record.connect(lambda history_instance, **kw: created.append(history_instance),
                                          weak=False, dispatch_uid="test-writes")
    try:
        key.save()
    finally:
        post_create_historical_record.disconnect(dispatch_uid="test-writes")
    record = created[0]
    model = type(record)
    read_back = model._base_manager.filter(pk=record.pk).values_list(*_columns(model)).get()
    assert record._chain_row == read_back
    assert _plans_for(model, "insert")


def test_a_shape_whose_values_differ_from_djangos_is_left_to_django(keys, monkeypatch):
    writes._plans.clear()
    monkeypatch.setattr(writes, "_same", lambda ours, django: False)
    key = keys[3]
    key.label = "through Django"
    key.save()
    event = LifecycleEvent.objects.create(key=key, action="attest", actor=key.owner, reason="x", details={"a": 1})
    assert ApiKey.objects.get(pk=key.pk).label == "through Django"
    assert LifecycleEvent.objects.get(pk=event.pk).details == {"a": 1}
    assert _plans_for(ApiKey, "update") and all(p is None for p in _plans_for(ApiKey, "update").values())
    assert all(p is None for p in _plans_for(LifecycleEvent, "insert").values())
    # Later saves of those shapes go through Django too, and are right.
    key.label = "again"
    key.save()
    assert ApiKey.objects.get(pk=key.pk).label == "again"
