"""A Celery worker SIGKILLed and PostgreSQL taken away in the middle of a campaign close and of a
revocation delivery: after recovery the close is applied exactly once and no revocation is lost, nor
sent again once the issuer acknowledged it.

Real worker processes (``tests.faults.harness.WorkerProcess``) on Redis, a real PostgreSQL outage
(``pg_ctlcluster restart`` under ``FAULT_RESTART_POSTGRES=1``, as in CI; terminated sessions otherwise),
a real HTTP issuer on 127.0.0.1. Redelivery is ``acks_late``'s, compressed to seconds by the worker's
visibility timeout (``tests.faults.celery_worker``).
"""

import contextlib
import datetime
import re

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from attestations import tasks
from attestations.choices import CampaignStatus, DefaultAction, ItemStatus
from attestations.models import Campaign
from attestations.services import campaigns
from core.chain import verify_chain
from keys import tasks as key_tasks
from keys.choices import (
    SENDABLE_REVOCATION_STATUSES,
    IssuingSystemKind,
    KeyStatus,
    LifecycleAction,
    RevocationReason,
    RevocationRequestStatus,
    RevocationState,
)
from keys.models import ApiKey, IssuingSystem, LifecycleEvent, RevocationRequest
from keys.services import lifecycle, revocation
from tests import factories
from tests.postgres import requires_postgres

from .harness import (
    HangingIssuer,
    WorkerProcess,
    backend_waiting_on_lock,
    broker_queue,
    database_dsn,
    interrupt_postgres,
    wait_until,
)

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

KEYS = 12
BLOCKED_AT = 7  # the close stops at the 7th key, after suspending six in its (uncommitted) transaction


@pytest.fixture
def workers(tmp_path):
    started = []

    def start(broker, queue):
        worker = WorkerProcess(broker, queue, tmp_path / f"worker-{len(started) + 1}.log")
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def _history_statuses(model, pk) -> list[str]:
    return list(model.history.filter(id=pk).order_by("history_id").values_list("status", flat=True))


@requires_postgres
def test_close_interrupted_by_killed_worker_and_database_outage_completes_exactly_once(workers):
    compliance = factories.ComplianceFactory(username="carol")
    owners = [factories.OwnerFactory(username=f"owner{n}") for n in range(3)]
    for n in range(KEYS):
        factories.ApiKeyFactory(owner=owners[n % 3])
    campaign = campaigns.create_campaign(actor=compliance, name="2026-Q4 faults", default_action=DefaultAction.SUSPEND)
    campaigns.launch_campaign(campaign, actor=compliance)
    items = list(campaign.items.order_by("pk"))
    blocked_key_id = items[BLOCKED_AT - 1].key_id

    with broker_queue() as (broker, queue):
        first = workers(broker, queue)
        # Hold the 7th key's row, so the close blocks in the middle of its transaction.
        holder = psycopg.connect(database_dsn())
        holder.execute("SELECT id FROM keys_apikey WHERE id = %s FOR UPDATE", [blocked_key_id])
        holder_pid = holder.info.backend_pid
        sent = tasks.close_campaign.delay(campaign.pk, compliance.pk)
        wait_until(lambda: backend_waiting_on_lock(connection.settings_dict["NAME"], holder_pid), 30,
                   "the close to block on the held key")
        assert "close_campaign" in first.log() and first.finished(sent.id) is None

        first.kill()
        how = interrupt_postgres()
        holder.close()

        # Nothing half-written: the killed close left no trace.
        campaign.refresh_from_db()
        assert campaign.status == CampaignStatus.ACTIVE, how
        assert not campaign.items.exclude(status=ItemStatus.PENDING).exists()
        assert not ApiKey.objects.filter(status=KeyStatus.SUSPENDED).exists()
        assert not LifecycleEvent.objects.filter(action=LifecycleAction.SUSPEND).exists()

        second = workers(broker, queue)
        # The unacknowledged close comes back to the fresh worker (acks_late); a second close asked for
        # meanwhile (compliance clicking again, the nightly close_due_campaigns) changes nothing.
        wait_until(lambda: second.finished(sent.id), 60, f"the redelivered close ({how})")
        again = tasks.close_campaign.delay(campaign.pk, compliance.pk)
        wait_until(lambda: second.finished(again.id), 30, "the repeated close")
        assert "{}" in second.finished(again.id)

    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.CLOSED and campaign.closed_by == compliance
    assert _history_statuses(Campaign, campaign.pk).count(CampaignStatus.CLOSED) == 1
    for item in campaign.items.all():
        assert item.status == ItemStatus.EXPIRED and item.default_action_applied == DefaultAction.SUSPEND
        assert _history_statuses(type(item), item.pk).count(ItemStatus.EXPIRED) == 1
        events = LifecycleEvent.objects.filter(key_id=item.key_id, action=LifecycleAction.SUSPEND)
        assert events.count() == 1, f"key {item.key_id} suspended {events.count()} times"
    assert ApiKey.objects.filter(status=KeyStatus.SUSPENDED).count() == KEYS
    result = verify_chain()
    assert result.ok, result.problems


