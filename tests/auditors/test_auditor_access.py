"""An auditor with a current grant: reads evidence, history and exports; every page they open is in the access
log; every attempt to act is refused (portal and API); access ends by itself, by the periodic job, or early, and
the auditor's open sessions end with it."""

import datetime

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from attestations.choices import CampaignStatus, ItemStatus
from attestations.models import EvidenceExport
from contacts import access
from core import roles, tasks
from core.auditors import services
from core.jobs import registered_task
from core.models import AccessAction, AccessRecord, AuditorGrantState, SignedInSession
from keys.choices import KeyStatus
from keys.models import SavedKeyFilter
from tests import factories

from .conftest import clock_at, days_from_now

pytestmark = pytest.mark.django_db


def signed_in(user, client_class=Client):
    client = client_class()
    client.force_login(user)
    return client


def auditor_records(user, action=AccessAction.AUDITOR_VIEW) -> list[str]:
    return list(AccessRecord.objects.filter(user=user, action=action).order_by("pk").values_list("target", flat=True))


# Reading


def test_the_auditor_reads_evidence_history_and_exports(world):
    client = signed_in(world["auditor"])
    export = world["export"]
    key, item, campaign = world["key"], world["item"], world["campaign"]
    pages = {
        reverse("dashboard"): "All 2 registered keys",
        reverse("keys:list"): key.label,
        reverse("keys:detail", args=[key.pk]): "History",
        reverse("keys:exceptions"): "Every exception",
        reverse("attestations:campaigns"): campaign.name,
        reverse("attestations:campaign", args=[campaign.pk]): campaign.name,
        reverse("attestations:item", args=[item.pk]): key.label,
        reverse("attestations:exports"): f"#{export.pk}",
        reverse("attestations:export", args=[export.pk]): export.sha256,
        reverse("keys:revocations"): "Revocation",
        reverse("keys:exposures"): "Exposure reports",
    }
    for path, text in pages.items():
        response = client.get(path)
        assert response.status_code == 200, path
        assert text in response.content.decode(), path
    download = client.get(reverse("attestations:export-download", args=[export.pk]))
    assert download.status_code == 200 and b"".join(download.streaming_content).startswith(b"%PDF")
    assert AccessRecord.objects.filter(user=world["auditor"], action=AccessAction.EXPORT_DOWNLOADED).exists()
    # The banner says until when, and the pages offer no action.
    campaign_page = client.get(reverse("attestations:campaign", args=[campaign.pk])).content.decode()
    assert "Read-only until" in campaign_page
    assert "Request campaign report" not in campaign_page and "Cancel campaign" not in campaign_page
    assert "Save filter" not in client.get(reverse("keys:list"), {"status": "active"}).content.decode()
    assert "Request an export" not in client.get(reverse("attestations:exports")).content.decode()


def test_the_auditor_reads_through_the_api(world):
    client = signed_in(world["auditor"], APIClient)
    key, export = world["key"], world["export"]
    assert len(client.get(reverse("apikey-list")).json()["results"]) == 2
    assert client.get(reverse("apikey-history", args=[key.pk])).status_code == 200
    assert client.get(reverse("campaign-detail", args=[world["campaign"].pk])).status_code == 200
    assert client.get(reverse("attestation-detail", args=[world["item"].pk])).status_code == 200
    assert client.get(reverse("export-detail", args=[export.pk])).json()["sha256"] == export.sha256
    assert client.get(reverse("export-download", args=[export.pk])).status_code == 200


def test_every_page_the_auditor_opens_is_in_the_access_log(world):
    client = signed_in(world["auditor"])
    api = signed_in(world["auditor"], APIClient)
    export = world["export"]
    client.get(reverse("keys:list"), {"status": "active"})
    client.get(reverse("keys:detail", args=[world["key"].pk]))
    client.get(reverse("attestations:export-download", args=[export.pk]))
    client.get("/no-such-page/")
    api.get(reverse("apikey-list"))
    assert auditor_records(world["auditor"]) == [
        "GET /keys/?status=active 200",
        f"GET /keys/{world['key'].pk}/ 200",
        f"GET /exports/{export.pk}/download/ 200",
        "GET /no-such-page/ 404",
        "GET /api/v1/keys/ 200",
    ]
    record = AccessRecord.objects.filter(action=AccessAction.AUDITOR_VIEW).last()
    assert record.username == "audrey" and record.ip_address == "127.0.0.1"


def test_other_users_requests_are_not_logged_as_auditor_visits(world):
    signed_in(world["compliance"]).get(reverse("keys:list"))
    assert not AccessRecord.objects.filter(action=AccessAction.AUDITOR_VIEW).exists()


