"""Key-list filters saved under a name, and a campaign started from one."""

import pytest
from django.urls import reverse

from attestations.models import Campaign
from attestations.services import campaigns
from keys.models import SavedKeyFilter
from tests import factories

pytestmark = pytest.mark.django_db


def test_a_filter_is_saved_from_the_list_and_reopens_it(client, owner, key):
    client.force_login(owner)
    page = client.get(reverse("keys:list"), {"risk_tier": "medium", "page": "1", "q": ""})
    assert b'name="query" value="risk_tier=medium"' in page.content
    response = client.post(reverse("keys:filter-save"), {"name": "Medium keys", "query": "risk_tier=medium&page=2"})
    saved = SavedKeyFilter.objects.get(user=owner)
    assert (saved.name, saved.query) == ("Medium keys", "risk_tier=medium")
    assert response.url == reverse("keys:list") + "?risk_tier=medium"
    page = client.get(reverse("keys:list"))
    assert b"Your saved filters" in page.content and b'href="/keys/?risk_tier=medium"' in page.content
    assert b"Review in a campaign" not in page.content  # owners start no campaigns
    # Saving under the same name replaces the filter.
    client.post(reverse("keys:filter-save"), {"name": "Medium keys", "query": "risk_tier=high"})
    assert list(SavedKeyFilter.objects.values_list("query", flat=True)) == ["risk_tier=high"]


@pytest.mark.parametrize(("data", "message"), [
    ({"name": "", "query": "risk_tier=high"}, "Name the filter."),
    ({"name": "Nothing", "query": "page=3"}, "Filter the list first"),
    ({"name": "Bad", "query": "risk_tier=huge"}, "risk_tier"),
])
def test_a_bad_filter_is_refused_with_a_message_and_nothing_saved(client, owner, data, message):
    client.force_login(owner)
    response = client.post(reverse("keys:filter-save"), data, follow=True)
    assert any(message in str(m) for m in response.context["messages"]), list(response.context["messages"])
    assert not SavedKeyFilter.objects.exists()


def test_each_person_sees_and_deletes_only_their_own(client, owner, other_owner):
    mine = SavedKeyFilter.objects.create(user=owner, name="Mine", query="risk_tier=high")
    client.force_login(other_owner)
    assert b"Mine" not in client.get(reverse("keys:list")).content
    assert client.post(reverse("keys:filter-delete", args=[mine.pk])).status_code == 404
    client.force_login(owner)
    client.post(reverse("keys:filter-delete", args=[mine.pk]))
    assert not SavedKeyFilter.objects.exists()


def test_compliance_starts_a_campaign_from_a_saved_filter(client, compliance_user, owner, other_owner):
    high = factories.ApiKeyFactory(owner=owner, risk_tier="high")
    factories.ApiKeyFactory(owner=other_owner, risk_tier="low")
    saved = SavedKeyFilter.objects.create(user=compliance_user, name="High risk", query="risk_tier=high")
    client.force_login(compliance_user)
    page = client.get(reverse("keys:list")).content.decode()
    review = reverse("attestations:campaign-create") + "?key_filter=risk_tier%3Dhigh"
    assert f'href="{review}"' in page and saved.name in page
    form = client.get(review).content.decode()
    assert 'value="risk_tier=high"' in form
    response = client.post(reverse("attestations:campaign-create"), {
        "name": "High-risk review", "key_filter": "risk_tier=high", "duration_days": 14, "review_cadence_days": 90,
        "default_action": "suspend", "stage1_reviewer": "owner", "missing_signoff": "keep",
        "exception_review_cadence_days": 30,
    })
    assert response.status_code == 302, response.content.decode()[:2000]
    campaign = Campaign.objects.get(name="High-risk review")
    assert campaign.key_filter == "risk_tier=high"
    assert list(campaigns.scope_queryset(campaign)) == [high]
