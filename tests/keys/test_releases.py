"""Safe release (brownout): a grace window while usage is watched, rollback, and a quiet window revoking once."""

import datetime
import threading

import pytest
from django.db import close_old_connections, connection
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from keys.choices import KeyStatus, LifecycleAction, ReleaseStatus, RevocationReason
from keys.models import ApiKey, KeyRelease, RevocationRequest
from keys.services import releases
from keys.services.exposures import report_exposure
from keys.services.usage import ingest_usage
from tests import factories
from tests.postgres import requires_postgres
from tests.worker import running_worker, wait_for

pytestmark = pytest.mark.django_db


def _events(key, *ats, prefix="gw"):
    return [{"id": f"{prefix}-{n}", "key": key.pk, "at": at.isoformat(), "source": f"10.0.0.{n}"}
            for n, at in enumerate(ats, start=1)]


def _release(key, actor, days=7):
    return releases.release_key(key, actor=actor, reason="integration retired", grace_days=days, context="test")


def test_release_suspends_the_key_and_opens_a_window(key, admin_user):
    release = _release(key, admin_user)
    key.refresh_from_db()
    assert key.status == KeyStatus.SUSPENDED
    assert release.status == ReleaseStatus.WATCHING and release.status_before == KeyStatus.ACTIVE
    assert release.ends_at - release.started_at == datetime.timedelta(days=7)
    event = key.events.last()
    assert (event.action, event.actor, event.to_status) == (LifecycleAction.RELEASE_GRACE, admin_user, "suspended")
    assert not RevocationRequest.objects.filter(key=key).exists()
    with pytest.raises(releases.LifecycleError, match="already released"):
        _release(key, admin_user)


def test_usage_inside_the_window_tells_owner_and_compliance_once_and_rollback_restores_the_key(
        client, key, owner, compliance_user, admin_user, mailoutbox, django_capture_on_commit_callbacks):
    release = _release(key, admin_user)
    now = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        result = ingest_usage(_events(key, now, now + datetime.timedelta(seconds=1)))
    assert result.accepted == 2
    release.refresh_from_db()
    assert release.traffic_calls == 2 and release.notified_at is not None
    assert release.traffic_sources == ["10.0.0.1", "10.0.0.2"]
    assert len(mailoutbox) == 1
    assert set(mailoutbox[0].to) == {owner.email, compliance_user.email}
    assert "still in use" in mailoutbox[0].subject and "2 call(s)" in mailoutbox[0].body
    # More traffic in the same window: counted, nobody is told twice.
    with django_capture_on_commit_callbacks(execute=True):
        ingest_usage(_events(key, timezone.now(), prefix="gw2"))
    release.refresh_from_db()
    assert release.traffic_calls == 3 and len(mailoutbox) == 1

    client.force_login(owner)
    page = client.get(reverse("keys:detail", args=[key.pk]))
    assert "Used during the window: 3 calls" in page.text and "Roll back" in page.text
    url = reverse("keys:release-action", args=[release.pk, "rollback"])
    response = client.post(url, {"reason": "the nightly job still needs it"})
    assert response.status_code == 302
    key.refresh_from_db()
    release.refresh_from_db()
    assert key.status == KeyStatus.ACTIVE
    assert release.status == ReleaseStatus.ROLLED_BACK and release.decided_by == owner
    assert release.decision_reason == "the nightly job still needs it"
    event = key.events.last()
    assert (event.action, event.actor) == (LifecycleAction.ROLL_BACK_RELEASE, owner)
    assert "the nightly job still needs it" in event.reason
    assert key.history.first().history_user == owner
    # The window's end changes nothing for a rolled-back release.
    assert releases.finalise_due_releases(timezone.now() + datetime.timedelta(days=8))["revoked"] == 0
    key.refresh_from_db()
    assert key.status == KeyStatus.ACTIVE and not RevocationRequest.objects.filter(key=key).exists()
    # Rolled back once: a second rollback is refused with a message.
    response = client.post(url, {"reason": "again"}, follow=True)
    assert "already rolled back" in response.text


