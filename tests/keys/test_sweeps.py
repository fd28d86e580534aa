"""The daily sweeps: each acts through keys.services.lifecycle as the system user, says why, and does nothing twice.

They run on whatever DATABASE_URL names: SQLite locally, PostgreSQL in CI.
"""

import datetime
import threading

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from core.actors import system_user
from keys import tasks
from keys.choices import (
    ContractStatus,
    KeyStatus,
    LifecycleAction,
    RevocationReason,
    RevocationRequestStatus,
    RevocationState,
    WorkflowStatus,
)
from keys.models import ApiKey, Customer, LifecycleEvent, RevocationRequest
from keys.services import lifecycle, sweeps
from tests import factories
from tests.postgres import requires_postgres

pytestmark = pytest.mark.django_db


def days_ago(n: int) -> datetime.datetime:
    return timezone.now() - datetime.timedelta(days=n)


def events(key, action) -> list[LifecycleEvent]:
    return list(LifecycleEvent.objects.filter(key=key, action=action))


# Expired keys


def test_sweep_expires_keys_past_their_date_once():
    past = factories.ApiKeyFactory(expires_on=timezone.localdate() - datetime.timedelta(days=1))
    today = factories.ApiKeyFactory(expires_on=timezone.localdate(), status=KeyStatus.SUSPENDED)
    future = factories.ApiKeyFactory()
    never = factories.ApiKeyFactory(expires_on=None)
    revoked = factories.ApiKeyFactory(expires_on=timezone.localdate() - datetime.timedelta(days=3),
                                      status=KeyStatus.REVOKED)

    assert sweeps.sweep_expired_keys() == {"expired": 2, "skipped": 0}
    assert sweeps.sweep_expired_keys() == {"expired": 0, "skipped": 0}

    for key in (past, today):
        key.refresh_from_db()
        assert key.status == KeyStatus.EXPIRED
        [event] = events(key, LifecycleAction.EXPIRE)
        assert event.actor == system_user()
        assert "Expiry date" in event.reason
        assert key.history.latest().history_user == system_user()
    for key in (future, never, revoked):
        status = key.status
        key.refresh_from_db()
        assert key.status == status and not key.events.exists()


# Ended contracts


def test_sweep_ends_lapsed_contracts_and_revokes_their_keys_once():
    lapsed = factories.CustomerFactory(contract_end=timezone.localdate() - datetime.timedelta(days=1))
    ended = factories.CustomerFactory(contract_status=ContractStatus.ENDED)
    ending = factories.CustomerFactory(contract_status=ContractStatus.ENDING, contract_end=timezone.localdate())
    lapsed_keys = [factories.ApiKeyFactory(workflow=factories.WorkflowFactory(customer=lapsed)) for _ in range(2)]
    pending = factories.ApiKeyFactory(workflow=factories.WorkflowFactory(customer=ended), status=KeyStatus.PENDING)
    expired = factories.ApiKeyFactory(workflow=pending.workflow, status=KeyStatus.EXPIRED)
    kept = factories.ApiKeyFactory(workflow=factories.WorkflowFactory(customer=ending))

    assert sweeps.sweep_ended_contracts() == {"customers_ended": 1, "revoked": 3, "skipped": 0}
    assert sweeps.sweep_ended_contracts() == {"customers_ended": 0, "revoked": 0, "skipped": 0}

    lapsed.refresh_from_db()
    assert lapsed.contract_status == ContractStatus.ENDED
    record = lapsed.history.latest()
    assert record.history_user == system_user()
    assert "Contract end date" in record.history_change_reason
    assert lapsed.history.filter(contract_status=ContractStatus.ENDED).count() == 1
    for key in [*lapsed_keys, pending]:
        key.refresh_from_db()
        assert key.status == KeyStatus.REVOKED
        assert key.revocation_reason == RevocationReason.CONTRACT_ENDED
        assert key.revocation_state == RevocationState.PENDING
        [event] = events(key, LifecycleAction.REVOKE)
        assert event.actor == system_user() and "contract" in event.reason
        assert RevocationRequest.objects.get(key=key).reason_code == RevocationReason.CONTRACT_ENDED
    for key, status in ((expired, KeyStatus.EXPIRED), (kept, KeyStatus.ACTIVE)):
        key.refresh_from_db()
        assert key.status == status and not key.events.exists()
    assert Customer.objects.get(pk=ending.pk).contract_status == ContractStatus.ENDING


