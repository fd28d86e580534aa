"""Every chained table, tampered with in SQL as an auditor would try: each edit, deletion and insertion is
named by ``verify_history`` and by the next evidence PDF, however old the row (checked incrementally)."""

import datetime
import re

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from attestations.models import CampaignSchedule, EvidenceExport, Notification, OwnershipTransfer
from attestations.services import exports
from contacts import access
from core import chain, retention
from core.audit import record_access
from core.chain import sealed_atomic
from core.history import attribute_change
from core.models import AccessAction, AccessRecord, ChainCheckpoint, ChainErasure, ChainLink, ChainPurge
from keys.models import KeyRelease, RevocationAttempt, RevocationRequest
from keys.services import exposures, lifecycle, tokens
from tests import factories
from tests.attestations.evidence_helpers import decided_campaign, reader, run_export, text

pytestmark = pytest.mark.django_db


def quote(name: str) -> str:
    return connection.ops.quote_name(name)


@pytest.fixture
def everywhere(compliance_user, owner, other_owner, admin_user, media_root, django_capture_on_commit_callbacks):
    """At least one row, written by the application, in every chained table; then an export (a checkpoint)."""
    campaign, own, others = decided_campaign(compliance_user, owner, other_owner)
    key = own[0]
    with sealed_atomic():
        schedule = CampaignSchedule(name="Quarterly")
        attribute_change(schedule, compliance_user, "created")
        schedule.save()
        transfer = OwnershipTransfer(key=others[0], from_user=other_owner, to_user=owner, requested_by=other_owner,
                                     reason="team change")
        transfer.save()
        request = RevocationRequest(key=others[1], issuing_system=others[1].issuing_system, reason_code="exposed",
                                    reason="leaked", requested_by=compliance_user)
        request.save()
        RevocationAttempt(request=request, number=1, url="http://127.0.0.1:9/revoke").save()
        Notification(campaign=campaign, kind=Notification.Kind.REMINDER, recipient=other_owner, sequence=3,
                     item_count=2).save()
        KeyRelease(key=others[0], reason="retired", status_before="active", requested_by=owner,
                   ends_at=timezone.now() + datetime.timedelta(days=7)).save()
    system = factories.IssuingSystemFactory(name="Scanner")
    tokens.create_token(actor=admin_user, name="scanner", issuing_system=system,
                                   acts_as=factories.UserFactory(username="scanner-bot"))
    # An owner reports a key they may not see: an exposure, and a triage for compliance.
    exposures.report_exposure(reporter=owner, source="portal", fingerprint=others[0].fingerprint,
                              location="https://paste.example/1")
    factories.KeyExceptionFactory(key=key)
    factories.OwnerProfileFactory(user=owner)
    factories.grant_access(factories.AuditorFactory(username="ada-auditor"), by=compliance_user)
    contact, _ = access.invite_contact(actor=compliance_user, customer=key.workflow.customer, name="Dana Contact",
                                       email="dana@customer.example")
    record_access(None, AccessAction.LOGIN_FAILED, username="long-ago")
    retention.purge_access_records(now=timezone.now() + datetime.timedelta(days=3 * 366))  # past its retention
    record_access(None, AccessAction.CONTACT_VISIT, "/contact/", user=contact.user)
    record_access(None, AccessAction.LOGIN_FAILED, username="mallory")
    access.erase_contact(access.invite_contact(actor=compliance_user, customer=key.workflow.customer,
                                               name="Erin Erased", email="erin@customer.example")[0],
                         actor=admin_user, reason="erasure request #1")
    # SCIM provisioning: a client's token, a person it provisions and a group it puts them in.
    from identity.services import provisioning, scim_tokens

    scim_account = scim_tokens.create_token(actor=admin_user, name="Okta")[0].acts_as
    person = provisioning.create_person({"username": "fay@example.test", "email": "fay@example.test"},
                                        actor=scim_account, source="SCIM Okta")
    provisioning.create_group(display_name="Key Owners", member_ids=[person.pk], actor=scim_account, source="SCIM Okta")
    run_export(django_capture_on_commit_callbacks, actor=compliance_user, kind="key", key=key)
    empty = [label for label, (model, _) in chain.chained_models().items() if not model._base_manager.exists()]
    assert empty == [], f"the scenario writes no row in {empty}"
    return {"key": key, "capture": django_capture_on_commit_callbacks, "actor": compliance_user}


