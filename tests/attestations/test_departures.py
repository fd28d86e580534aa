"""A departure recorded at once (attestations.services.departures), as SCIM deactivation records it."""

import pytest
from django.core import mail

from attestations.services import campaigns, departures
from core.actors import system_user
from keys.models import OwnerProfile
from tests import factories

pytestmark = pytest.mark.django_db


def test_a_departure_moves_items_orphans_keys_and_tells_the_manager_once(
        compliance_user, admin_user, django_capture_on_commit_callbacks):
    manager = factories.OwnerFactory(username="mallory")
    person = factories.OwnerProfileFactory(user__username="erin", manager=manager).user
    key = factories.ApiKeyFactory(owner=person)
    # erin is also the fallback named for the stage: her own items cannot fall back to her.
    campaign = campaigns.create_campaign(actor=compliance_user, name="2026-Q4",
                                         stages=[{"reviewer": "owner", "fallback": "erin", "duration_days": 7}])
    campaigns.launch_campaign(campaign, actor=compliance_user)

    with django_capture_on_commit_callbacks(execute=True):
        departure = departures.depart(person, actor=admin_user, reason="left the company")
    assert departure == departures.Departure(changed=True, items_moved=1, keys_orphaned=1)
    item = campaign.items.get(key=key)
    assert item.reviewer == compliance_user
    [moved] = [r for r in item.history.all() if r.reviewer_id == compliance_user.pk and r.history_type == "~"]
    assert moved.history_user == admin_user  # not the system user of the post_save receiver
    assert not item.history.filter(history_user=system_user()).exists()
    profile = OwnerProfile.objects.get(user=person)
    assert not profile.is_active and profile.departed_on and profile.history.first().history_user == admin_user
    assert [m.to for m in mail.outbox if "need a new owner" in m.subject] == [[manager.email]]

    with django_capture_on_commit_callbacks(execute=True):
        again = departures.depart(person, actor=admin_user, reason="left the company")
    assert again == departures.Departure(changed=False, items_moved=0, keys_orphaned=0)
    assert len([m for m in mail.outbox if "need a new owner" in m.subject]) == 1

    assert departures.reinstate(person, actor=admin_user, reason="came back")
    person.refresh_from_db()
    profile.refresh_from_db()
    assert person.is_active and profile.is_active and profile.departed_on is None
    key.refresh_from_db()
    assert key.orphaned
    assert not departures.reinstate(person, actor=admin_user, reason="came back")
