import os
import threading

import pytest
from django.db import close_old_connections, connection

from attestations import tasks
from attestations.choices import CampaignStatus, Decision, DefaultAction, ItemStatus
from attestations.models import AttestationItem, Campaign
from attestations.services import campaigns, decisions
from keys.choices import KeyStatus, LifecycleAction
from keys.models import ApiKey
from tests import factories
from tests.postgres import requires_postgres
from tests.worker import running_worker, wait_for


def _launched_campaign(reviewers, **fields):
    compliance = factories.ComplianceFactory(username="carol")
    for reviewer in reviewers:
        factories.ApiKeyFactory(owner=reviewer)
    campaign = campaigns.create_campaign(actor=compliance, name="concurrency", **fields)
    campaigns.launch_campaign(campaign, actor=compliance)
    return campaign, compliance


def _in_threads(count, work):
    barrier = threading.Barrier(count)
    results, lock = [], threading.Lock()

    def run(n):
        close_old_connections()
        try:
            barrier.wait()
            outcome = work(n)
        except Exception as exc:  # noqa: BLE001 - every outcome is collected and asserted on
            outcome = exc
        finally:
            connection.close()
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_twenty_simultaneous_decisions_apply_once():
    owner = factories.OwnerFactory(username="alice")
    campaign, _ = _launched_campaign([owner])
    item = campaign.items.get()

    def decide(n):
        return decisions.record_decision(item, actor=owner, decision=Decision.CONFIRM,
                                         justification=f"submission {n}", affirm=True)

    results = _in_threads(20, decide)
    applied = [r for r in results if isinstance(r, AttestationItem)]
    refused = [r for r in results if isinstance(r, campaigns.CampaignError)]
    assert len(applied) == 1 and len(refused) == 19, results
    item.refresh_from_db()
    assert item.status == ItemStatus.CONFIRMED
    assert item.history.filter(status=ItemStatus.CONFIRMED).count() == 1
    assert item.key.events.filter(action=LifecycleAction.ATTEST).count() == 1


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_close_racing_decisions_loses_none():
    owners = [factories.OwnerFactory(username=f"owner{n}") for n in range(10)]
    campaign, compliance = _launched_campaign(owners, default_action=DefaultAction.SUSPEND)
    items = list(campaign.items.select_related("reviewer"))

    def work(n):
        if n == len(items):
            return campaigns.close_campaign(campaign, actor=compliance)
        item = items[n]
        return decisions.record_decision(item, actor=item.reviewer, decision=Decision.CONFIRM,
                                         justification="racing the close", affirm=True)

    results = _in_threads(len(items) + 1, work)
    assert not [r for r in results if isinstance(r, Exception) and not isinstance(r, campaigns.CampaignError)]
    accepted = {r.pk for r in results if isinstance(r, AttestationItem)}
    for item in AttestationItem.objects.filter(campaign=campaign).select_related("key"):
        if item.pk in accepted:
            assert item.status == ItemStatus.CONFIRMED and item.key.status == KeyStatus.ACTIVE
        else:
            assert item.status == ItemStatus.EXPIRED and item.key.status == KeyStatus.SUSPENDED
        assert item.history.exclude(status=ItemStatus.PENDING).count() == 1


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_campaign_tasks_run_on_a_real_worker(mailoutbox):
    owner = factories.OwnerFactory(username="alice")
    campaign, compliance = _launched_campaign([owner], default_action=DefaultAction.REVOKE)
    with running_worker():
        result = tasks.close_campaign.delay(campaign.pk, compliance.pk)
        wait_for(lambda: Campaign.objects.get(pk=campaign.pk).status == CampaignStatus.CLOSED)
        wait_for(lambda: not AttestationItem.objects.filter(campaign=campaign, status=ItemStatus.PENDING).exists())
        tasks.close_campaign.delay(campaign.pk, compliance.pk)
        tasks.send_reminders.delay(campaign.pk)
        wait_for(lambda: ApiKey.objects.filter(status=KeyStatus.REVOKED).count() == 1)
    assert result.id
    key = ApiKey.objects.get()
    assert key.events.filter(action=LifecycleAction.REVOKE).count() == 1
    assert os.environ.get("CI") is None or os.environ.get("TEST_CELERY_BROKER_URL", "").startswith("redis://")
