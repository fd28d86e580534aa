"""A campaign's review stages: how they are written down (a JSON list on the campaign and on its schedule, the
same in the form, the admin and the API), checked and read.

A campaign has one to three sequential stages. Each names its reviewer (``owner``, ``manager``,
``compliance`` or a username), a fallback reviewer (``compliance`` or a username), a duration in days, the
risk tiers of the items that enter it (empty: all) and which decisions of the stage before move on to it
(empty: all). No stages written down means one stage of the campaign's duration, reviewed by the owner.

Stage ``k`` of a launched campaign ends ``duration_days`` of stages 1..k after the launch: the windows
follow one another, and the campaign is due when the last one ends.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.utils import timezone

from attestations.choices import MAX_STAGES, MOVABLE_DECISIONS, StageReviewer
from keys.choices import RiskTier

COMPLIANCE = StageReviewer.COMPLIANCE.value
MAX_STAGE_DAYS = 365


@dataclass(frozen=True)
class Stage:
    number: int
    reviewer: str = StageReviewer.OWNER.value
    fallback: str = COMPLIANCE
    duration_days: int = 14
    risk_tiers: tuple[str, ...] = field(default_factory=tuple)
    moves_on: tuple[str, ...] = field(default_factory=tuple)

    @property
    def reviewer_label(self) -> str:
        if self.reviewer in StageReviewer.values:
            return StageReviewer(self.reviewer).label
        return self.reviewer

    @property
    def fallback_label(self) -> str:
        return "Compliance" if self.fallback == COMPLIANCE else self.fallback

    def admits(self, risk_tier: str, decision: str | None = None) -> bool:
        """Whether an item of ``risk_tier`` decided ``decision`` at the stage before enters this stage."""
        if self.risk_tiers and risk_tier not in self.risk_tiers:
            return False
        return decision is None or not self.moves_on or decision in self.moves_on

    def describe(self) -> str:
        tiers = ", ".join(self.risk_tiers) + " keys" if self.risk_tiers else "every item"
        text = f"Stage {self.number}: {self.reviewer_label}, {self.duration_days} day(s), {tiers}"
        if self.number > 1:
            text += "; " + (" and ".join(f"{d}s" for d in self.moves_on) if self.moves_on else "every decision")
            text += f" of stage {self.number - 1} move on"
        return text


def _person(value, label: str, errors: list[str]) -> str:
    value = str(value or "").strip()
    if value in StageReviewer.values:
        return value
    user = get_user_model().objects.filter(username=value).first()
    if user is None:
        errors.append(f"{label}: no user named {value!r}.")
    elif not user.is_active:
        errors.append(f"{label}: {value} is inactive.")
    return value


def _choices(value, allowed, label: str, errors: list[str]) -> list[str]:
    if value in (None, ""):
        return []
    if not isinstance(value, list | tuple):
        errors.append(f"{label}: give a list.")
        return []
    unknown = [v for v in value if v not in allowed]
    if unknown:
        errors.append(f"{label}: {', '.join(map(str, unknown))} is not one of {', '.join(allowed)}.")
    return [v for v in allowed if v in value]


def clean_stages(value) -> list[dict]:
    """The stages in their stored form, or a ``ValidationError`` naming each stage's problem."""
    if value in (None, "", []):
        return []
    if not isinstance(value, list):
        raise ValidationError("Give the stages as a list.")
    if len(value) > MAX_STAGES:
        raise ValidationError(f"A campaign has at most {MAX_STAGES} stages.")
    cleaned, errors = [], []
    for number, raw in enumerate(value, start=1):
        label = f"Stage {number}"
        if not isinstance(raw, dict):
            errors.append(f"{label}: give the stage as an object.")
            continue
        unknown = sorted(set(raw) - {"reviewer", "fallback", "duration_days", "risk_tiers", "moves_on"})
        if unknown:
            errors.append(f"{label}: unknown field(s) {', '.join(unknown)}.")
        if not str(raw.get("reviewer") or "").strip():
            errors.append(f"{label}: name its reviewer (owner, manager, compliance or a username).")
        reviewer = _person(raw.get("reviewer") or StageReviewer.OWNER, f"{label} reviewer", errors)
        fallback = _person(raw.get("fallback") or COMPLIANCE, f"{label} fallback", errors)
        if fallback in (StageReviewer.OWNER, StageReviewer.MANAGER):
            errors.append(f"{label} fallback: name compliance or a user.")
        duration = raw.get("duration_days", 14)
        if isinstance(duration, bool) or not isinstance(duration, int) or not 1 <= duration <= MAX_STAGE_DAYS:
            errors.append(f"{label}: its duration is a whole number of days from 1 to {MAX_STAGE_DAYS}.")
            duration = 1
        tiers = _choices(raw.get("risk_tiers"), RiskTier.values, f"{label} risk tiers", errors)
        moves_on = _choices(raw.get("moves_on"), [str(d) for d in MOVABLE_DECISIONS], f"{label} moves on", errors)
        if number == 1 and tiers:
            errors.append("Stage 1 reviews every item in scope: narrow the campaign's scope instead of its risk tiers.")
        if number == 1 and moves_on:
            errors.append("Stage 1 has no stage before it: leave its decisions that move on empty.")
        cleaned.append({"reviewer": reviewer, "fallback": fallback, "duration_days": duration,
                        "risk_tiers": tiers, "moves_on": moves_on})
    if errors:
        raise ValidationError(errors)
    return cleaned


def validate_stages(value) -> None:
    """The model field's validator (forms and the admin)."""
    clean_stages(value)


def stages_of(rules) -> list[Stage]:
    """A campaign's (or schedule's) stages; one owner stage of its duration when none is written down."""
    if not rules.stages:
        return [Stage(number=1, duration_days=rules.duration_days)]
    return [
        Stage(number=n, reviewer=s["reviewer"], fallback=s.get("fallback") or COMPLIANCE,
              duration_days=s["duration_days"], risk_tiers=tuple(s.get("risk_tiers") or ()),
              moves_on=tuple(s.get("moves_on") or ()))
        for n, s in enumerate(rules.stages, start=1)
    ]


def total_days(stages: list[dict]) -> int | None:
    """The campaign's duration its stages add up to (None: no stages written down)."""
    return sum(s["duration_days"] for s in stages) if stages else None


def stage_window(campaign, number: int) -> tuple[datetime.date, datetime.date] | None:
    """The first and last day of stage ``number`` of a launched campaign."""
    if not campaign.launched_at:
        return None
    start = timezone.localdate(campaign.launched_at)
    for stage in stages_of(campaign):
        end = start + datetime.timedelta(days=stage.duration_days)
        if stage.number == number:
            return start, end
        start = end
    return None


def current_window(campaign, today: datetime.date) -> int:
    """The number of the stage whose window ``today`` falls in (the last one once all have ended)."""
    stages = stages_of(campaign)
    for stage in stages:
        window = stage_window(campaign, stage.number)
        if window and today <= window[1]:
            return stage.number
    return len(stages)
