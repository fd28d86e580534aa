"""Attestation campaigns: the only place campaigns and items change state.

Rules enforced here: a campaign launches once and snapshots its scope; only the assigned reviewer
or their delegate decides an item, once; closing applies the default action to every item still
undecided, and a decision racing a close is either applied or refused, never lost or doubled.
"""

from __future__ import annotations

import datetime

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import Case, CharField, Exists, IntegerField, OuterRef, Q, Subquery, Value, When
from django.utils import timezone

from attestations.choices import (
    CAMPAIGN_TRANSITIONS,
    CampaignStatus,
    ItemStatus,
    Recommendation,
)
from attestations.models import (
    AttestationItem,
    Campaign,
    CampaignSchedule,
)
from attestations.services import outcomes, review_stages
from attestations.stages import clean_stages, total_days
from core.chain import seal_ids, sealed_atomic
from core.errors import ServiceError
from core.history import attribute_change
from core.jobs import enqueue_on_commit
from core.validators import field_errors
from keys.choices import ContractStatus, ExceptionStatus, KeyStatus, WorkflowStatus
from keys.filters import filter_keys
from keys.models import ApiKey, KeyException
from keys.services.sweeps import rotation_due_keys

User = get_user_model()
UNUSED_DAYS = 90


class CampaignError(ServiceError):
    """A refused campaign or decision step."""


def _check_transition(campaign: Campaign, action: str) -> None:
    allowed_from, _ = CAMPAIGN_TRANSITIONS[action]
    if campaign.status not in allowed_from:
        done = {"launch": "launched", "close": "closed", "cancel": "cancelled"}[action]
        raise CampaignError(f"A {campaign.get_status_display().lower()} campaign cannot be {done}.")


def scope_queryset(scope):
    """The live keys a campaign or schedule covers (pending keys are not yet anyone's to attest)."""
    keys = ApiKey.objects.filter(status__in=[KeyStatus.ACTIVE, KeyStatus.SUSPENDED])
    if scope.pk:
        customer_ids = list(scope.customers.values_list("pk", flat=True))
        workflow_ids = list(scope.workflows.values_list("pk", flat=True))
        if customer_ids:
            keys = keys.filter(workflow__customer_id__in=customer_ids)
        if workflow_ids:
            keys = keys.filter(workflow_id__in=workflow_ids)
    if scope.environments:
        keys = keys.filter(workflow__environment__in=scope.environments)
    if scope.risk_tiers:
        keys = keys.filter(risk_tier__in=scope.risk_tiers)
    if scope.due_for_review_only:
        # A lapsed exception brings its key back before its owner whatever the review date.
        keys = keys.filter(
            Q(next_review_on__isnull=True) | Q(next_review_on__lte=timezone.localdate())
            | Q(pk__in=lapsed_exceptions_to_review().values("key_id"))
        )
    if scope.unused_days:
        cutoff = timezone.now() - datetime.timedelta(days=scope.unused_days)
        keys = keys.filter(Q(last_used_at__lt=cutoff) | Q(last_used_at__isnull=True, issued_on__lt=cutoff.date()))
    if scope.stale_only:
        keys = keys.filter(stale=True)
    if scope.rotation_due_only:
        keys = keys.filter(Q(rotation_required=True) | Q(pk__in=rotation_due_keys().values("pk")))
    if scope.under_exception_only:
        keys = keys.filter(exceptions__status=ExceptionStatus.APPROVED).distinct()
    if scope.key_filter:
        keys, _ = filter_keys(keys, scope.key_filter)
    return keys


def lapsed_exceptions_to_review():
    """Lapsed exceptions (expired transitional, or permanent past review) no campaign has settled yet.

    Settled means an item carrying the exception was decided or closed; until then the key goes
    into every campaign whose scope reaches it, even one limited to keys due for review.
    """
    settled = AttestationItem.objects.filter(exception=OuterRef("pk")).exclude(status=ItemStatus.PENDING)
    return KeyException.objects.filter(
        lapsed_on__isnull=False, status__in=[ExceptionStatus.APPROVED, ExceptionStatus.EXPIRED]
    ).filter(~Exists(settled))


def exception_candidates():
    """The exceptions a campaign item may carry: approved ones (lapsed or not) and lapsed ones not yet settled."""
    return KeyException.objects.filter(Q(status=ExceptionStatus.APPROVED)
                                       | Q(pk__in=lapsed_exceptions_to_review().values("pk")))


def attach_exceptions(items) -> int:
    """Give each of ``items`` the exception its key carries, and whether that exception lapsed.

    An approved exception comes first (lapsed or not); otherwise a lapsed one not yet settled. Two
    UPDATEs over the items whose key has a candidate (about 1% of keys), not a lookup for every key:
    a launch over 100,000 keys stays a plain join the planner costs low (no JIT compilation).
    """
    candidates = exception_candidates()
    ranked = (
        candidates.filter(key=OuterRef("key_id"))
        .annotate(rank=Case(When(status=ExceptionStatus.APPROVED, then=Value(0)), default=Value(1),
                            output_field=IntegerField()))
        .order_by("rank", "-requested_at", "-pk")
    )
    carried = items.filter(key_id__in=candidates.values("key_id")).update(exception=Subquery(ranked.values("pk")[:1]))
    if carried:
        items.filter(exception__lapsed_on__isnull=False).update(exception_lapsed=True)
    return carried