def test_a_quiet_window_revokes_the_key_exactly_once(key, admin_user, mailoutbox):
    release = _release(key, admin_user)
    # Usage reported late, for calls made before the release, is not traffic in the window.
    ingest_usage(_events(key, release.started_at - datetime.timedelta(hours=1)))
    assert releases.finalise_due_releases(release.ends_at - datetime.timedelta(minutes=1)) == {
        "revoked": 0, "held": 0, "superseded": 0, "skipped": 0}
    counts = releases.finalise_due_releases(release.ends_at + datetime.timedelta(minutes=1))
    assert counts["revoked"] == 1
    key.refresh_from_db()
    release.refresh_from_db()
    assert key.status == KeyStatus.REVOKED and key.revocation_reason == RevocationReason.RELEASED
    assert release.status == ReleaseStatus.REVOKED and release.decided_by.username == "system"
    request = RevocationRequest.objects.get(key=key)
    assert request.reason_code == RevocationReason.RELEASED and "no traffic" in request.reason
    assert mailoutbox == []
    # A rerun (or a redelivered task) does nothing.
    assert releases.finalise_due_releases(release.ends_at + datetime.timedelta(days=1)) == {
        "revoked": 0, "held": 0, "superseded": 0, "skipped": 0}
    assert RevocationRequest.objects.filter(key=key).count() == 1
    assert key.events.filter(action=LifecycleAction.REVOKE).count() == 1


def test_a_used_window_is_held_for_a_person_then_revoked_now(key, owner, admin_user, compliance_user):
    release = _release(key, admin_user)
    ingest_usage(_events(key, timezone.now()))
    assert releases.finalise_due_releases(release.ends_at + datetime.timedelta(minutes=1))["held"] == 1
    release.refresh_from_db()
    key.refresh_from_db()
    assert release.status == ReleaseStatus.HELD and key.status == KeyStatus.SUSPENDED
    with pytest.raises(releases.LifecycleError, match="owner or steward"):
        releases.revoke_now(release, actor=factories.OwnerFactory(username="mallory"), reason="no")
    releases.revoke_now(release, actor=compliance_user, reason="customer confirmed it is unused")
    key.refresh_from_db()
    assert key.status == KeyStatus.REVOKED and RevocationRequest.objects.filter(key=key).count() == 1


def test_exposed_keys_are_revoked_at_once(key, admin_user, owner):
    # An exposure during the window revokes the key as an emergency; the sweep closes the release.
    release = _release(key, admin_user)
    report_exposure(reporter=owner, source="portal", fingerprint=key.fingerprint, location="https://git.example/x")
    key.refresh_from_db()
    assert key.status == KeyStatus.REVOKED and RevocationRequest.objects.get(key=key).emergency
    assert releases.finalise_due_releases()["superseded"] == 1
    release.refresh_from_db()
    assert release.status == ReleaseStatus.SUPERSEDED
    # A key already reported exposed gets no grace window when released.
    other = factories.ApiKeyFactory(owner=owner)
    report_exposure(reporter=owner, source="portal", fingerprint=other.fingerprint, location="paste site")
    again = factories.ApiKeyFactory(owner=owner)
    again.exposures.create(fingerprint=again.fingerprint, location="chat log", source="api")
    assert _release(again, admin_user) is None
    again.refresh_from_db()
    assert again.status == KeyStatus.REVOKED and again.revocation_reason == RevocationReason.EXPOSED


def test_release_without_grace_and_refusals(key, admin_user):
    with pytest.raises(releases.LifecycleError) as refused:
        releases.release_key(key, actor=admin_user, reason="", grace_days=7)
    assert "reason" in refused.value.errors
    with pytest.raises(releases.LifecycleError) as refused:
        releases.release_key(key, actor=admin_user, reason="x", grace_days=91)
    assert "grace_days" in refused.value.errors
    assert releases.release_key(key, actor=admin_user, reason="gone", grace_days=0) is None
    key.refresh_from_db()
    assert key.status == KeyStatus.REVOKED and not KeyRelease.objects.exists()