# Decommissioned workflows


def test_sweep_revokes_keys_of_decommissioned_workflows_once():
    gone = factories.WorkflowFactory(status=WorkflowStatus.DECOMMISSIONED)
    live = factories.WorkflowFactory()
    keys = [factories.ApiKeyFactory(workflow=gone), factories.ApiKeyFactory(workflow=gone, status=KeyStatus.SUSPENDED)]
    kept = factories.ApiKeyFactory(workflow=live)

    assert sweeps.sweep_decommissioned_workflows() == {"revoked": 2, "skipped": 0}
    assert sweeps.sweep_decommissioned_workflows() == {"revoked": 0, "skipped": 0}

    for key in keys:
        key.refresh_from_db()
        assert key.status == KeyStatus.REVOKED
        assert key.revocation_reason == RevocationReason.WORKFLOW_DECOMMISSIONED
        assert len(events(key, LifecycleAction.REVOKE)) == 1
        assert RevocationRequest.objects.filter(key=key).count() == 1
    kept.refresh_from_db()
    assert kept.status == KeyStatus.ACTIVE


# Departed owners


def test_departed_owners_keys_are_orphaned_once_and_the_manager_is_told(mailoutbox):
    manager = factories.OwnerFactory(username="mallory")
    profile = factories.OwnerProfileFactory(user__username="olivia", manager=manager, is_active=False)
    keys = [factories.ApiKeyFactory(owner=profile.user) for _ in range(2)]
    revoked = factories.ApiKeyFactory(owner=profile.user, status=KeyStatus.REVOKED)
    staying = factories.ApiKeyFactory(owner=factories.OwnerProfileFactory().user)

    assert sweeps.sweep_departed_owners() == {"orphaned": 2, "skipped": 0, "emails": 1}
    assert sweeps.sweep_departed_owners() == {"orphaned": 0, "skipped": 0, "emails": 0}

    for key in keys:
        key.refresh_from_db()
        assert key.orphaned and key.status == KeyStatus.ACTIVE
        [event] = events(key, LifecycleAction.FLAG_ORPHANED)
        assert event.actor == system_user() and "olivia" in event.reason
    for key in (revoked, staying):
        key.refresh_from_db()
        assert not key.orphaned
    [mail] = mailoutbox
    assert mail.to == [manager.email]
    assert "olivia" in mail.subject
    for key in keys:
        assert key.prefix in mail.body and key.get_absolute_url() in mail.body
    assert reverse("attestations:successions") in mail.body

    # Reassigning clears the flag; the new owner is not departed, so nothing comes back.
    lifecycle.change_owner(keys[0], actor=factories.AdminFactory(), new_owner=manager, reason="takes over")
    assert sweeps.sweep_departed_owners()["orphaned"] == 0
    keys[0].refresh_from_db()
    assert not keys[0].orphaned


def test_without_a_manager_compliance_is_told(mailoutbox, compliance_user):
    owner = factories.OwnerFactory(username="olivia", is_active=False)
    key = factories.ApiKeyFactory(owner=owner)

    assert sweeps.sweep_departed_owners()["orphaned"] == 1
    key.refresh_from_db()
    assert key.orphaned
    [mail] = mailoutbox
    assert mail.to == [compliance_user.email]


# Stale keys


def test_stale_keys_are_flagged_and_cleared_once():
    old = factories.ApiKeyFactory(last_used_at=days_ago(120))
    never_used = factories.ApiKeyFactory(issued_on=timezone.localdate() - datetime.timedelta(days=200))
    fresh_never_used = factories.ApiKeyFactory(issued_on=timezone.localdate() - datetime.timedelta(days=10))
    recent = factories.ApiKeyFactory(last_used_at=days_ago(5))
    used_again = factories.ApiKeyFactory(last_used_at=days_ago(1), stale=True)
    revoked = factories.ApiKeyFactory(last_used_at=days_ago(400), status=KeyStatus.REVOKED)

    assert sweeps.sweep_stale_keys(days=90) == {"flagged": 2, "cleared": 1, "skipped": 0}
    assert sweeps.sweep_stale_keys(days=90) == {"flagged": 0, "cleared": 0, "skipped": 0}

    expected = {old: True, never_used: True, fresh_never_used: False, recent: False, used_again: False, revoked: False}
    for key, stale in expected.items():
        key.refresh_from_db()
        assert key.stale is stale, key.label
    assert "more than 90 days" in events(old, LifecycleAction.FLAG_STALE)[0].reason
    assert len(events(used_again, LifecycleAction.CLEAR_STALE)) == 1
    assert not revoked.events.exists()


