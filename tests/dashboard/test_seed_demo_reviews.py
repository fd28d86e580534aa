"""The demo's reviews: after `seed_demo` every demo user has something to do, the closed campaign's report is
in Evidence, and the evidence chain is intact, also after `--reset`."""

import datetime
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.utils import timezone

from attestations.choices import CampaignStatus, ItemStatus, Recommendation
from attestations.models import AttestationItem, Campaign, EvidenceExport
from contacts import access
from contacts.models import CustomerContact
from core import roles
from keys.choices import ExceptionStatus, KeyStatus, ReleaseStatus
from keys.models import ApiKey, KeyException, KeyRelease

pytestmark = pytest.mark.django_db


def seed(*args):
    out = StringIO()
    call_command("seed_demo", *args, allow_production=True, stdout=out)
    return out.getvalue()


def verify_history():
    out = StringIO()
    call_command("verify_history", stdout=out)  # raises CommandError when the chain is broken
    return out.getvalue()


def user(username):
    return get_user_model().objects.get(username=username)


def pending_for(username):
    return AttestationItem.objects.decidable_by(user(username)).filter(status=ItemStatus.PENDING)


def test_every_demo_user_has_something_to_do(media_root):
    seed()
    today = timezone.localdate()

    for owner in ("owner1", "owner2"):
        assert pending_for(owner).filter(campaign__status=CampaignStatus.ACTIVE).count() >= 2, owner
    unused = Recommendation.RELEASE_UNUSED
    assert pending_for("owner1").filter(recommendation=unused).exists()
    assert pending_for("owner2").filter(recommendation=unused).exists()

    # The campaign halfway through: two stages, launched a week ago, due in a week, some items decided.
    (active,) = [c for c in Campaign.objects.filter(status=CampaignStatus.ACTIVE) if len(c.stages) == 2]
    assert (today - timezone.localdate(active.launched_at)).days == 7 and (active.due_on - today).days == 7
    decided = {item.key.label: item for item in active.items.exclude(status=ItemStatus.PENDING)}
    assert {item.status for item in decided.values()} == {ItemStatus.CONFIRMED, ItemStatus.RELEASED}
    released = next(item for item in decided.values() if item.status == ItemStatus.RELEASED)
    assert released.reason == "unused" and released.decided_at < timezone.now()
    waiting = active.items.get(status=ItemStatus.PENDING, stage=2)
    assert waiting.reviewer_role == roles.COMPLIANCE and waiting.decisions[0]["decision"] == "confirm"
    assert pending_for("compliance").filter(pk=waiting.pk).exists()

    # The overdue campaign: one item escalated to its owner's manager.
    escalated = AttestationItem.objects.get(escalated_at__isnull=False)
    assert escalated.status == ItemStatus.PENDING and escalated.campaign.due_on < today
    assert escalated.escalated_to == user("owner1").owner_profile.manager
    assert pending_for("owner1").filter(pk=escalated.pk).exists()

    # The released key is in its grace window.
    release = KeyRelease.objects.get(key=released.key)
    assert release.status == ReleaseStatus.WATCHING
    assert release.ends_at > timezone.now()
    assert ApiKey.objects.get(pk=released.key_id).status == KeyStatus.SUSPENDED

    # The customer contact has an item to decide.
    contact = CustomerContact.objects.get()
    assert access.pending_items(contact).exists()

    # Exceptions in every state, some waiting for a decision.
    states = set(KeyException.objects.values_list("status", flat=True))
    assert {ExceptionStatus.REQUESTED, ExceptionStatus.APPROVED, ExceptionStatus.REJECTED,
            ExceptionStatus.EXPIRED} <= states

    # The earlier closed campaigns, the later one's report rendered, stored and signed.
    closed = Campaign.objects.filter(status=CampaignStatus.CLOSED).order_by("closed_at")
    assert closed.count() == 2 and all(c.closed_at < timezone.now() - datetime.timedelta(days=20) for c in closed)
    export = EvidenceExport.objects.get(campaign=closed.last())
    assert export.status == EvidenceExport.Status.DONE, export.error
    assert export.signed and export.sha256 and export.file.storage.exists(export.file.name)

    assert "OK" in verify_history()


def test_reset_twice_recreates_the_reviews(media_root):
    seed()
    seed("--reset")
    output = seed("--reset")
    assert "Deleted the demo" in output
    assert Campaign.objects.filter(status=CampaignStatus.ACTIVE).count() == 2
    assert Campaign.objects.filter(status=CampaignStatus.CLOSED).count() == 2
    assert EvidenceExport.objects.filter(status=EvidenceExport.Status.DONE).count() == 1
    assert pending_for("owner1").exists() and pending_for("owner2").exists()
    assert "OK" in verify_history()