def oldest_rows() -> list[tuple[str, object, int]]:
    """(label, model, id) of the oldest sealed row of every chained table (behind the export's checkpoint)."""
    found = []
    for label, (model, _) in chain.chained_models().items():
        existing = set(model._base_manager.values_list("pk", flat=True))
        links = ChainLink.objects.filter(model_label=label).order_by("seq").values_list("record_id", flat=True)
        found.append((label, model, next(record_id for record_id in links if record_id in existing)))
    return found


def editable_column(model) -> str:
    """A column of the table to change in SQL: a text one where there is one, else a number."""
    fields = [f for f in model._meta.concrete_fields if not f.primary_key and f.column != "personal_salt"]
    for wanted in (("CharField", "TextField"), ("PositiveIntegerField", "PositiveSmallIntegerField",
                                                "PositiveBigIntegerField")):
        for f in fields:
            if f.get_internal_type() in wanted and not f.choices:
                return f.column
    raise AssertionError(f"{model._meta.label} has no column to tamper with")


def tamper(model, record_id: int) -> None:
    """Change one column of one row in SQL, behind the application's back."""
    column = editable_column(model)
    text = next(f for f in model._meta.concrete_fields if f.column == column).get_internal_type() in (
        "CharField", "TextField")
    value, params = ("%s", ["tampered", record_id]) if text else (f"{quote(column)} + 1", [record_id])
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {quote(model._meta.db_table)} SET {quote(column)} = {value} "
                       f"WHERE {quote(model._meta.pk.column)} = %s", params)


def next_export_names(everywhere, expected: set[tuple[str, int]]) -> str:
    export = run_export(everywhere["capture"], actor=everywhere["actor"], kind="key", key=everywhere["key"])
    assert export.chain_ok is False
    body = re.sub(r"\s+", " ", text(reader(export)))
    assert "Chain BROKEN" in body
    for label, record_id in expected:
        assert f"{label} #{record_id}" in body, f"the PDF does not name {label} #{record_id}"
    return body


def problems(result) -> set[tuple[str, int, str]]:
    return {(p.model_label, p.record_id, p.kind) for p in result.problems}


def test_the_chained_tables_are_all_the_evidence():
    labels = set(chain.chained_models())
    for label in ("keys.lifecycleevent", "keys.historicalrevocationattempt", "portal.accessrecord",
                  "attestations.notification", "attestations.historicalevidenceexport",
                  "contacts.historicalaccesslink", "keys.historicalapikey", "keys.historicalrevocationrequest",
                  "attestations.historicalownershiptransfer", "contacts.historicalcustomercontact"):
        assert label in labels
    assert chain.chained_models()["portal.accessrecord"][1] == chain.ACCESS


def test_an_sql_update_of_any_chained_table_is_named(everywhere, capsys):
    assert ChainCheckpoint.objects.exists()
    tampered = set()
    for label, model, record_id in oldest_rows():
        tamper(model, record_id)
        tampered.add((label, record_id))
    full = chain.verify_chain(checkpoint=False)
    assert {(label, record_id) for label, record_id, kind in problems(full) if kind == "altered"} == tampered
    since = chain.verify_since_checkpoint()
    assert {(label, record_id) for label, record_id, kind in problems(since) if kind == "altered"} == tampered
    with pytest.raises(CommandError):
        call_command("verify_history")
    out = capsys.readouterr().out
    for label, record_id in tampered:
        assert re.search(rf"ALTERED\s+{re.escape(label)} #{record_id}:", out)
    next_export_names(everywhere, tampered)


def test_an_sql_delete_from_any_chained_table_is_named(everywhere, capsys):
    # Deleting a purge's record also un-excuses the rows it purged: they are named as deleted too.
    excused = {(label, i) for label, top, ids in ChainPurge.objects.values_list("model_label", "up_to_id", "record_ids")
               for i in [*range(1, (top or 0) + 1), *ids]}
    deleted = set()
    with connection.cursor() as cursor:
        for label, model, record_id in oldest_rows():
            cursor.execute(f"DELETE FROM {quote(model._meta.db_table)} WHERE {quote(model._meta.pk.column)} = %s",
                           [record_id])
            deleted.add((label, record_id))
    for result in (chain.verify_chain(checkpoint=False), chain.verify_since_checkpoint()):
        found = {(label, record_id) for label, record_id, kind in problems(result) if kind == "deleted"}
        assert deleted <= found and found - deleted <= excused
    with pytest.raises(CommandError):
        call_command("verify_history")
    out = capsys.readouterr().out
    for label, record_id in deleted:
        assert re.search(rf"DELETED\s+{re.escape(label)} #{record_id}:", out)
    next_export_names(everywhere, deleted)