def test_api_revoke_with_grace_days_releases_through_a_window(key, admin_user):
    client = APIClient()
    client.force_login(admin_user)
    url = f"/api/v1/keys/{key.pk}/revoke/"
    bad = client.post(url, {"reason_code": "released", "grace_days": -1}, format="json")
    assert bad.status_code == 400 and "grace_days" in bad.json()
    response = client.post(url, {"reason_code": "released", "reason": "retired", "grace_days": 3}, format="json")
    assert response.status_code == 200 and response.json()["status"] == "suspended"
    release = key.releases.get()
    assert release.ends_at - release.started_at == datetime.timedelta(days=3) and release.context == "API"
    other = factories.ApiKeyFactory(owner=key.owner)
    response = client.post(f"/api/v1/keys/{other.pk}/revoke/", {"reason_code": "manual"}, format="json")
    assert response.json()["status"] == "revoked"


def test_key_page_release_action(client, key, admin_user):
    client.force_login(admin_user)
    response = client.post(reverse("keys:action", args=[key.pk, "release"]), {"reason": "", "grace_days": "3"})
    assert response.status_code == 400 and "This field is required" in response.text
    response = client.post(reverse("keys:action", args=[key.pk, "release"]), {"reason": "retired", "grace_days": "3"})
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.status == KeyStatus.SUSPENDED and key.releases.get().context == "key page"
    listing = client.get(reverse("keys:releases"), {"state": "open"})
    assert listing.status_code == 200 and key.label in listing.text


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_postgres_usage_in_window_notifies_and_concurrent_sweeps_revoke_once(mailoutbox):
    admin = factories.AdminFactory(username="pg-admin")
    factories.ComplianceFactory(username="pg-compliance")
    used = factories.ApiKeyFactory(owner=factories.OwnerFactory(username="pg-owner"))
    quiet = [factories.ApiKeyFactory(owner=used.owner) for _ in range(5)]
    watched = _release(used, admin)
    for key in quiet:
        _release(key, admin)
    result = ingest_usage(_events(used, timezone.now()))  # the PostgreSQL upsert path
    assert result.accepted == 1
    watched.refresh_from_db()
    assert watched.traffic_calls == 1 and watched.notified_at is not None
    assert len(mailoutbox) == 1 and "pg-owner@example.test" in mailoutbox[0].to
    # The windows ran out: two sweeps at once revoke each quiet key once and hold the used one.
    KeyRelease.objects.update(ends_at=timezone.now() - datetime.timedelta(minutes=1))
    results, barrier = [], threading.Barrier(2)

    def sweep():
        try:
            barrier.wait()
            results.append(releases.finalise_due_releases())
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r["revoked"] for r in results) == 5 and sum(r["held"] for r in results) == 1
    assert RevocationRequest.objects.filter(key__in=quiet).count() == 5
    assert ApiKey.objects.filter(pk__in=[k.pk for k in quiet], status=KeyStatus.REVOKED).count() == 5
    for key in quiet:
        assert key.events.filter(action=LifecycleAction.REVOKE).count() == 1
    # The beat task on a real worker: it revokes a newly due quiet key, and nothing twice.
    from keys import tasks

    late = factories.ApiKeyFactory(owner=used.owner)
    _release(late, admin)
    KeyRelease.objects.filter(key=late).update(ends_at=timezone.now() - datetime.timedelta(minutes=1))
    with running_worker():
        tasks.finalise_due_releases.delay()
        wait_for(lambda: ApiKey.objects.filter(pk=late.pk, status=KeyStatus.REVOKED).exists())
    assert RevocationRequest.objects.filter(key__in=[*quiet, late]).count() == 6
    assert KeyRelease.objects.filter(status=ReleaseStatus.REVOKED).count() == 6