def with_recommendation(keys, today: datetime.date):
    """Annotate each key with what the data suggests, computed by the database in one pass."""
    unused_since = timezone.now() - datetime.timedelta(days=UNUSED_DAYS)
    old_issue = today - datetime.timedelta(days=UNUSED_DAYS)
    return keys.annotate(
        suggested=Case(
            When(workflow__customer__contract_status=ContractStatus.ENDED, then=Value(Recommendation.RELEASE_CONTRACT)),
            When(workflow__status=WorkflowStatus.DECOMMISSIONED, then=Value(Recommendation.RELEASE_DECOMMISSIONED)),
            When(last_used_at__lt=unused_since, then=Value(Recommendation.RELEASE_UNUSED)),
            When(last_used_at__isnull=True, issued_on__lt=old_issue, then=Value(Recommendation.RELEASE_NEVER_USED)),
            When(rotation_required=True, then=Value(Recommendation.ROTATE)),
            default=Value(""),
            output_field=CharField(),
        )
    )


# What a campaign launched from a schedule takes from it (its customers and workflows too).
SCHEDULE_FIELDS = (
    "environments", "risk_tiers", "due_for_review_only", "unused_days", "stale_only", "rotation_due_only",
    "under_exception_only", "key_filter", "duration_days", "reminder_days", "reminder_every_days", "escalation_days",
    "default_action", "require_justification", "review_cadence_days", "exception_review_cadence_days",
    "release_grace_days", "stages", "missing_signoff", "separation_of_duties",
)


@sealed_atomic
def create_campaign(*, actor, name: str, schedule: CampaignSchedule | None = None, customers=(), workflows=(),
                    **fields) -> Campaign:
    """A draft campaign, from a schedule's scope and rules or from the given ones."""
    name = (name or "").strip()
    if not name:
        raise CampaignError("A campaign needs a name.", field="name")
    refused = field_errors(Campaign, name=name)
    if refused:
        raise CampaignError(refused)
    if schedule is not None:
        for attr in SCHEDULE_FIELDS:
            fields.setdefault(attr, getattr(schedule, attr))
        customers = customers or list(schedule.customers.all())
        workflows = workflows or list(schedule.workflows.all())
    refused = {}
    try:
        fields["stages"] = clean_stages(fields.get("stages") or [])
    except ValidationError as error:
        refused["stages"] = error.messages
    if fields.get("key_filter"):
        _, problems = filter_keys(ApiKey.objects.none(), fields["key_filter"])
        if problems:
            refused["key_filter"] = problems
    if refused:
        raise CampaignError(refused)
    fields["duration_days"] = total_days(fields["stages"]) or fields.get(
        "duration_days", Campaign._meta.get_field("duration_days").default)
    campaign = Campaign(name=name, schedule=schedule, created_by=actor, **fields)
    attribute_change(campaign, actor, "created")
    campaign.save()
    campaign.customers.set(customers)
    campaign.workflows.set(workflows)
    return campaign


def launch_campaign(campaign: Campaign, *, actor) -> int:
    """Snapshot the scope into one item per key, assigned to its owner, in one transaction.

    Launching an already launched campaign changes nothing and returns 0. Keys with an undecided
    item in another active campaign are left to that campaign.
    """
    with sealed_atomic():
        campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
        if campaign.status == CampaignStatus.ACTIVE:
            return 0
        _check_transition(campaign, "launch")
        today = timezone.localdate()
        reason = f"launched in campaign {campaign.name}"[:100]
        busy = AttestationItem.objects.filter(status=ItemStatus.PENDING, campaign__status=CampaignStatus.ACTIVE)
        keys = with_recommendation(scope_queryset(campaign).exclude(pk__in=busy.values("key_id")), today)
        created = _insert_items(campaign, keys, actor=actor, reason=reason)
        if created == 0:
            raise CampaignError("No key is in this campaign's scope: nothing to attest.")
        campaign.status = CampaignStatus.ACTIVE
        campaign.launched_at = timezone.now()
        campaign.launched_by = actor
        campaign.due_on = today + datetime.timedelta(days=campaign.duration_days)
        attribute_change(campaign, actor, f"launched with {created} items")
        campaign.save()
    enqueue_on_commit("attestations.tasks.notify_campaign_launched", campaign.pk)
    return created


