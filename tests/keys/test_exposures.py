import io
import logging

import pytest
from django.core import mail
from django.core.management import call_command

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