def test_contact_details_stay_out_of_the_auditors_pages(world, compliance_user, admin_user):
    contact, _ = access.invite_contact(actor=compliance_user, customer=world["key"].workflow.customer,
                                       name="Pat Lee", email="pat@customer.test")
    access.assign_key(contact, world["key"], actor=admin_user)
    client = signed_in(world["auditor"])
    page = client.get(reverse("keys:detail", args=[world["key"].pk])).content.decode()
    assert "Pat Lee" not in page and "mailto:" not in page
    for path in (reverse("contacts:list"), reverse("contacts:detail", args=[contact.pk])):
        assert client.get(path).status_code == 403
    # Compliance still sees them.
    assert "Pat Lee" in signed_in(compliance_user).get(reverse("keys:detail", args=[world["key"].pk])).content.decode()


# Acting is refused


ACTIONS = [
    ("keys:action", ("key", "suspend"), {"reason": "auditor tries"}),
    ("keys:filter-save", (), {"name": "mine", "query": "status=active"}),
    ("keys:exception-action", ("exception", "reject"), {"reason": "no"}),
    ("attestations:decide", ("item",), {"decision": "confirm", "affirm": "on", "justification": "x"}),
    ("attestations:bulk-decide", (), {"items": ["item"], "decision": "confirm"}),
    ("attestations:campaign-action", ("campaign", "close"), {}),
    ("attestations:campaign-create", (), {"name": "Auditor's campaign"}),
    ("attestations:export-create", (), {"kind": "campaign", "campaign": "campaign"}),
    ("keys:exposure-report", (), {"fingerprint": "ab" * 32, "location": "x"}),
    ("auditors:end", ("grant",), {}),
]


@pytest.mark.parametrize(("name", "args", "data"), ACTIONS, ids=[a[0] for a in ACTIONS])
def test_every_attempt_to_act_in_the_portal_is_refused(world, name, args, data):
    world["exception"] = factories.KeyExceptionFactory(key=world["key"], requested_by=world["owner"])
    url = reverse(name, args=[world[a].pk if a in world else a for a in args])
    data = {k: (world[v].pk if isinstance(v, str) and v in world else v) for k, v in data.items()}
    response = signed_in(world["auditor"]).post(url, data)
    assert response.status_code == 403
    assert "Not available to auditors" in response.content.decode()
    assert auditor_records(world["auditor"], AccessAction.AUDITOR_REFUSED) == [f"POST {url}"]
    world["key"].refresh_from_db()
    world["item"].refresh_from_db()
    world["campaign"].refresh_from_db()
    assert world["key"].status == KeyStatus.ACTIVE and world["item"].status == ItemStatus.PENDING
    assert world["campaign"].status == CampaignStatus.ACTIVE
    assert not SavedKeyFilter.objects.exists() and EvidenceExport.objects.count() == 1
    assert services.current_grant(world["auditor"]) is not None


def test_an_auditor_may_not_even_open_the_export_form(world):
    response = signed_in(world["auditor"]).get(reverse("attestations:export-create"))
    assert response.status_code == 403


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_every_attempt_to_act_through_the_api_is_refused(world, method):
    client = signed_in(world["auditor"], APIClient)
    key = world["key"]
    for url, body in (
        (reverse("apikey-detail", args=[key.pk]), {"label": "renamed"}),
        (reverse("apikey-revoke", args=[key.pk]), {"reason_code": "manual", "reason": "x"}),
        (reverse("campaign-close", args=[world["campaign"].pk]), {}),
        (reverse("attestation-decide", args=[world["item"].pk]), {"decision": "confirm", "affirm": True}),
        (reverse("export-list"), {"kind": "campaign", "campaign": world["campaign"].pk}),
    ):
        response = getattr(client, method)(url, body, format="json")
        assert response.status_code == 403, url
        assert "change nothing" in response.json()["detail"]
    key.refresh_from_db()
    assert key.label != "renamed" and key.status == KeyStatus.ACTIVE
    assert EvidenceExport.objects.count() == 1


