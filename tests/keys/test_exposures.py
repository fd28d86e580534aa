import io
import logging

import pytest
from django.core import mail
from django.core.management import call_command
from django.urls import reverse

from keys.choices import ExposureSource, KeyStatus, LifecycleAction, RevocationReason
from keys.fingerprints import fingerprint_secret
from keys.models import Exposure, LifecycleEvent, RevocationRequest
from keys.services import exposures
from tests import factories

pytestmark = pytest.mark.django_db

SECRET = "sk_live_exposedSecretValue0042"


@pytest.fixture
def exposed_key(owner):
    return factories.ApiKeyFactory(owner=owner, fingerprint=fingerprint_secret(SECRET), prefix="sk_live_expo")


def report(reporter, **kwargs):
    kwargs.setdefault("location", "https://paste.example/abc")
    return exposures.report_exposure(reporter=reporter, source=ExposureSource.PORTAL, **kwargs)


def test_match_revokes_as_emergency_notifies_and_is_in_history(
    exposed_key, other_owner, compliance_user, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        exposure = report(other_owner, secret=SECRET, notes="found in a public gist")
    assert exposure.key == exposed_key
    exposed_key.refresh_from_db()
    assert exposed_key.status == KeyStatus.REVOKED
    assert exposed_key.revocation_reason == RevocationReason.EXPOSED
    request = RevocationRequest.objects.get(key=exposed_key)
    assert request.emergency
    assert request.reason_code == RevocationReason.EXPOSED
    event = LifecycleEvent.objects.get(key=exposed_key, action=LifecycleAction.REVOKE)
    assert f"exposure #{exposure.pk}" in event.reason and other_owner.username in event.reason
    assert exposure.history.get().history_user == other_owner
    recipients = sorted(address for message in mail.outbox for address in message.to)
    assert recipients == sorted([exposed_key.owner.email, compliance_user.email])
    assert exposed_key.label in mail.outbox[0].subject


def test_match_under_an_old_pepper(settings, owner):
    settings.KEY_FINGERPRINT_OLD_PEPPERS = {1: settings.KEY_FINGERPRINT_PEPPER}
    settings.KEY_FINGERPRINT_PEPPER = "a-newer-pepper"
    settings.KEY_FINGERPRINT_PEPPER_VERSION = 2
    old = factories.ApiKeyFactory(owner=owner, fingerprint=fingerprint_secret(SECRET, 1))
    assert report(owner, secret=SECRET).key == old


def test_match_by_fingerprint(exposed_key, admin_user):
    assert report(admin_user, fingerprint=exposed_key.fingerprint.upper()).key == exposed_key


def test_no_match_keeps_the_report_without_a_key(key, owner):
    exposure = report(owner, secret="sk_live_nobodyKnowsThisOne99")
    assert exposure.key is None
    assert exposure.fingerprint == fingerprint_secret("sk_live_nobodyKnowsThisOne99")
    key.refresh_from_db()
    assert key.status == KeyStatus.ACTIVE
    assert mail.outbox == []


def test_already_revoked_key_is_recorded_and_reported_not_revoked_twice(
    exposed_key, owner, django_capture_on_commit_callbacks
):
    exposed_key.status = KeyStatus.REVOKED
    exposed_key.save()
    with django_capture_on_commit_callbacks(execute=True):
        exposure = report(owner, secret=SECRET)
    assert exposure.key == exposed_key
    assert not RevocationRequest.objects.exists()
    assert "already revoked" in mail.outbox[0].body


def test_the_secret_is_never_stored_logged_or_mailed(
    exposed_key, other_owner, compliance_user, caplog, django_capture_on_commit_callbacks
):
    caplog.set_level(logging.DEBUG)
    with django_capture_on_commit_callbacks(execute=True):
        exposure = report(other_owner, secret=SECRET, location=f"https://paste.example/raw?{SECRET}",
                          notes=f"the line was API_KEY={SECRET}")
    assert SECRET not in exposure.location and SECRET not in exposure.notes
    assert exposures.REDACTED in exposure.location
    dump = io.StringIO()
    call_command("dumpdata", stdout=dump)
    assert SECRET not in dump.getvalue()
    assert SECRET not in caplog.text
    assert all(SECRET not in message.body and SECRET not in message.subject for message in mail.outbox)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({}, "secret"),
    ({"secret": SECRET, "fingerprint": "ab" * 32}, "secret"),
    ({"secret": "short"}, "secret"),
    ({"fingerprint": "not-hex"}, "fingerprint"),
    ({"secret": SECRET, "location": " "}, "location"),
])
def test_refused_reports(owner, kwargs, field):
    with pytest.raises(exposures.ExposureError) as refused:
        report(owner, **kwargs)
    assert field in refused.value.errors
    assert SECRET not in str(refused.value)
    assert not Exposure.objects.exists()


# Who may report, and what a fingerprint alone may do


def customer_contact(actor):
    from contacts import access

    contact, _ = access.invite_contact(actor=actor, customer=factories.CustomerFactory(name="Acme"),
                                       name="Pat Contact", email="pat@acme.test")
    return contact.user


