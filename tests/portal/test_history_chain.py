import csv
import io
import json
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction
from django.utils import timezone

from attestations.choices import DefaultAction
from attestations.models import AttestationItem
from attestations.services import campaigns, reminders
from core import chain
from core.models import ChainHead, ChainLink
from keys.choices import RevocationReason
from keys.models import ApiKey
from keys.services import lifecycle
from keys.services.importer import COLUMNS, import_keys
from tests import factories
from tests.attestations.test_concurrency_and_worker import _in_threads
from tests.postgres import requires_postgres

KEY_HISTORY = "keys.historicalapikey"
ITEM_HISTORY = "attestations.historicalattestationitem"


def history_count(chain_id: int | None = None) -> int:
    """Every chained record (history records and evidence rows), of one chain or of all."""
    return sum(m._base_manager.count() for m, c in chain.chained_models().values() if chain_id in (None, c))


def sealed_labels() -> dict[str, int]:
    counts: dict[str, int] = {}
    for label in ChainLink.objects.values_list("model_label", flat=True):
        counts[label] = counts.get(label, 0) + 1
    return counts


def assert_whole_chain():
    result = chain.verify_chain()
    assert result.ok, result.problems
    assert result.checked == history_count() == ChainLink.objects.count()
    evidence_links = ChainLink.objects.filter(chain=chain.EVIDENCE)
    assert list(evidence_links.values_list("seq", flat=True)) == list(range(1, evidence_links.count() + 1))
    assert result.head_seq == evidence_links.count() == history_count(chain.EVIDENCE)
    return result


