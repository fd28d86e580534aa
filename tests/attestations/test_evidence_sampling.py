"""What a campaign report prints: every item an auditor must see, and a sample of the confirmed decisions
that the auditor redraws from the printed seed and the attached CSV alone."""

import datetime
import hashlib
import re
import subprocess
import sys

import pytest
from django.utils import timezone

from attestations.services import evidence
from tests.attestations.evidence_helpers import attached_csv, reader, run_export, sampled_campaign, text

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media_root")]

ROW = re.compile(r"^#(\d+) ", re.MULTILINE)


@pytest.mark.parametrize(("population", "size"), [
    (0, 0), (1, 1), (24, 24), (25, 25), (26, 25), (250, 25),
    (251, 40), (2_500, 40),
    (2_501, 60), (100_000, 60),
])
def test_sample_size_follows_the_population(population, size):
    assert evidence.sample_size_for(population) == size


@pytest.mark.parametrize(("population", "requested", "size"), [(300, 1, 1), (300, 100, 100), (5, 10, 5), (0, 7, 0)])
def test_a_requested_sample_size_replaces_the_rule_but_never_exceeds_the_population(population, requested, size):
    assert evidence.sample_size_for(population, requested) == size


def redraw(rows: list[dict], seed: str, size: int) -> list[int]:
    """The procedure the report prints, written from its words alone."""
    confirmed = [r["item_id"] for r in rows if r["status"] == "confirmed"]
    ranked = sorted(confirmed, key=lambda item_id: hashlib.sha256(f"{seed}:{item_id}".encode()).hexdigest())
    return [int(item_id) for item_id in ranked[:size]]


def test_draw_is_the_printed_procedure_and_depends_on_the_seed():
    rows = [{"item_id": str(n), "status": "confirmed" if n % 4 else "released"} for n in range(1, 1001)]
    confirmed = [int(r["item_id"]) for r in rows if r["status"] == "confirmed"]
    first = evidence.draw_sample("5eed", confirmed, 40)
    assert first == redraw(rows, "5eed", 40)
    assert first == evidence.draw_sample("5eed", reversed(confirmed), 40)  # the order of the rows does not matter
    assert evidence.draw_sample("0ther", confirmed, 40) != first
    assert len(evidence.new_sample_seed()) == 16 and evidence.new_sample_seed() != evidence.new_sample_seed()


def row(**fields):
    return {"item_id": 1, "status": "confirmed", "exception_id": "", "decided_at": None, "escalated_at": None,
            "default_action_applied": "", "key_status_now": "active", **fields}


def test_print_reasons_read_only_csv_columns():
    due_end = timezone.make_aware(datetime.datetime(2026, 12, 21))
    on_time = due_end - datetime.timedelta(seconds=1)
    assert evidence.print_reasons(row(decided_at=on_time), due_end) == []
    assert evidence.print_reasons(row(decided_at=due_end), due_end) == ["late"]
    assert evidence.print_reasons(row(decided_at=on_time, escalated_at=on_time), due_end) == ["late"]
    assert evidence.print_reasons(row(decided_at=on_time, escalated_at=on_time), None) == ["late"]
    assert evidence.print_reasons(row(decided_at=due_end), None) == []  # no due date: only escalation is late
    assert evidence.print_reasons(row(exception_id=7, decided_at=on_time), due_end) == ["exception"]
    assert evidence.print_reasons(row(status="released", key_status_now="revoked", decided_at=on_time),
                                  due_end) == ["released", "revoked"]
    assert evidence.print_reasons(row(status="reassigned", decided_at=on_time), due_end) == ["reassigned"]
    assert evidence.print_reasons(row(status="expired", default_action_applied="suspend", escalated_at=on_time),
                                  due_end) == ["default"]
    assert evidence.print_reasons(row(status="pending"), due_end) == []


def sections(body: str) -> tuple[list[int], list[int]]:
    """Item ids as the PDF's item pages print them: those printed in full, then the sample, in print order."""
    items = body.split("\nItems printed in full\n", 1)[1] if "\nItems printed in full\n" in body else body
    in_full, _, sample = items.partition("\nSample of confirmed decisions\n")
    return [int(n) for n in ROW.findall(in_full)], [int(n) for n in ROW.findall(sample)]