@requires_postgres
def test_revocation_delivery_interrupted_by_killed_worker_and_database_outage_is_retried_not_lost(workers):
    admin = factories.AdminFactory(username="dave")
    issuer = HangingIssuer()
    try:
        system = IssuingSystem.objects.create(name="Issuer on loopback", kind=IssuingSystemKind.WEBHOOK,
                                              revoke_url=issuer.url)
        key = factories.ApiKeyFactory(issuing_system=system, owner=factories.OwnerFactory(username="alice"))

        with broker_queue() as (broker, queue):
            first = workers(broker, queue)
            lifecycle.revoke_key(key, actor=admin, reason_code=RevocationReason.EXPOSED, reason="Leaked in a paste.")
            request = RevocationRequest.objects.get(key=key)
            # The worker claimed the call and the issuer holds it open: the worker dies waiting.
            assert issuer.first_call.wait(30), first.log()[-2000:]
            request.refresh_from_db()
            assert request.attempts == 1 and request.status == RevocationRequestStatus.PENDING

            first.kill()
            how = interrupt_postgres()
            issuer.release()

            # Issue 4: a worker killed mid-task leaves the request to be retried, not lost.
            request.refresh_from_db()
            assert request.status in SENDABLE_REVOCATION_STATUSES, how
            assert request.acknowledged_at is None and request.next_attempt_at is not None
            key.refresh_from_db()
            assert key.status == KeyStatus.REVOKED and key.revocation_state == RevocationState.PENDING
            assert request.pk in revocation.retry_due(now=request.next_attempt_at)
            assert request.pk not in revocation.retry_due(), "picked up again while its call may still be running"

            second = workers(broker, queue)
            # The redelivered task finds the call's lease still running and sends nothing twice.
            task_id = _task_id_in_log(first.log(), "keys.tasks.deliver_revocation")
            assert "not_due" in wait_until(lambda: second.finished(task_id), 60, f"the redelivered delivery ({how})")
            assert len(issuer.calls) == 1

            # The lease runs out (the clock moves past it) and the safety net sends the call again.
            RevocationRequest.objects.filter(pk=request.pk).update(next_attempt_at=timezone.now() - datetime.timedelta(seconds=1))
            net = key_tasks.retry_due_revocations.delay()
            wait_until(lambda: second.finished(net.id), 30, "the safety net")
            wait_until(lambda: RevocationRequest.objects.get(pk=request.pk).status == RevocationRequestStatus.ACKNOWLEDGED,
                       30, "the issuer's acknowledgement")

            # After the acknowledgement, more deliveries, safety nets and another crash send nothing.
            late = [key_tasks.deliver_revocation.delay(request.pk), key_tasks.retry_due_revocations.delay()]
            second.kill()
            interrupt_postgres()
            third = workers(broker, queue)
            late.append(key_tasks.deliver_revocation.delay(request.pk))
            # The delivery queued after the crash runs on the new worker and finds the request acknowledged.
            assert "acknowledged" in wait_until(lambda: third.finished(late[-1].id), 60, "the delivery after the crash")
            # The tasks queued just before the crash run on the second worker, or on the third after
            # redelivery, unless the kill caught one between Redis's BRPOP and kombu's unacked bookkeeping
            # (the Redis transport's known window): the request in the database, not a task message, is what
            # must not be lost, and a lost late message can only mean one call fewer, never one more.
            for task in late[:-1]:
                with contextlib.suppress(AssertionError):
                    wait_until(lambda task=task: third.finished(task.id) or second.finished(task.id), 15, "a late task")
    finally:
        issuer.close()

    assert len(issuer.calls) == 2, issuer.calls
    assert {c["idempotency_key"] for c in issuer.calls} == {f"revocation-{request.pk}"}
    assert all(c["body"]["request_id"] == request.pk and c["body"]["prefix"] == key.prefix for c in issuer.calls)
    request.refresh_from_db()
    assert request.status == RevocationRequestStatus.ACKNOWLEDGED and request.attempts == 2
    assert request.issuer_reference == "ISS-2"
    attempts = list(request.attempt_log.order_by("number"))
    assert [(a.number, a.succeeded, a.status_code) for a in attempts] == [(1, False, None), (2, True, 200)]
    assert attempts[0].error == revocation.NO_RESULT
    key.refresh_from_db()
    assert key.revocation_state == RevocationState.CONFIRMED
    assert LifecycleEvent.objects.filter(key=key, action=LifecycleAction.CONFIRM_REVOCATION).count() == 1
    assert LifecycleEvent.objects.filter(key=key, action=LifecycleAction.REVOKE).count() == 1
    assert verify_chain().ok


def _task_id_in_log(log: str, name: str) -> str:
    found = re.search(rf"Task {re.escape(name)}\[([0-9a-f-]+)\] received", log)
    assert found, log[-2000:]
    return found.group(1)