def _insert_items(campaign: Campaign, keys, *, actor, reason: str) -> int:
    """Write the items and their history records set-based.

    Two INSERT ... SELECT statements, so launching scales with the database rather than with
    Python objects; the history rows carry the actor and reason like any other history record.
    The exceptions the items carry are attached in between (``attach_exceptions``).
    """
    quote = connection.ops.quote_name
    item_table = quote(AttestationItem._meta.db_table)
    history_model = AttestationItem.history.model
    select_sql, select_params = keys.order_by("pk").values("pk", "owner_id", "suggested").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {item_table} (campaign_id, key_id, reviewer_id, recommendation, status, affirmed, "
            f"justification, default_action_applied, exception_lapsed, exception_reaffirmed) "
            f"SELECT %s, scope.pk, scope.owner_id, scope.suggested, %s, %s, %s, %s, %s, %s FROM ({select_sql}) scope",
            [campaign.pk, ItemStatus.PENDING, False, "", "", False, False, *select_params],
        )
        created = cursor.rowcount
    attach_exceptions(AttestationItem.objects.filter(campaign=campaign))
    # Items whose first stage someone other than the owner reviews (or whose owner has left) get their reviewer
    # before the history records copy the rows.
    review_stages.launch_assignments(campaign)
    with connection.cursor() as cursor:
        tracked = [f.column for f in history_model._meta.concrete_fields if not f.name.startswith("history_")]
        columns = ", ".join(quote(c) for c in tracked)
        cursor.execute(
            f"INSERT INTO {quote(history_model._meta.db_table)} ({columns}, history_date, history_change_reason, "
            f"history_type, history_user_id) SELECT {columns}, %s, %s, %s, %s FROM {item_table} WHERE campaign_id = %s "
            f"RETURNING history_id",
            [timezone.now(), reason, "+", actor.pk, campaign.pk],
        )
        seal_ids(history_model, [row[0] for row in cursor.fetchall()])
    return created


def named_user(to, field_name="to"):
    if to is None or to == "":
        raise CampaignError("Name the person.", field=field_name)
    if isinstance(to, str):
        user = User.objects.filter(username=to).first()
        if user is None:
            raise CampaignError(f"No user named {to!r}.", field=field_name)
        to = user
    if not to.is_active:
        raise CampaignError("That account is inactive.", field=field_name)
    return to


def close_campaign(campaign: Campaign, *, actor) -> dict[str, int]:
    """Close an active campaign and settle every undecided item (``outcomes.settle_undecided``): the default
    action, or for an item waiting for a later stage's sign-off, the earlier decision when the campaign keeps it.

    Closing a closed campaign changes nothing (safe to retry).
    """
    with sealed_atomic():
        campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
        if campaign.status == CampaignStatus.CLOSED:
            return {}
        _check_transition(campaign, "close")
        campaign.status = CampaignStatus.CLOSED
        campaign.closed_at = timezone.now()
        campaign.closed_by = actor
        attribute_change(campaign, actor, "closed")
        campaign.save()
        applied = outcomes.settle_undecided(campaign, campaign.items.filter(status=ItemStatus.PENDING), actor=actor,
                                            why="campaign closed")
    return {str(k): v for k, v in applied.items()}


@sealed_atomic
def cancel_campaign(campaign: Campaign, *, actor, reason: str) -> Campaign:
    campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
    _check_transition(campaign, "cancel")
    if not (reason or "").strip():
        raise CampaignError("Say why the campaign is cancelled.", field="reason")
    campaign.status = CampaignStatus.CANCELLED
    campaign.closed_at = timezone.now()
    campaign.closed_by = actor
    attribute_change(campaign, actor, f"cancelled: {reason.strip()}")
    campaign.save()
    return campaign


def campaign_progress(campaign: Campaign) -> dict:
    """Decided / pending / overdue totals, and the same per customer and per reviewer (``services.progress``)."""
    from attestations.services import progress

    return progress.campaign_progress(campaign)


@sealed_atomic
def launch_due_schedule(schedule: CampaignSchedule, *, actor, today: datetime.date | None = None) -> Campaign | None:
    """Launch the schedule's next campaign if its day has come; the next launch moves by the cadence.

    A schedule whose scope is empty launches nothing but still moves on.
    """
    today = today or timezone.localdate()
    schedule = CampaignSchedule.objects.select_for_update().get(pk=schedule.pk)
    if not schedule.is_active or schedule.next_launch_on > today:
        return None
    schedule.next_launch_on = today + datetime.timedelta(days=schedule.cadence_days)
    attribute_change(schedule, actor, "launched its campaign")
    schedule.save()
    campaign = create_campaign(actor=actor, name=f"{schedule.name} {today.isoformat()}", schedule=schedule)
    if not scope_queryset(campaign).exists():
        cancel_campaign(campaign, actor=actor, reason="no key in scope")
        return None
    try:
        launch_campaign(campaign, actor=actor)
    except CampaignError:
        # Every key in scope is already under review in another campaign: nothing to launch.
        cancel_campaign(campaign, actor=actor, reason="no key in scope left to attest")
        return None
    return campaign