def test_an_auditors_personal_token_is_refused(world):
    token = Token.objects.create(user=world["auditor"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    response = client.get(reverse("apikey-list"))
    assert response.status_code in (401, 403) and "personal tokens are refused" in response.json()["detail"]


def test_exports_are_refused_by_the_service_too(world):
    from attestations.services.exports import EvidenceError, request_export

    with pytest.raises(EvidenceError, match="Auditors read"):
        request_export(actor=world["auditor"], kind="campaign", campaign=world["campaign"])


def test_signing_out_and_the_second_factor_stay_open_to_the_auditor(world, settings):
    settings.AUDITOR_OTP_REQUIRED = True
    client = signed_in(world["auditor"])
    # No page before the second factor is enrolled.
    response = client.get(reverse("keys:list"))
    assert response.status_code == 302 and response.url.startswith(reverse("two-factor-setup"))
    setup = client.post(reverse("two-factor-setup"), {"token": "000000"})
    assert setup.status_code == 200 and "does not match" in setup.content.decode()
    assert client.post(reverse("logout")).status_code == 302
    assert "_auth_user_id" not in client.session


def test_without_the_requirement_the_auditor_may_still_enrol(world):
    client = signed_in(world["auditor"])
    assert client.get(reverse("keys:list")).status_code == 200
    assert client.get(reverse("two-factor-setup")).status_code == 200


def test_an_auditor_role_given_by_hand_to_a_signed_in_account_reads_nothing_more(world, other_owner):
    """Fail closed: the reading right exists only on requests whose grant the middleware found."""
    stranger = factories.UserFactory(username="stranger")
    client = signed_in(stranger)
    stranger.groups.add(Group.objects.get(name=roles.AUDITOR))
    assert client.get(reverse("keys:detail", args=[world["key"].pk])).status_code == 404
    assert client.get(reverse("attestations:campaigns")).status_code == 403


# Access ends


def test_access_that_has_not_started_signs_the_auditor_out(compliance_user):
    later = factories.AuditorFactory(username="petra")
    services.grant_auditor_access(compliance_user, auditor=later, engagement="Year-end audit",
                                  starts_on=days_from_now(10), ends_on=days_from_now(20))
    client = signed_in(later)
    response = client.get(reverse("keys:list"), follow=True)
    assert response.redirect_chain[-1][0].startswith(reverse("login"))
    assert "Your auditor access starts on" in response.content.decode()
    assert AccessRecord.objects.filter(user=later, action=AccessAction.AUDITOR_SIGNED_OUT).exists()


def test_access_expires_by_itself_and_the_open_sessions_end(world, long_sessions):
    auditor, grant = world["auditor"], world["grant"]
    first, second = signed_in(auditor), signed_in(auditor)
    assert first.get(reverse("keys:list")).status_code == 200
    assert SignedInSession.objects.filter(user=auditor).count() == 2
    with clock_at(grant.ends_at - datetime.timedelta(minutes=1)):
        assert first.get(reverse("keys:list")).status_code == 200
    with clock_at(grant.ends_at + datetime.timedelta(minutes=1)):
        response = first.get(reverse("keys:list"), follow=True)
        assert response.redirect_chain[0][0].startswith(reverse("login"))
        assert "Your auditor access for ISO 27001 surveillance audit ended on" in response.content.decode()
        # Every session of the auditor ended, the other browser's too: it is anonymous now.
        assert not SignedInSession.objects.filter(user=auditor).exists()
        other = second.get(reverse("keys:list"))
        assert other.status_code == 302 and other.url.startswith(reverse("login"))
        assert "_auth_user_id" not in second.session
        api = signed_in(auditor, APIClient).get(reverse("apikey-list"))
        assert api.status_code == 403 and "ended on" in api.json()["detail"]
    assert AccessRecord.objects.filter(user=auditor, action=AccessAction.AUDITOR_SIGNED_OUT).exists()


def test_the_periodic_job_closes_ended_grants_and_their_sessions(world, long_sessions):
    auditor, grant = world["auditor"], world["grant"]
    client = signed_in(auditor)
    assert client.get(reverse("keys:list")).status_code == 200
    job = PeriodicTask.objects.get(task="core.tasks.expire_auditor_grants")
    assert job.enabled and job.interval.every == 5 and registered_task(job.task).name == job.task
    with clock_at(grant.ends_at - datetime.timedelta(seconds=1)):
        assert tasks.expire_auditor_grants.delay().get() == 0
    with clock_at(grant.ends_at + datetime.timedelta(minutes=3)):
        assert tasks.expire_auditor_grants.delay().get() == 1
        assert tasks.expire_auditor_grants.delay().get() == 0  # idempotent
        grant.refresh_from_db()
        assert grant.state == AuditorGrantState.EXPIRED and grant.ended_at == grant.ends_at
        assert grant.ended_by.username == "system" and grant.end_reason == "expired"
        assert grant.history.latest("history_id").history_change_reason == "access expired"
        assert not SignedInSession.objects.filter(user=auditor).exists()
        # The session is gone from the store: the next request is anonymous, before the middleware looks.
        response = client.get(reverse("keys:list"))
        assert response.status_code == 302 and response.url.startswith(reverse("login"))
        assert not AccessRecord.objects.filter(user=auditor, action=AccessAction.AUDITOR_SIGNED_OUT).exists()


def test_the_job_spares_the_sessions_of_an_auditor_with_another_current_grant(world, compliance_user, long_sessions):
    auditor, grant = world["auditor"], world["grant"]
    next_day = timezone.localtime(grant.ends_at).date()
    services.grant_auditor_access(compliance_user, auditor=auditor, engagement="Second engagement",
                                  starts_on=next_day, ends_on=next_day + datetime.timedelta(days=5))
    client = signed_in(auditor)
    with clock_at(grant.ends_at + datetime.timedelta(minutes=1)):
        assert services.expire_auditor_grants() == 1
        assert client.get(reverse("keys:list")).status_code == 200