def test_stale_sweep_uses_the_configured_days(settings):
    settings.KEY_STALE_AFTER_DAYS = 30
    key = factories.ApiKeyFactory(last_used_at=days_ago(45))
    assert tasks.sweep_stale_keys() == {"flagged": 1, "cleared": 0, "skipped": 0}
    key.refresh_from_db()
    assert key.stale


# Rotation after an ownership change


def test_rotation_due_is_flagged_once_per_ownership_change(admin_user, owner, other_owner):
    key = factories.ApiKeyFactory(owner=owner)
    untouched = factories.ApiKeyFactory(owner=owner)
    lifecycle.change_owner(key, actor=admin_user, new_owner=other_owner, reason="team change")

    assert sweeps.sweep_rotation_due() == {"due": 1, "flagged": 1, "skipped": 0}
    assert sweeps.sweep_rotation_due() == {"due": 1, "flagged": 0, "skipped": 0}
    key.refresh_from_db()
    assert key.rotation_required
    [event] = events(key, LifecycleAction.FLAG_ROTATION)
    assert event.actor == system_user() and "not been rotated" in event.reason
    assert not untouched.events.exists()

    lifecycle.rotate_key(key, actor=admin_user, secret=factories.make_secret("sk_live_"), prefix="sk_live_")
    assert sweeps.sweep_rotation_due() == {"due": 0, "flagged": 0, "skipped": 0}

    lifecycle.change_owner(key, actor=admin_user, new_owner=owner, reason="back again")
    assert sweeps.sweep_rotation_due()["flagged"] == 1
    assert len(events(key, LifecycleAction.FLAG_ROTATION)) == 2


def test_sweep_tasks_wrap_the_sweeps():
    gone = factories.WorkflowFactory(status=WorkflowStatus.DECOMMISSIONED)
    key = factories.ApiKeyFactory(workflow=gone)
    assert tasks.sweep_decommissioned_workflows.delay().get() == {"revoked": 1, "skipped": 0}
    assert tasks.sweep_expired_keys.delay().get() == {"expired": 0, "skipped": 0}
    assert tasks.sweep_ended_contracts.delay().get()["revoked"] == 0
    assert tasks.sweep_departed_owners.delay().get()["orphaned"] == 0
    assert tasks.sweep_rotation_due.delay().get()["flagged"] == 0
    key.refresh_from_db()
    assert key.status == KeyStatus.REVOKED


def test_beat_runs_every_sweep_daily_and_the_revocation_safety_net_every_five_minutes():
    from django_celery_beat.models import PeriodicTask

    jobs = {task.task: task for task in PeriodicTask.objects.filter(task__startswith="keys.tasks.")}
    for name in ("sweep_expired_keys", "sweep_ended_contracts", "sweep_decommissioned_workflows",
                 "sweep_departed_owners", "sweep_stale_keys", "sweep_rotation_due"):
        job = jobs[f"keys.tasks.{name}"]
        assert job.enabled and job.crontab.day_of_week == "*" and job.crontab.hour.isdigit()
    safety_net = jobs["keys.tasks.retry_due_revocations"]
    assert (safety_net.interval.every, safety_net.interval.period) == (5, "minutes")


# Two sweeps at once (PostgreSQL: row locks)


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_sweeps_revoke_each_key_once():
    gone = factories.WorkflowFactory(status=WorkflowStatus.DECOMMISSIONED)
    keys = [factories.ApiKeyFactory(workflow=gone) for _ in range(10)]
    system_user()
    barrier = threading.Barrier(3)
    results = []

    def run():
        try:
            barrier.wait()
            results.append(sweeps.sweep_decommissioned_workflows())
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r["revoked"] for r in results) == 10
    for key in keys:
        assert LifecycleEvent.objects.filter(key=key, action=LifecycleAction.REVOKE).count() == 1
        assert RevocationRequest.objects.filter(key=key).count() == 1
    assert ApiKey.objects.filter(status=KeyStatus.REVOKED).count() == 10
    assert RevocationRequest.objects.filter(status=RevocationRequestStatus.AWAITING_CONFIRMATION).count() == 10
