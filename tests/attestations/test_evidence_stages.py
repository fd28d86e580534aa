"""Evidence of a campaign with review stages: every stage's decision and every release's reason code, printed and
attached."""

import datetime
import json

import pytest

from attestations.choices import Decision, DefaultAction, ItemStatus, MissingSignoff
from attestations.services import campaigns, decisions, evidence
from keys.choices import RiskTier
from tests import factories
from tests.attestations.evidence_helpers import attached_csv, reader, run_export, text

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media_root")]

STAGES = [
    {"reviewer": "owner", "duration_days": 7},
    {"reviewer": "compliance", "duration_days": 7, "risk_tiers": ["high", "critical"], "moves_on": ["confirm"]},
]


def flat(value: str) -> str:
    return " ".join(value.split())


@pytest.fixture
def staged(compliance_user, owner):
    """A closed two-stage campaign over four high-risk keys of alice; carol (compliance) reviews stage 2.

    ``signed_off``: confirmed by alice, signed off by carol; ``overruled``: confirmed by alice, released by carol
    (security); ``replaced``: released by alice at stage 1 (a release does not move on); ``kept``: confirmed by
    alice, nobody signed it off, kept at the close."""
    keys = [factories.ApiKeyFactory(owner=owner, risk_tier=RiskTier.HIGH) for _ in range(4)]
    campaign = campaigns.create_campaign(actor=compliance_user, name="2027-Q2 staged review", stages=STAGES,
                                         default_action=DefaultAction.SUSPEND, missing_signoff=MissingSignoff.KEEP)
    campaigns.launch_campaign(campaign, actor=compliance_user)
    by_key = {i.key_id: i for i in campaign.items.all()}
    items = dict(zip(("signed_off", "overruled", "replaced", "kept"), (by_key[k.pk] for k in keys), strict=True))
    for role in ("signed_off", "overruled", "kept"):
        decisions.record_decision(items[role], actor=owner, decision=Decision.CONFIRM, affirm=True,
                                  justification=f"Owner vouches ({role})")
    decisions.record_decision(items["replaced"], actor=owner, decision=Decision.RELEASE, reason="replaced",
                              justification="Rotated onto the new gateway key")
    decisions.record_decision(items["signed_off"], actor=compliance_user, decision=Decision.CONFIRM, affirm=True,
                              justification="Compliance signs off")
    decisions.record_decision(items["overruled"], actor=compliance_user, decision=Decision.RELEASE, reason="security",
                              justification="Scope too broad for a partner key")
    campaigns.close_campaign(campaign, actor=compliance_user)
    campaign.refresh_from_db()
    for item in items.values():
        item.refresh_from_db()
    assert [items[r].status for r in ("signed_off", "overruled", "replaced", "kept")] == [
        ItemStatus.CONFIRMED, ItemStatus.RELEASED, ItemStatus.RELEASED, ItemStatus.CONFIRMED]
    assert (items["kept"].stage, len(items["kept"].decisions)) == (2, 1)
    return campaign, items


def utc_minute(iso: str) -> str:
    return datetime.datetime.fromisoformat(iso).astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def test_campaign_report_prints_every_stage_and_reason(staged, compliance_user, django_capture_on_commit_callbacks):
    campaign, items = staged
    export = run_export(django_capture_on_commit_callbacks, actor=compliance_user, kind="campaign", campaign=campaign)
    body = flat(text(reader(export)))
    # Front matter: the stages with their windows, and the rules.
    launched = campaign.launched_at.date()
    assert "Stage 1: The key's owner, 7 day(s), every item" in body
    assert "Stage 2: Compliance, 7 day(s), high, critical keys; confirms of stage 1 move on" in body
    assert f"{launched:%Y-%m-%d} to {launched + datetime.timedelta(days=7):%Y-%m-%d}" in body
    assert "Keep the earlier decision: what an item decided at one stage" in body
    assert "on: from stage 2, nobody decides an item they decided at an earlier stage" in body
    # The summary: decisions per stage and releases per reason code (final, then per stage).
    assert "Stage 1 3 1 0 4" in body and "Stage 2 1 1 0 2" in body
    assert "Replaced by another key replaced 1 1 0" in body
    assert "Security concern security 1 0 1" in body
    assert "No longer needed unused 0 0 0" in body
    assert "1 item kept the earlier decision" in body
    # Every printed item shows each stage's decision: who, in what capacity, when (UTC), the reason and why.
    overruled = items["overruled"].decisions
    assert (f"Stage 1: Confirm by alice as reviewer, {utc_minute(overruled[0]['at'])}" in body)
    assert (f"Stage 2: Release (Security concern) by carol as compliance, {utc_minute(overruled[1]['at'])}"
            in body)
    assert "Stage 2: Scope too broad for a partner key" in body
    assert "Released (Security concern)" in body and "Released (Replaced by another key)" in body
    assert "Stage 1: Release (Replaced by another key) by alice as reviewer" in body
    assert "Stage 2: Confirm by carol as compliance" in body and "Stage 2: Compliance signs off" in body
    assert "kept without stage 2 sign-off: the stage 1 confirm by alice stands" in body
    assert "Seen: last used" in body