def import_csv(count: int, owner) -> str:
    factories.WorkflowFactory(customer=factories.CustomerFactory(external_id="CUST-1"), name="Export")
    factories.IssuingSystemFactory(name="Gateway")
    out = io.StringIO()
    header = [c for c in COLUMNS if c != "fingerprint"]
    writer = csv.DictWriter(out, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    for i in range(count):
        writer.writerow({
            "label": f"Imported {i}", "customer": "CUST-1", "workflow": "Export", "issuing_system": "Gateway",
            "owner": owner.username, "steward": "", "prefix": "sk_live_", "secret": factories.make_secret("sk_live_"),
            "scopes": "read:cases", "risk_tier": "high", "issued_on": "2025-01-15", "expires_on": "2027-01-15",
            "next_review_on": "2025-07-15", "last_used_at": "", "status": "", "approval_reference": f"CHG-{i}",
        })
    return out.getvalue()


def forget_the_chain():
    ChainLink.objects.all().delete()
    ChainHead.objects.all().delete()


def raw(sql: str, params=()):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


@pytest.mark.django_db
def test_clean_empty_database_verifies():
    result = chain.verify_chain()
    assert (result.ok, result.head_seq, result.head_digest, result.checked, result.problems) == (
        True, 0, chain.GENESIS, 0, [])


@pytest.mark.django_db
def test_lifecycle_events_are_sealed_in_history_order(owner, compliance_user):
    key = factories.ApiKeyFactory(owner=owner)
    lifecycle.suspend_key(key, actor=compliance_user, reason="investigating")
    lifecycle.reinstate_key(key, actor=compliance_user, reason="cleared")
    lifecycle.revoke_key(key, actor=compliance_user, reason_code=RevocationReason.EXPOSED, reason="leaked")
    key_links = ChainLink.objects.filter(model_label=KEY_HISTORY)
    assert list(key_links.values_list("record_id", flat=True)) == list(
        key.history.order_by("history_id").values_list("history_id", flat=True))
    assert key_links.count() == 4
    result = assert_whole_chain()
    assert result.head_digest == ChainLink.objects.filter(chain=chain.EVIDENCE).last().digest == \
        ChainHead.objects.get(pk=chain.EVIDENCE).digest


@pytest.mark.django_db(transaction=True)
def test_single_saves_are_sealed_by_their_own_commit(owner, compliance_user):
    key = factories.ApiKeyFactory(owner=owner)
    before = ChainLink.objects.count()
    assert before == history_count()  # every factory save committed with its link
    lifecycle.suspend_key(key, actor=compliance_user, reason="investigating")
    # The key's history record and its lifecycle event, in one transaction.
    assert ChainLink.objects.count() == before + 2
    sealed = {(link.model_label, link.record_id) for link in ChainLink.objects.order_by("-pk")[:2]}
    assert sealed == {(KEY_HISTORY, key.history.latest().history_id),
                      ("keys.lifecycleevent", key.events.latest("pk").pk)}
    assert_whole_chain()


@pytest.mark.django_db(transaction=True)
def test_rolled_back_writes_leave_no_links(owner, compliance_user):
    key = factories.ApiKeyFactory(owner=owner)
    with transaction.atomic():
        lifecycle.suspend_key(key, actor=compliance_user, reason="kept")
        try:
            with transaction.atomic():
                lifecycle.reinstate_key(ApiKey.objects.get(pk=key.pk), actor=compliance_user, reason="rolled back")
                raise RuntimeError
        except RuntimeError:
            pass
    with pytest.raises(RuntimeError), transaction.atomic():
        lifecycle.reinstate_key(ApiKey.objects.get(pk=key.pk), actor=compliance_user, reason="all rolled back")
        raise RuntimeError
    assert list(key.history.values_list("history_change_reason", flat=True))[:1] == ["kept"]
    assert_whole_chain()


@pytest.mark.django_db(transaction=True)
def test_sealed_atomic_seals_as_the_last_statement_of_its_outermost_block(owner, compliance_user):
    key = factories.ApiKeyFactory(owner=owner)
    before = ChainLink.objects.count()
    with chain.sealed_atomic():
        lifecycle.suspend_key(key, actor=compliance_user, reason="first")
        with chain.sealed_atomic():
            lifecycle.reinstate_key(ApiKey.objects.get(pk=key.pk), actor=compliance_user, reason="second")
        assert ChainLink.objects.count() == before  # nothing sealed before the outermost block ends
    assert ChainLink.objects.count() == before + 4  # two history records, two lifecycle events
    assert_whole_chain()


@pytest.mark.django_db(transaction=True)
def test_sealed_atomic_drops_the_records_of_an_inner_block_that_raised(owner, compliance_user):
    key = factories.ApiKeyFactory(owner=owner)
    with chain.sealed_atomic():
        lifecycle.suspend_key(key, actor=compliance_user, reason="kept")
        with pytest.raises(RuntimeError), chain.sealed_atomic():
            lifecycle.reinstate_key(ApiKey.objects.get(pk=key.pk), actor=compliance_user, reason="dropped")
            raise RuntimeError
        # A plain savepoint rolled back: its record is gone from the database, and is skipped.
        try:
            with transaction.atomic():
                lifecycle.reinstate_key(ApiKey.objects.get(pk=key.pk), actor=compliance_user, reason="also dropped")
                raise RuntimeError
        except RuntimeError:
            pass
    assert list(key.history.values_list("history_change_reason", flat=True))[:1] == ["kept"]
    assert_whole_chain()


@pytest.mark.django_db(transaction=True)
def test_a_failed_seal_rolls_the_whole_block_back(owner, compliance_user, monkeypatch):
    key = factories.ApiKeyFactory(owner=owner)
    records, links = history_count(), ChainLink.objects.count()

    def refuse(*args, **kwargs):
        raise RuntimeError("the head is unavailable")

    monkeypatch.setattr(chain, "_locked_head", refuse)
    with pytest.raises(RuntimeError, match="unavailable"):
        lifecycle.suspend_key(key, actor=compliance_user, reason="never committed")
    monkeypatch.undo()
    assert (history_count(), ChainLink.objects.count()) == (records, links)
    assert ApiKey.objects.get(pk=key.pk).status == key.status
    assert_whole_chain()


@pytest.mark.django_db(transaction=True)
def test_bulk_import_launch_escalation_and_close_are_sealed(owner, compliance_user):
    imported = import_keys(import_csv(150, owner), actor=compliance_user, reason="Gateway inventory")
    assert imported.count == 150
    assert sealed_labels()[KEY_HISTORY] == 150
    campaign = campaigns.create_campaign(actor=compliance_user, name="Q4", default_action=DefaultAction.SUSPEND,
                                         escalation_days=0)
    created = campaigns.launch_campaign(campaign, actor=compliance_user)
    assert created == 150 and sealed_labels()[ITEM_HISTORY] == 150
    campaign.refresh_from_db()
    assert reminders.escalation_targets(campaign, timezone.localdate(), actor=compliance_user)
    assert sealed_labels()[ITEM_HISTORY] == 300
    campaigns.close_campaign(campaign, actor=compliance_user)
    assert AttestationItem.history.count() == 450
    assert sealed_labels()[ITEM_HISTORY] == AttestationItem.history.count()
    assert_whole_chain()


@pytest.mark.django_db
def test_altered_row_is_reported_exactly(owner, compliance_user):
    keys = [factories.ApiKeyFactory(owner=owner) for _ in range(3)]
    for key in keys:
        lifecycle.suspend_key(key, actor=compliance_user, reason="investigating")
    target = keys[1].history.latest()
    raw("UPDATE keys_historicalapikey SET history_change_reason = %s WHERE history_id = %s",
        ["nothing happened", target.history_id])
    result = chain.verify_chain()
    assert not result.ok
    assert [(p.model_label, p.record_id, p.kind) for p in result.problems] == [
        (KEY_HISTORY, target.history_id, "altered")]
    assert str(target.history_id) in result.problems[0].message


@pytest.mark.django_db
def test_deleted_row_is_reported(owner, compliance_user):
    key = factories.ApiKeyFactory(owner=owner)
    lifecycle.suspend_key(key, actor=compliance_user, reason="investigating")
    lifecycle.reinstate_key(key, actor=compliance_user, reason="cleared")
    victim = key.history.get(history_change_reason="investigating")
    raw("DELETE FROM keys_historicalapikey WHERE history_id = %s", [victim.history_id])
    result = chain.verify_chain()
    assert [(p.model_label, p.record_id, p.kind) for p in result.problems] == [
        (KEY_HISTORY, victim.history_id, "deleted")]


@pytest.mark.django_db
def test_inserted_row_is_reported(owner, compliance_user):
    key = factories.ApiKeyFactory(owner=owner)
    lifecycle.suspend_key(key, actor=compliance_user, reason="investigating")
    model = ApiKey.history.model
    columns = ", ".join(f.column for f in model._meta.concrete_fields if f.column != "history_id")
    raw(f"INSERT INTO keys_historicalapikey ({columns}) SELECT {columns} FROM keys_historicalapikey "
        f"WHERE history_id = %s", [key.history.latest().history_id])
    forged = key.history.latest().history_id
    # A later legitimate write must not sweep the forged row into the chain.
    lifecycle.reinstate_key(key, actor=compliance_user, reason="cleared")
    result = chain.verify_chain()
    assert [(p.model_label, p.record_id, p.kind) for p in result.problems] == [(KEY_HISTORY, forged, "inserted")]


@pytest.mark.django_db
def test_tampered_link_breaks_continuity_not_the_records(owner, compliance_user):
    for _ in range(3):
        factories.ApiKeyFactory(owner=owner)
    middle = ChainLink.objects.get(seq=2)
    ChainLink.objects.filter(pk=middle.pk).delete()
    result = chain.verify_chain()
    kinds = {(p.model_label, p.record_id, p.kind) for p in result.problems}
    following = ChainLink.objects.get(seq=3)
    assert (following.model_label, following.record_id, "out_of_order") in kinds
    assert (middle.model_label, middle.record_id, "inserted") in kinds
    assert not [p for p in result.problems if p.kind in ("altered", "deleted")]


@pytest.mark.django_db
def test_head_mismatch_is_reported(owner):
    factories.ApiKeyFactory(owner=owner)
    ChainHead.objects.filter(pk=chain.EVIDENCE).update(seq=1, digest="f" * 64)
    result = chain.verify_chain()
    assert [p.kind for p in result.problems] == ["head_mismatch", "head_mismatch"]  # links beyond it; not its digest
    # Moved back onto a real link: the links beyond it are still named.
    first = ChainLink.objects.get(chain=chain.EVIDENCE, seq=1)
    ChainHead.objects.filter(pk=chain.EVIDENCE).update(seq=1, digest=first.digest)
    assert [p.kind for p in chain.verify_chain().problems] == ["head_mismatch"]


@pytest.mark.django_db
def test_verify_history_command(owner, compliance_user, capsys):
    key = factories.ApiKeyFactory(owner=owner)
    lifecycle.suspend_key(key, actor=compliance_user, reason="investigating")
    call_command("verify_history")
    out = capsys.readouterr().out
    head = ChainHead.objects.get(pk=chain.EVIDENCE)
    assert "History chain OK" in out and f"seq {head.seq} digest {head.digest}" in out

    target = key.history.latest()
    raw("UPDATE keys_historicalapikey SET history_change_reason = 'edited' WHERE history_id = %s", [target.history_id])
    with pytest.raises(CommandError, match="broken: 1 problems"):
        call_command("verify_history")
    out = capsys.readouterr().out
    assert re.search(rf"ALTERED\s+{KEY_HISTORY} #{target.history_id}:", out)
    assert f"digest {head.digest}" in out

    with pytest.raises(CommandError):
        call_command("verify_history", "--json")
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is False and data["head_seq"] == head.seq and data["head_digest"] == head.digest
    assert data["problems"] == [{"model_label": KEY_HISTORY, "record_id": target.history_id, "kind": "altered",
                                 "message": data["problems"][0]["message"]}]


@pytest.mark.django_db
def test_seal_existing_history_adopts_only_into_an_empty_chain(owner, capsys):
    factories.ApiKeyFactory(owner=owner)
    forget_the_chain()  # as if written before the chain existed
    assert {p.kind for p in chain.verify_chain().problems} == {"inserted"}
    call_command("seal_existing_history")
    assert_whole_chain()
    factories.ApiKeyFactory(owner=owner)
    with pytest.raises(CommandError, match="already has"):
        call_command("seal_existing_history")


def test_every_bulk_history_write_goes_through_the_chain():
    """simple-history's bulk helpers send no signals: only core.chain may call them."""
    root = Path(settings.BASE_DIR)
    offenders = [
        str(path.relative_to(root))
        for app in ("keys", "attestations", "portal")
        for path in (root / app).rglob("*.py")
        if path.name != "chain.py" and re.search(r"simple_history\.utils import .*bulk_|bulk_history_create",
                                                 path.read_text())
    ]
    assert offenders == []


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_keep_one_unbroken_chain():
    compliance = factories.ComplianceFactory(username="carol")
    owners = [factories.OwnerFactory(username=f"owner{n}") for n in range(4)]
    keys = [factories.ApiKeyFactory(owner=owners[n % 4]) for n in range(24)]
    csv_text = import_csv(300, owners[0])
    campaign = campaigns.create_campaign(actor=compliance, name="racing")

    def work(n):
        if n == 0:
            return import_keys(csv_text, actor=compliance, reason="concurrent import").count
        if n == 1:
            return campaigns.launch_campaign(campaign, actor=compliance)
        for key in keys[n::12]:
            lifecycle.suspend_key(key, actor=compliance, reason=f"writer {n}")
            lifecycle.reinstate_key(ApiKey.objects.get(pk=key.pk), actor=compliance, reason=f"writer {n}")
        return n

    results = _in_threads(12, work)
    assert not [r for r in results if isinstance(r, Exception)], [str(r) for r in results]
    assert 300 in results
    assert_whole_chain()
    campaigns.close_campaign(campaign, actor=compliance)
    assert_whole_chain()
