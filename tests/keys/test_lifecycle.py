import pytest

from keys.choices import KeyStatus, LifecycleAction, RevocationReason
from keys.models import ApiKey, LifecycleEvent
from keys.services import lifecycle
from tests import factories

pytestmark = pytest.mark.django_db


def register(actor, owner, **overrides):
    workflow = overrides.pop("workflow", None) or factories.WorkflowFactory()
    params = dict(
        actor=actor,
        workflow=workflow,
        issuing_system=factories.IssuingSystemFactory(),
        label="Screening export",
        owner=owner,
        secret=factories.make_secret("sk_live_"),
        prefix="sk_live_",
    )
    params.update(overrides)
    return lifecycle.register_key(**params)


def test_register_keeps_only_prefix_and_fingerprint(admin_user, owner):
    secret = factories.make_secret("sk_live_")
    key = register(admin_user, owner, secret=secret)
    assert key.status == KeyStatus.PENDING
    assert key.fingerprint != secret and len(key.fingerprint) == 64
    assert key.history.get().history_user == admin_user
    assert owner.has_perm("keys.view_apikey", key)
    assert LifecycleEvent.objects.get(key=key).action == LifecycleAction.REGISTER


def test_register_refuses_duplicate_fingerprint(admin_user, owner):
    secret = factories.make_secret()
    register(admin_user, owner, secret=secret, prefix="")
    with pytest.raises(lifecycle.LifecycleError) as err:
        register(admin_user, owner, secret=secret, prefix="")
    assert "secret" in err.value.errors
    assert ApiKey.objects.count() == 1


def test_full_lifecycle_records_each_event(admin_user, owner):
    key = register(admin_user, owner)
    key = lifecycle.approve_key(key, actor=admin_user, reference="CHG-1")
    key = lifecycle.suspend_key(key, actor=admin_user, reason="investigation")
    key = lifecycle.reinstate_key(key, actor=admin_user, reason="cleared")
    key = lifecycle.rotate_key(key, actor=admin_user, secret=factories.make_secret("sk_live_"), prefix="sk_live_")
    key = lifecycle.revoke_key(key, actor=admin_user, reason_code=RevocationReason.MANUAL)
    assert key.status == KeyStatus.REVOKED
    actions = list(key.events.values_list("action", flat=True))
    assert actions == ["register", "approve", "suspend", "reinstate", "rotate", "revoke"]
    assert key.history.count() == 6
    with pytest.raises(lifecycle.LifecycleError):
        lifecycle.reinstate_key(key, actor=admin_user, reason="no")


def test_owner_cannot_approve_own_key(owner):
    key = register(owner, owner)
    with pytest.raises(lifecycle.LifecycleError):
        lifecycle.approve_key(key, actor=owner)


def test_change_owner_moves_permissions_and_requires_rotation(admin_user, owner, other_owner):
    key = register(admin_user, owner)
    key = lifecycle.change_owner(key, actor=admin_user, new_owner=other_owner, reason="team change")
    assert key.rotation_required
    assert not owner.has_perm("keys.view_apikey", key)
    assert other_owner.has_perm("keys.view_apikey", key)
    assert list(ApiKey.objects.visible_to(owner)) == []
    assert list(ApiKey.objects.visible_to(other_owner)) == [key]