def test_an_sql_insert_into_any_chained_table_is_named(everywhere, capsys):
    inserted = set()
    with connection.cursor() as cursor:
        for label, model, record_id in oldest_rows():
            pk = model._meta.pk.column
            columns = [f.column for f in model._meta.concrete_fields if f.column != pk]
            selected = [f"{quote(c)} + 1000" if c == "sequence" else quote(c) for c in columns]
            cursor.execute(f"INSERT INTO {quote(model._meta.db_table)} ({', '.join(quote(c) for c in columns)}) "
                           f"SELECT {', '.join(selected)} FROM {quote(model._meta.db_table)} WHERE {quote(pk)} = %s",
                           [record_id])
            inserted.add((label, model._base_manager.order_by("-pk").values_list("pk", flat=True).first()))
    assert {(label, record_id) for label, record_id, kind in problems(chain.verify_chain(checkpoint=False))
            if kind == "inserted"} == inserted
    assert {(label, record_id) for label, record_id, kind in problems(chain.verify_since_checkpoint())
            if kind == "inserted"} == inserted
    with pytest.raises(CommandError):
        call_command("verify_history")
    out = capsys.readouterr().out
    for label, record_id in inserted:
        assert re.search(rf"INSERTED\s+{re.escape(label)} #{record_id}:", out)
    next_export_names(everywhere, inserted)


def test_an_intact_chain_checks_only_what_changed_since_the_last_verified_head(everywhere):
    assert chain.verify_since_checkpoint().ok  # what the export recorded after its own check
    first = chain.verify_since_checkpoint()
    assert first.ok and first.checked == 0 and first.since  # nothing new since
    lifecycle.suspend_key(everywhere["key"], actor=everywhere["actor"], reason="investigating")
    second = chain.verify_since_checkpoint()
    assert second.ok and second.checked == 2  # the key's history record and its lifecycle event
    assert second.since["checkpoint"] == first.checkpoint
    full = chain.verify_chain()
    assert full.ok and full.checked == ChainLink.objects.count()


def test_a_rewritten_link_is_named(everywhere):
    link = ChainLink.objects.filter(chain=chain.EVIDENCE).order_by("seq").first()
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {ChainLink._meta.db_table} SET digest = %s WHERE id = %s", ["0" * 64, link.pk])
    assert "rewritten" in {p.kind for p in chain.verify_since_checkpoint().problems}
    assert not chain.verify_chain(checkpoint=False).ok


def test_against_head_proves_an_old_head_unchanged(everywhere, capsys):
    export = EvidenceExport.objects.filter(status="done").latest("pk")
    assert export.chain_seq and export.chain_head
    lifecycle.suspend_key(everywhere["key"], actor=everywhere["actor"], reason="later work does not matter")
    call_command("verify_history", "--against-head", str(export.chain_seq), export.chain_head)
    assert "History chain OK" in capsys.readouterr().out
    with pytest.raises(CommandError):
        call_command("verify_history", "--against-head", str(export.chain_seq), "f" * 64)
    # An old record changed in SQL: the old head no longer holds.
    label, model, record_id = oldest_rows()[0]
    tamper(model, record_id)
    with pytest.raises(CommandError):
        call_command("verify_history", "--against-head", str(export.chain_seq), export.chain_head)
    assert f"{label} #{record_id}" in capsys.readouterr().out


def test_bad_against_head_arguments_are_refused():
    with pytest.raises(CommandError, match="sequence number and a 64-character"):
        call_command("verify_history", "--against-head", "x", "abc")


@pytest.mark.django_db
@pytest.mark.parametrize("workers", ["0", "-2"])
def test_a_walk_in_no_processes_is_refused_and_leaves_no_checkpoint(workers):
    from core.models import ChainCheckpoint

    with pytest.raises(CommandError, match="--workers takes a number of processes, 1 or more"):
        call_command("verify_history", "--workers", workers)
    assert not ChainCheckpoint.objects.exists()


@pytest.mark.django_db
def test_the_command_walks_with_the_workers_asked_for(capsys):
    call_command("verify_history", "--workers", "2")  # SQLite, or a short chain: one process, the same report
    assert "History chain OK" in capsys.readouterr().out