def test_attached_csv_and_json_carry_every_stage(staged, compliance_user, django_capture_on_commit_callbacks):
    campaign, items = staged
    export = run_export(django_capture_on_commit_callbacks, actor=compliance_user, kind="campaign", campaign=campaign)
    pdf = reader(export)
    rows = {int(r["item_id"]): r for r in attached_csv(pdf)}
    header = list(next(iter(rows.values())))
    assert header[-15:] == [f"stage{n}_{f}" for n in (1, 2, 3)
                            for f in ("decision", "by", "at", "reason", "justification")]
    assert {"stage", "reason"} <= set(header)

    overruled = rows[items["overruled"].pk]
    first, second = items["overruled"].decisions
    assert (overruled["status"], overruled["stage"], overruled["reason"]) == ("released", "2", "security")
    assert (overruled["stage1_decision"], overruled["stage1_by"], overruled["stage1_reason"]) == ("confirm", "alice", "")
    assert overruled["stage1_justification"] == "Owner vouches (overruled)"
    assert datetime.datetime.fromisoformat(overruled["stage1_at"]) == datetime.datetime.fromisoformat(first["at"])
    assert (overruled["stage2_decision"], overruled["stage2_by"], overruled["stage2_reason"]) == (
        "release", "carol", "security")
    assert overruled["stage2_justification"] == "Scope too broad for a partner key"
    assert datetime.datetime.fromisoformat(overruled["stage2_at"]).utcoffset() == datetime.timedelta(0)
    assert datetime.datetime.fromisoformat(overruled["stage2_at"]) == datetime.datetime.fromisoformat(second["at"])
    assert all(overruled[f"stage3_{f}"] == "" for f in ("decision", "by", "at", "reason", "justification"))

    signed_off = rows[items["signed_off"].pk]
    assert (signed_off["status"], signed_off["stage"], signed_off["reason"]) == ("confirmed", "2", "")
    assert (signed_off["stage1_decision"], signed_off["stage2_decision"], signed_off["stage2_by"]) == (
        "confirm", "confirm", "carol")

    replaced = rows[items["replaced"].pk]
    assert (replaced["status"], replaced["stage"], replaced["reason"]) == ("released", "1", "replaced")
    assert (replaced["stage1_decision"], replaced["stage1_reason"], replaced["stage2_decision"]) == (
        "release", "replaced", "")

    kept = rows[items["kept"].pk]
    assert (kept["status"], kept["stage"], kept["decided_by"]) == ("confirmed", "2", "alice")
    assert (kept["stage1_decision"], kept["stage2_decision"]) == ("confirm", "")

    (json_name,) = [n for n in pdf.attachments if n.endswith(".json")]
    document = json.loads(pdf.attachments[json_name][0])
    by_id = {item["item_id"]: item for item in document["items"]}
    entries = by_id[items["overruled"].pk]["decisions"]
    assert [(e["stage"], e["decision"], e["by"], e["as"], e["reason"]) for e in entries] == [
        (1, "confirm", "alice", "reviewer", ""), (2, "release", "carol", "compliance", "security")]
    assert entries[1]["justification"] == "Scope too broad for a partner key"
    assert entries[1]["evidence_seen"].startswith("last used")
    assert all("by_id" not in e for item in document["items"] for e in item["decisions"])
    assert [len(by_id[items[r].pk]["decisions"]) for r in ("signed_off", "overruled", "replaced", "kept")] == [2, 2, 1, 1]
    assert not any(k.startswith("stage1_") for k in by_id[items["kept"].pk])
    assert [s["reviewer"] for s in document["campaign"]["stages"]] == ["owner", "compliance"]
    assert document["campaign"]["missing_signoff"] == "keep" and document["campaign"]["separation_of_duties"] is True
    reasons = {r["reason"]: r for r in document["stage_tallies"]["releases_by_reason"]}
    assert (reasons["security"]["released"], reasons["security"]["per_stage"]) == (1, [0, 1])
    assert (reasons["replaced"]["released"], reasons["replaced"]["per_stage"]) == (1, [1, 0])
    assert document["stage_tallies"]["missing_signoff"] == {"kept": 1, "default": 0, "awaited": 0}


def test_items_kept_without_signoff_are_recognisable(staged):
    campaign, items = staged
    rows = {row["item_id"]: row for row in evidence.item_rows(campaign)}
    assert rows[items["kept"].pk]["signoff"] == "kept"
    assert [rows[items[r].pk]["signoff"] for r in ("signed_off", "overruled", "replaced")] == ["", "", ""]


def test_key_dossier_shows_stage_decisions_and_reason(staged, compliance_user, django_capture_on_commit_callbacks):
    _campaign, items = staged
    key = items["overruled"].key
    export = run_export(django_capture_on_commit_callbacks, actor=compliance_user, kind="key", key=key)
    pdf = reader(export)
    body = flat(text(pdf))
    assert "Released (Security concern)" in body
    assert "Stage 1: Confirm by alice as reviewer" in body
    assert "Stage 2: Release (Security concern) by carol as compliance" in body
    (json_name,) = [n for n in pdf.attachments if n.endswith(".json")]
    (attestation,) = json.loads(pdf.attachments[json_name][0])["attestations"]
    assert (attestation["stage"], attestation["reason"]) == (2, "security")
    assert [e["by"] for e in attestation["decisions"]] == ["alice", "carol"]