def front_sample_list(body: str) -> list[int]:
    listed = body.split("The result must be these items, in this order", 1)[1].split("Evidence export #", 1)[0]
    return [int(n) for n in re.findall(r"#(\d+)", listed)]


@pytest.fixture
def sampled(compliance_user, owner, other_owner):
    return sampled_campaign(compliance_user, owner, other_owner, confirmed=30)


def test_auditor_redraws_the_printed_sample_from_the_seed_and_the_attached_csv(
        sampled, compliance_user, tmp_path, django_capture_on_commit_callbacks):
    campaign, roles = sampled
    export = run_export(django_capture_on_commit_callbacks, actor=compliance_user, kind="campaign", campaign=campaign)
    pdf = reader(export)
    body = text(pdf)
    seed = export.parameters["sample_seed"]
    assert export.parameters["print_all_items"] is False and "sample_size" not in export.parameters
    # The seed and the procedure are printed.
    flat = " ".join(body.split())
    assert "Seed" in flat and f"text {seed}:<item_id>" in flat
    assert "SHA-256 digest of the text" in flat and "ascending, and take the first 25" in flat
    # The CSV, read back out of the delivered PDF, holds every item; the redraw gives the printed sample.
    rows = attached_csv(pdf)
    assert len(rows) == campaign.items.count()
    confirmed = [r for r in rows if r["status"] == "confirmed"]
    assert len(confirmed) == 34 and f"{len(confirmed)} (the population)" in flat
    expected = redraw(rows, seed, 25)
    in_full, printed_sample = sections(body)
    assert printed_sample == expected
    assert front_sample_list(body) == expected
    # The command printed in the report gives the same, run on the extracted CSV with nothing of the portal.
    (csv_name,) = [n for n in pdf.attachments if n.endswith(".csv")]
    (tmp_path / csv_name).write_bytes(pdf.attachments[csv_name][0])
    command = evidence.redraw_command(csv_name, seed, 25).replace("python3 ", f"{sys.executable} ", 1)
    out = subprocess.run(command, shell=True, cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert [int(n) for n in out.split()] == expected
    # Every exception, release, reassignment, revocation, late and default item is printed in full, by id.
    must = {roles[name].pk for name in ("exception", "released", "reassigned", "revoked", "late", "escalated")}
    must |= {item.pk for item in roles["default"]}
    assert in_full == sorted(must)
    # And the CSV alone says the same: the report's rule, applied to its columns.
    due_end = timezone.make_aware(datetime.datetime.combine(campaign.due_on + datetime.timedelta(days=1),
                                                            datetime.time.min))
    flagged = [int(r["item_id"]) for r in rows if r["exception_id"] or r["key_status_now"] == "revoked"
               or r["status"] in ("released", "reassigned", "expired") or r["default_action_applied"]
               or (r["status"] != "pending" and (r["escalated_at"] or (
                   r["decided_at"] and datetime.datetime.fromisoformat(r["decided_at"]) >= due_end)))]
    assert flagged == in_full
    # Routine confirmations not drawn are not printed; the totals still count every item.
    printed = set(in_full) | set(printed_sample)
    assert {i.pk for i in roles["routine"]} - set(expected)
    assert not ({i.pk for i in roles["routine"]} - set(expected)) & printed
    assert f"Items: {len(printed)} printed of {len(rows)}" in flat
    assert export.page_count < 15


def test_print_every_item_prints_all_of_them_and_still_draws_the_sample(
        sampled, compliance_user, django_capture_on_commit_callbacks):
    campaign, _roles = sampled
    export = run_export(django_capture_on_commit_callbacks, actor=compliance_user, kind="campaign", campaign=campaign,
                        print_all_items=True)
    assert export.parameters["print_all_items"] is True
    pdf = reader(export)
    body = text(pdf)
    items = body.split("\nItems\nEvery item of the campaign", 1)[1]
    assert [int(n) for n in ROW.findall(items)] == list(campaign.items.order_by("pk").values_list("pk", flat=True))
    expected = redraw(attached_csv(pdf), export.parameters["sample_seed"], 25)
    assert front_sample_list(body) == expected
    flat = " ".join(items.split())
    for draw, item_id in enumerate(expected, start=1):
        assert re.search(rf"#{item_id} [^#]*?\[sample draw {draw} of 25", flat), (draw, item_id)


def test_a_requested_sample_size_is_stored_and_printed(sampled, compliance_user, django_capture_on_commit_callbacks):
    campaign, _roles = sampled
    export = run_export(django_capture_on_commit_callbacks, actor=compliance_user, kind="campaign", campaign=campaign,
                        sample_size=5)
    assert export.parameters["sample_size"] == 5
    pdf = reader(export)
    body = text(pdf)
    _in_full, printed_sample = sections(body)
    assert printed_sample == redraw(attached_csv(pdf), export.parameters["sample_seed"], 5)
    assert "requested with the export: 5" in " ".join(body.split())


def test_each_export_draws_with_its_own_seed(sampled, compliance_user, django_capture_on_commit_callbacks):
    campaign, _roles = sampled
    first, second = (run_export(django_capture_on_commit_callbacks, actor=compliance_user, kind="campaign",
                                campaign=campaign) for _ in range(2))
    assert first.parameters["sample_seed"] != second.parameters["sample_seed"]
    samples = [sections(text(reader(export)))[1] for export in (first, second)]
    assert samples[0] != samples[1] and len(samples[0]) == len(samples[1]) == 25


def test_a_campaign_changed_while_rendering_fails_rather_than_print_a_sample_the_csv_does_not_redraw(
        sampled, compliance_user, monkeypatch, django_capture_on_commit_callbacks):
    from attestations import tasks
    from attestations.models import EvidenceExport
    from attestations.services import exports

    campaign, roles = sampled
    real = tasks.assemble_export.run

    def assemble_after_a_change(export_id):
        # A confirmation the sample was not drawn from arrives between the chunks and the assembly.
        campaign.items.filter(pk=roles["default"][0].pk).update(status="confirmed", default_action_applied="")
        real(export_id)

    monkeypatch.setattr(tasks.assemble_export, "run", assemble_after_a_change)
    with django_capture_on_commit_callbacks(execute=True):
        export = exports.request_export(actor=compliance_user, kind="campaign", campaign=campaign)
    export.refresh_from_db()
    assert export.status == EvidenceExport.Status.FAILED and "changed while the report was rendering" in export.error


def test_the_attached_json_states_the_sample(sampled, compliance_user, django_capture_on_commit_callbacks):
    import json

    campaign, _roles = sampled
    export = run_export(django_capture_on_commit_callbacks, actor=compliance_user, kind="campaign", campaign=campaign)
    pdf = reader(export)
    (name,) = [n for n in pdf.attachments if n.endswith(".json")]
    document = json.loads(pdf.attachments[name][0])
    sampling = document["sampling"]
    assert sampling["seed"] == export.parameters["sample_seed"]
    assert (sampling["population"], sampling["size"]) == (34, 25)
    assert sampling["sample"] == redraw(attached_csv(pdf), sampling["seed"], 25)
    assert len(document["items"]) == campaign.items.count()


def test_an_active_campaign_with_nothing_decided_prints_no_item_but_attaches_them_all(
        compliance_user, owner, django_capture_on_commit_callbacks):
    from attestations.services import campaigns
    from tests import factories

    for _ in range(3):
        factories.ApiKeyFactory(owner=owner)
    campaign = campaigns.create_campaign(actor=compliance_user, name="Still open")
    campaigns.launch_campaign(campaign, actor=compliance_user)
    export = run_export(django_capture_on_commit_callbacks, actor=compliance_user, kind="campaign", campaign=campaign)
    assert export.chunks_total == 0
    pdf = reader(export)
    flat = " ".join(text(pdf).split())
    assert "Items: 0 printed of 3, none to print" in flat and "none (no confirmed decision)" in flat
    assert [r["status"] for r in attached_csv(pdf)] == ["pending"] * 3
