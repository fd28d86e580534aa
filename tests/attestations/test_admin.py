import pytest
from django.urls import reverse

from attestations.choices import CampaignStatus
from attestations.models import Campaign, CampaignSchedule
from attestations.services import campaigns
from tests import factories

pytestmark = pytest.mark.django_db


def test_schedule_is_editable_in_the_admin(client, admin_user):
    client.force_login(admin_user)
    response = client.post(reverse("admin:attestations_campaignschedule_add"), {
        "name": "Quarterly production review", "is_active": "on", "cadence_days": 90,
        "next_launch_on": "2026-12-01", "environments": '["production"]', "risk_tiers": "[]",
        "duration_days": 14, "reminder_days": "[3, 7]", "escalation_days": 10, "default_action": "suspend",
        "require_justification": "on", "review_cadence_days": 90, "exception_review_cadence_days": 30,
    })
    assert response.status_code == 302, response.content.decode()[:2000]
    schedule = CampaignSchedule.objects.get()
    assert schedule.environments == ["production"] and schedule.reminder_days == [3, 7]
    assert schedule.history.get().history_user == admin_user


def test_campaign_admin_pages_and_launch_action(client, admin_user, compliance_user):
    factories.ApiKeyFactory()
    campaign = campaigns.create_campaign(actor=compliance_user, name="Q4")
    client.force_login(admin_user)
    for name in ("campaign", "attestationitem", "ownershiptransfer", "notification", "campaignschedule"):
        assert client.get(reverse(f"admin:attestations_{name}_changelist")).status_code == 200
    assert client.get(reverse("admin:attestations_campaign_change", args=[campaign.pk])).status_code == 200
    response = client.post(reverse("admin:attestations_campaign_changelist"),
                           {"action": "launch", "_selected_action": [campaign.pk]}, follow=True)
    assert response.redirect_chain[0][1] == 302
    assert "Launched: 1 campaign." in [str(m) for m in response.context["messages"]]
    assert Campaign.objects.get(pk=campaign.pk).status == CampaignStatus.ACTIVE


def test_owner_cannot_reach_the_admin(client, owner):
    client.force_login(owner)
    response = client.get(reverse("admin:attestations_campaignschedule_changelist"))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