def test_a_contacts_erasure_leaves_the_chain_verifiable(everywhere, admin_user, compliance_user,
                                                        django_capture_on_commit_callbacks):
    key = everywhere["key"]
    contact, _ = access.invite_contact(actor=compliance_user, customer=key.workflow.customer, name="Eve Person",
                                       email="eve@customer.example")
    access.assign_key(contact, key, actor=admin_user)
    record_access(None, AccessAction.CONTACT_SIGNED_IN, "link", user=contact.user)
    assert chain.verify_chain().ok
    access.erase_contact(contact, actor=admin_user, reason="GDPR request 2026-114")
    contact.refresh_from_db()
    assert contact.name == "[erased]" and "eve" not in contact.email and contact.erased_at
    assert not contact.history.filter(name="Eve Person").exists()
    assert not contact.history.filter(email="eve@customer.example").exists()
    assert not AccessRecord.objects.filter(username="eve@customer.example").exists()
    assert contact.user.username == f"erased-contact-{contact.pk}" and not contact.user.email
    result = chain.verify_chain()
    assert result.ok, result.problems
    assert result.erased >= contact.history.count() - 1
    assert chain.verify_since_checkpoint().ok
    erasure = ChainErasure.objects.latest("pk")
    assert "eve" not in str(erasure.digests).lower()
    # The reports show the record as erased.
    export = run_export(django_capture_on_commit_callbacks, actor=compliance_user, kind="key", key=key)
    body = text(reader(export))
    assert "Chain intact" in body and f"erased-contact-{contact.pk}" in body and "eve@customer.example" not in body
    # Removing personal data in SQL, without an erasure, is tampering.
    other, _ = access.invite_contact(actor=compliance_user, customer=key.workflow.customer, name="Finn Person",
                                     email="finn@customer.example")
    record = other.history.first()
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {type(record)._meta.db_table} SET name = '[erased]', personal_salt = '' "
                       "WHERE history_id = %s", [record.history_id])
    assert ("contacts.historicalcustomercontact", record.history_id, "altered") in problems(chain.verify_chain())


def test_only_admins_erase_and_with_a_reason(everywhere, compliance_user, admin_user):
    contact, _ = access.invite_contact(actor=compliance_user, customer=everywhere["key"].workflow.customer,
                                       name="Gus", email="gus@customer.example")
    with pytest.raises(access.ContactError, match="Only admins"):
        access.erase_contact(contact, actor=compliance_user, reason="request")
    with pytest.raises(access.ContactError, match="Say why"):
        access.erase_contact(contact, actor=admin_user, reason=" ")
    # Refused: nothing written.
    contact.refresh_from_db()
    assert contact.name == "Gus" and contact.is_active and not contact.erased_at
    assert not ChainErasure.objects.filter(subject=f"customer contact #{contact.pk}").exists()
    assert not access.may_erase(compliance_user, contact) and access.may_erase(admin_user, contact)
    access.erase_contact(contact, actor=admin_user, reason="request")
    contact.refresh_from_db()
    assert not access.may_erase(admin_user, contact)
    with pytest.raises(access.ContactError, match="already erased"):
        access.erase_contact(contact, actor=admin_user, reason="again")


def test_retention_deletes_nothing_early_and_records_what_it_deletes(everywhere, settings):
    settings.ACCESS_RECORD_RETENTION_DAYS = 30
    old = record_access(None, AccessAction.LOGIN_FAILED, username="old-attempt")
    young = record_access(None, AccessAction.LOGIN_FAILED, username="young-attempt")
    # Thirty days after the young record: it is exactly as old as the period, and kept.
    purge = retention.purge_access_records(now=young.at + datetime.timedelta(days=30))
    assert purge is not None and purge.up_to_id >= old.pk
    assert AccessRecord.objects.filter(pk=young.pk).exists()
    assert not AccessRecord.objects.filter(pk__lte=old.pk).exists()
    assert ChainLink.objects.filter(model_label="portal.chainpurge", record_id=purge.pk).exists()
    result = chain.verify_chain()
    assert result.ok, result.problems
    assert result.purged >= purge.count
    assert chain.verify_since_checkpoint().ok
    settings.ACCESS_RECORD_RETENTION_DAYS = 0  # keep forever
    assert retention.purge_access_records(now=young.at + datetime.timedelta(days=9999)) is None


def test_expired_export_files_are_deleted_as_a_chained_change(everywhere, settings):
    settings.EVIDENCE_EXPORT_RETENTION_DAYS = 10
    export = EvidenceExport.objects.filter(status="done").latest("pk")
    stored = export.file.name
    assert exports.purge_expired_exports(now=export.finished_at + datetime.timedelta(days=9)) == 0
    assert export.file.storage.exists(stored)
    assert exports.purge_expired_exports(now=export.finished_at + datetime.timedelta(days=11)) >= 1
    export.refresh_from_db()
    assert not export.file and export.file_purged_at and export.sha256
    assert not export.file.storage.exists(stored)
    assert export.history.latest().history_change_reason.startswith("file deleted: retention of 10 days")
    assert chain.verify_chain().ok

