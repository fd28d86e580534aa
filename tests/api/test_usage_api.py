import datetime

import pytest
from django.urls import reverse
from django.utils import timezone

from keys.models import UsageDaily
from keys.services import usage
from tests import factories
from tests.integration_tokens import make_token, token_client

from . import client_for

pytestmark = pytest.mark.django_db


def at(minutes_ago=5):
    return (timezone.now() - datetime.timedelta(minutes=minutes_ago)).isoformat()


def post(client, events, **headers):
    return client.post(reverse("usage-list"), {"events": events}, format="json", **headers)


def test_admin_reports_a_batch(admin_user, key, other_key):
    events = [
        {"id": "1", "key": key.pk, "at": at(), "source": "10.0.0.1"},
        {"id": "2", "key": key.prefix, "at": at(3), "source": "10.0.0.2"},
        {"id": "3", "key": other_key.fingerprint, "at": at()},
        {"id": "4", "key": "sk_unknown", "at": at()},
        {"id": "5", "key": key.pk, "at": "not a time"},
    ]
    response = post(client_for(admin_user), events)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["accepted"] == 3 and body["duplicates"] == 0
    assert [row["index"] for row in body["rejected"]] == [3, 4]
    assert all(row["reason"] for row in body["rejected"])
    assert UsageDaily.objects.get(key=key).count == 2
    again = post(client_for(admin_user), events).json()
    assert (again["accepted"], again["duplicates"]) == (0, 3)


def test_idempotency_key_header(admin_user, key):
    events = [{"key": key.pk, "at": at()}, {"key": key.pk, "at": at(2)}]
    client = client_for(admin_user)
    assert post(client, events, HTTP_IDEMPOTENCY_KEY="run-42").json()["accepted"] == 2
    assert post(client, events, HTTP_IDEMPOTENCY_KEY="run-42").json()["duplicates"] == 2
    refused = post(client, events).json()
    assert refused["accepted"] == 0 and len(refused["rejected"]) == 2


def test_integration_token_reports_within_scope(key):
    _, plaintext = make_token(issuing_system=key.issuing_system)
    body = post(token_client(plaintext), [{"id": "x", "key": key.pk, "at": at()}]).json()
    assert body == {"accepted": 1, "duplicates": 0, "rejected": []}


def test_too_large_a_batch_is_a_400(admin_user, key):
    events = [{"id": str(n), "key": key.pk, "at": at()} for n in range(usage.MAX_EVENTS + 1)]
    response = post(client_for(admin_user), events)
    assert response.status_code == 400
    assert "events" in response.json()
    assert not UsageDaily.objects.exists()


@pytest.mark.parametrize("payload", [{}, {"events": "x"}, {"events": {"id": 1}}, [1, 2]])
def test_malformed_batches_are_400s(admin_user, payload):
    response = client_for(admin_user).post(reverse("usage-list"), payload, format="json")
    assert response.status_code == 400
    assert "events" in response.json()


def test_broken_json_is_a_400(admin_user):
    response = client_for(admin_user).post(reverse("usage-list"), "{not json", content_type="application/json")
    assert response.status_code == 400


@pytest.mark.parametrize("role", ["anon", "owner", "compliance"])
def test_only_admins_and_integrations_report_usage(role, owner, compliance_user, key):
    user = {"anon": None, "owner": owner, "compliance": compliance_user}[role]
    response = post(client_for(user), [{"id": "1", "key": key.pk, "at": at()}])
    assert response.status_code == 403
    assert not UsageDaily.objects.exists()


def test_full_batch_is_accepted(admin_user):
    keys = factories.ApiKeyFactory.create_batch(5)
    events = [{"id": f"e{n}", "key": keys[n % 5].pk, "at": at(n % 600), "source": f"h{n % 7}"}
              for n in range(usage.MAX_EVENTS)]
    body = post(client_for(admin_user), events).json()
    assert body["accepted"] == usage.MAX_EVENTS
    assert sum(UsageDaily.objects.values_list("count", flat=True)) == usage.MAX_EVENTS