def test_a_fingerprint_alone_from_someone_who_cannot_see_the_key_opens_a_triage_and_revokes_nothing(
    exposed_key, other_owner, compliance_user, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        exposure = report(other_owner, fingerprint=exposed_key.fingerprint)
    assert exposure.key == exposed_key
    assert exposure.triage.status == "open"
    exposed_key.refresh_from_db()
    assert exposed_key.status == KeyStatus.ACTIVE
    assert not RevocationRequest.objects.exists()
    # The key's owner and compliance are told all the same.
    recipients = sorted(address for message in mail.outbox for address in message.to)
    assert recipients == sorted([exposed_key.owner.email, compliance_user.email])
    assert "not revoked" in mail.outbox[0].body and "triage" in mail.outbox[0].body


@pytest.mark.parametrize("reporter", ["owner", "steward", "delegate", "compliance", "admin"])
def test_a_fingerprint_alone_revokes_a_key_the_reporter_can_see(exposed_key, reporter, compliance_user, admin_user):
    from django.contrib.auth.models import Permission

    from keys.models import ApiKeyUserObjectPermission

    user = {"owner": exposed_key.owner, "compliance": compliance_user, "admin": admin_user}.get(reporter)
    if reporter == "steward":
        user = exposed_key.steward = factories.OwnerFactory(username="sam")
        exposed_key.save()
    elif reporter == "delegate":
        user = factories.OwnerFactory(username="dee")
        ApiKeyUserObjectPermission.objects.create(content_object=exposed_key, user=user,
                                                  permission=Permission.objects.get(codename="view_apikey"))
    exposure = report(user, fingerprint=exposed_key.fingerprint)
    exposed_key.refresh_from_db()
    assert exposed_key.status == KeyStatus.REVOKED
    assert not hasattr(exposure, "triage") or exposure.triage is None


def test_the_secret_itself_revokes_whoever_reports_it(exposed_key, other_owner):
    exposure = report(other_owner, secret=SECRET)
    exposed_key.refresh_from_db()
    assert exposed_key.status == KeyStatus.REVOKED
    assert "with the secret" in LifecycleEvent.objects.get(key=exposed_key, action=LifecycleAction.REVOKE).reason
    assert exposure.key == exposed_key


@pytest.mark.parametrize("kind", ["contact", "no role"])
def test_customer_contacts_and_accounts_without_a_role_may_not_report(exposed_key, compliance_user, kind):
    user = customer_contact(compliance_user) if kind == "contact" else factories.UserFactory(username="nobody")
    for proof in ({"secret": SECRET}, {"fingerprint": exposed_key.fingerprint}):
        with pytest.raises(exposures.ExposureError) as refused:
            report(user, **proof)
        assert isinstance(refused.value, exposures.NotAllowedToReport)
    assert not Exposure.objects.exists()
    exposed_key.refresh_from_db()
    assert exposed_key.status == KeyStatus.ACTIVE


def test_an_integration_token_out_of_its_scope_opens_a_triage(exposed_key):
    from tests.integration_tokens import make_token

    outside, _ = make_token(issuing_system=factories.IssuingSystemFactory(name="Elsewhere"), name="Other")
    exposure = exposures.report_exposure(reporter=outside.acts_as, token=outside, source=ExposureSource.API,
                                         fingerprint=exposed_key.fingerprint, location="ci log")
    assert exposure.triage.status == "open"
    exposed_key.refresh_from_db()
    assert exposed_key.status == KeyStatus.ACTIVE
    inside, _ = make_token(issuing_system=exposed_key.issuing_system, name="Gateway")
    exposures.report_exposure(reporter=inside.acts_as, token=inside, source=ExposureSource.API,
                              fingerprint=exposed_key.fingerprint, location="ci log")
    exposed_key.refresh_from_db()
    assert exposed_key.status == KeyStatus.REVOKED


# Compliance triages


@pytest.fixture
def triaged(exposed_key, other_owner):
    return report(other_owner, fingerprint=exposed_key.fingerprint)


def test_compliance_revokes_the_key_of_a_report_in_triage_once(
    triaged, exposed_key, compliance_user, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        triage = exposures.triage_exposure(triaged, actor=compliance_user, revoke=True, reason="Confirmed leak")
    assert (triage.status, triage.decided_by, triage.decision_reason) == ("revoked", compliance_user, "Confirmed leak")
    exposed_key.refresh_from_db()
    assert exposed_key.status == KeyStatus.REVOKED and exposed_key.revocation_reason == RevocationReason.EXPOSED
    assert RevocationRequest.objects.get(key=exposed_key).emergency
    assert exposed_key.owner.email in [address for message in mail.outbox for address in message.to]
    assert triage.history.first().history_user == compliance_user
    with pytest.raises(exposures.ExposureError, match="already"):
        exposures.triage_exposure(triaged, actor=compliance_user, revoke=False, reason="again")


def test_compliance_dismisses_a_report_with_a_reason(triaged, exposed_key, admin_user, owner):
    with pytest.raises(exposures.ExposureError) as refused:
        exposures.triage_exposure(triaged, actor=admin_user, revoke=False, reason=" ")
    assert "reason" in refused.value.errors
    with pytest.raises(exposures.ExposureError):
        exposures.triage_exposure(triaged, actor=owner, revoke=True, reason="mine")
    triage = exposures.triage_exposure(triaged, actor=admin_user, revoke=False, reason="A test fingerprint")
    assert triage.status == "dismissed"
    exposed_key.refresh_from_db()
    assert exposed_key.status == KeyStatus.ACTIVE


@pytest.mark.django_db
def test_the_key_list_offers_the_exposure_report_only_to_who_may_report(client, owner):
    from django.contrib.auth import get_user_model

    client.force_login(owner)
    assert reverse("keys:exposure-report") in client.get(reverse("keys:list")).content.decode()
    nobody = get_user_model().objects.create_user("no-role")
    client.force_login(nobody)
    page = client.get(reverse("keys:list"))
    assert page.status_code == 200 and reverse("keys:exposure-report") not in page.content.decode()
    assert client.get(reverse("keys:exposure-report")).status_code == 403
