"""Revocation that reaches the issuer: signed webhook calls with retries, and manual confirmation.

An issuer is played by a real HTTP server on 127.0.0.1 that checks each call the way the README tells
issuers to: the signature from the documented recipe, the timestamp, and the body.
"""

import datetime
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.conf import settings
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from core.actors import system_user
from keys import tasks
from keys.choices import (
    IssuingSystemKind,
    KeyStatus,
    LifecycleAction,
    RevocationReason,
    RevocationRequestStatus,
    RevocationState,
)
from keys.models import RevocationAttempt, RevocationRequest
from keys.services import lifecycle, revocation
from tests import factories
from tests.postgres import requires_postgres
from tests.worker import running_worker, wait_for

pytestmark = pytest.mark.django_db


class Issuer:
    """A stand-in issuing system: answers ``statuses`` in turn (then 200) and verifies every call."""

    def __init__(self, statuses=()):
        self.statuses = list(statuses)
        self.calls: list[dict] = []
        self.delay = 0.0
        self.lock = threading.Lock()
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(issuer.delay)
                with issuer.lock:
                    status = issuer.statuses.pop(0) if issuer.statuses else 200
                    issuer.calls.append({"headers": dict(self.headers), "body": body, "status": status,
                                         "path": self.path})
                answer = json.dumps({"reference": "ISS-42"} if status == 200 else {"error": "try later"}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/revoke"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def issuer():
    server = Issuer()
    yield server
    server.close()


def issuer_secret(system_id: int) -> str:
    """The README's recipe, computed from the configured key as the issuer's operator would."""
    return hmac.new(settings.WEBHOOK_SIGNING_KEY.encode(), f"issuing-system:{system_id}".encode(),
                    hashlib.sha256).hexdigest()


def verify(call: dict, secret: str) -> dict:
    """What an issuer does with a call: check timestamp and signature, then read the body."""
    timestamp = call["headers"]["X-Keys-Timestamp"]
    assert abs(time.time() - int(timestamp)) < 300
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + call["body"], hashlib.sha256).hexdigest()
    scheme, _, signature = call["headers"]["X-Keys-Signature"].partition("=")
    assert scheme == "v1"
    assert hmac.compare_digest(signature, expected)
    return json.loads(call["body"])


def webhook_key(url: str, **kwargs):
    system = factories.IssuingSystemFactory(name="Partner gateway", kind=IssuingSystemKind.WEBHOOK, revoke_url=url)
    return factories.ApiKeyFactory(issuing_system=system, **kwargs)


@pytest.fixture
def fast_backoff(settings):
    settings.REVOCATION_BACKOFF_SECONDS = 0.05
    settings.REVOCATION_MAX_ATTEMPTS = 5
    settings.REVOCATION_TIMEOUT_SECONDS = 5


def due_now(request: RevocationRequest) -> None:
    RevocationRequest.objects.filter(pk=request.pk).update(next_attempt_at=timezone.now() - datetime.timedelta(seconds=5))


# Opening a request


def test_revoking_a_webhook_key_opens_a_request_and_enqueues_delivery_on_commit(
    admin_user, issuer, django_capture_on_commit_callbacks
):
    key = webhook_key(issuer.url)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        lifecycle.revoke_key(key, actor=admin_user, reason_code=RevocationReason.EXPOSED, reason="found in a repo",
                             emergency=True)
    key.refresh_from_db()
    assert key.status == KeyStatus.REVOKED and key.revocation_state == RevocationState.PENDING
    request = RevocationRequest.objects.get(key=key)
    assert (request.status, request.emergency, request.requested_by) == (RevocationRequestStatus.PENDING, True, admin_user)
    assert request.history.get().history_user == admin_user
    assert len(callbacks) == 1 and not issuer.calls


def test_revoking_a_manual_key_awaits_an_admin(admin_user, key, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        lifecycle.revoke_key(key, actor=admin_user, reason_code=RevocationReason.MANUAL)
    request = RevocationRequest.objects.get(key=key)
    assert request.status == RevocationRequestStatus.AWAITING_CONFIRMATION
    assert not callbacks
    key.refresh_from_db()
    assert key.revocation_state == RevocationState.PENDING


# Delivery


def test_delivery_signs_the_documented_body_and_confirms_the_key(admin_user, issuer, django_capture_on_commit_callbacks):
    key = webhook_key(issuer.url, label="Screening export", prefix="sk_live_4f2a")
    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.revoke_key(key, actor=admin_user, reason_code=RevocationReason.CONTRACT_ENDED, reason="contract over")
    request = RevocationRequest.objects.get(key=key)
    [call] = issuer.calls
    body = verify(call, issuer_secret(key.issuing_system_id))
    assert body == {
        "event": "key.revoke",
        "request_id": request.pk,
        "key_id": key.pk,
        "prefix": "sk_live_4f2a",
        "label": "Screening export",
        "customer": key.workflow.customer.external_id,
        "workflow": key.workflow.name,
        "reason_code": "contract_ended",
        "reason": "contract over",
        "requested_at": request.requested_at.isoformat(),
        "emergency": False,
    }
    assert call["headers"]["Idempotency-Key"] == f"revocation-{request.pk}"
    assert call["headers"]["Content-Type"] == "application/json"
    assert call["path"] == "/revoke"

    request.refresh_from_db()
    assert request.status == RevocationRequestStatus.ACKNOWLEDGED and request.issuer_reference == "ISS-42"
    [attempt] = request.attempt_log.all()
    assert (attempt.number, attempt.status_code, attempt.succeeded, attempt.error) == (1, 200, True, "")
    key.refresh_from_db()
    assert key.revocation_state == RevocationState.CONFIRMED
    [event] = key.events.filter(action=LifecycleAction.CONFIRM_REVOCATION)
    assert event.actor == system_user() and "acknowledged" in event.reason

    # Acknowledged: never sent again, whoever asks.
    assert revocation.deliver(request.pk).status == RevocationRequestStatus.ACKNOWLEDGED
    due_now(request)
    tasks.retry_due_revocations()
    assert len(issuer.calls) == 1
    assert key.events.filter(action=LifecycleAction.CONFIRM_REVOCATION).count() == 1


def test_failures_back_off_exponentially_and_give_up_after_the_maximum(admin_user, issuer, fast_backoff, settings):
    settings.REVOCATION_BACKOFF_SECONDS = 60
    issuer.statuses = [503] * 10
    key = webhook_key(issuer.url)
    lifecycle.revoke_key(key, actor=admin_user, reason_code=RevocationReason.MANUAL)
    request = RevocationRequest.objects.get(key=key)

    before = timezone.now()
    outcome = revocation.deliver(request.pk)
    request.refresh_from_db()
    assert outcome.status == RevocationRequestStatus.RETRYING and outcome.retry_in == 60
    assert request.attempts == 1 and "HTTP 503" in request.last_error
    assert before + datetime.timedelta(seconds=59) < request.next_attempt_at
    # Not due yet: a second delivery sends nothing.
    assert revocation.deliver(request.pk).status == "not_due"
    assert len(issuer.calls) == 1

    waits = []
    for _ in range(4):
        due_now(request)
        waits.append(revocation.deliver(request.pk).retry_in)
    assert waits == [120, 240, 480, None]
    request.refresh_from_db()
    assert request.status == RevocationRequestStatus.GAVE_UP and request.next_attempt_at is None
    assert list(request.attempt_log.values_list("status_code", flat=True)) == [503] * 5
    assert len(issuer.calls) == 5
    due_now(request)
    assert tasks.retry_due_revocations() == []
    key.refresh_from_db()
    assert key.revocation_state == RevocationState.PENDING


def test_unreachable_issuer_and_non_http_urls_are_recorded_as_failed_attempts(admin_user, fast_backoff):
    for url in ("http://127.0.0.1:9/revoke", "ftp://127.0.0.1/revoke", ""):
        key = webhook_key(url)
        key.issuing_system.revoke_url = url
        key.issuing_system.save()
        lifecycle.revoke_key(key, actor=admin_user, reason_code=RevocationReason.MANUAL)
        request = RevocationRequest.objects.get(key=key)
        assert revocation.deliver(request.pk).status == RevocationRequestStatus.RETRYING
        [attempt] = request.attempt_log.all()
        assert attempt.status_code is None and attempt.error and not attempt.succeeded


def test_a_missing_signing_key_sends_nothing(admin_user, issuer, settings):
    settings.WEBHOOK_SIGNING_KEY = ""
    key = webhook_key(issuer.url)
    lifecycle.revoke_key(key, actor=admin_user, reason_code=RevocationReason.MANUAL)
    request = RevocationRequest.objects.get(key=key)
    revocation.deliver(request.pk)
    assert not issuer.calls
    assert "WEBHOOK_SIGNING_KEY" in request.attempt_log.get().error


def test_a_redirect_is_not_an_acknowledgement(admin_user, issuer):
    issuer.statuses = [307]
    key = webhook_key(issuer.url)
    lifecycle.revoke_key(key, actor=admin_user, reason_code=RevocationReason.MANUAL)
    request = RevocationRequest.objects.get(key=key)
    assert revocation.deliver(request.pk).status == RevocationRequestStatus.RETRYING
    assert request.attempt_log.get().status_code == 307


# The real worker: three failures, then an acknowledgement


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_worker_retries_until_the_issuer_acknowledges_and_sends_once_after(fast_backoff):
    issuer = Issuer(statuses=[500, 500, 500])
    try:
        admin = factories.AdminFactory(username="dave")
        key = webhook_key(issuer.url)
        # While the worker runs, the test watches the issuer, not the database: a local in-memory
        # SQLite database refuses reads of a table another thread is writing.
        with running_worker():
            lifecycle.revoke_key(key, actor=admin, reason_code=RevocationReason.EXPOSED, reason="leaked", emergency=True)
            wait_for(lambda: any(call["status"] == 200 for call in issuer.calls))
            request_id = json.loads(issuer.calls[-1]["body"])["request_id"]
            # Whatever runs afterwards (the safety net, a duplicate task) sends nothing more.
            tasks.deliver_revocation.delay(request_id)
            tasks.retry_due_revocations.delay()
            time.sleep(1.5)
        request = RevocationRequest.objects.get(key=key)
        assert request.pk == request_id
        assert request.status == RevocationRequestStatus.ACKNOWLEDGED
        secret = issuer_secret(key.issuing_system_id)
        assert [call["status"] for call in issuer.calls] == [500, 500, 500, 200]
        bodies = {call["body"] for call in issuer.calls}
        assert len(bodies) == 1
        assert verify(issuer.calls[-1], secret)["emergency"] is True
        for call in issuer.calls:
            verify(call, secret)
            assert call["headers"]["Idempotency-Key"] == f"revocation-{request.pk}"
        attempts = list(RevocationAttempt.objects.filter(request=request).order_by("number"))
        assert [(a.number, a.status_code, a.succeeded) for a in attempts] == [
            (1, 500, False), (2, 500, False), (3, 500, False), (4, 200, True)
        ]
        request.refresh_from_db()
        assert request.attempts == 4 and request.acknowledged_at
        key.refresh_from_db()
        assert key.revocation_state == RevocationState.CONFIRMED
        assert key.events.filter(action=LifecycleAction.CONFIRM_REVOCATION).count() == 1
    finally:
        issuer.close()


# A worker that dies mid-call


class WorkerKilled(BaseException):
    """Stands for the process dying: nothing after it in the task runs."""


def test_a_delivery_whose_worker_died_is_picked_up_by_the_safety_net(admin_user, issuer, fast_backoff, monkeypatch):
    key = webhook_key(issuer.url)
    lifecycle.revoke_key(key, actor=admin_user, reason_code=RevocationReason.MANUAL)
    request = RevocationRequest.objects.get(key=key)

    def die(_request):
        raise WorkerKilled

    with monkeypatch.context() as patched:
        patched.setattr(revocation, "_post", die)
        with pytest.raises(WorkerKilled):
            tasks.deliver_revocation(request.pk)
    request.refresh_from_db()
    assert request.status == RevocationRequestStatus.PENDING and request.attempts == 1
    [lost] = request.attempt_log.all()
    assert lost.status_code is None and not lost.succeeded

    # The broker redelivers the unacknowledged task at once: the claim still holds, nothing is sent.
    assert tasks.deliver_revocation(request.pk) == "not_due"
    assert tasks.retry_due_revocations() == []
    assert not issuer.calls

    # Once the claim has lapsed, the periodic safety net sends it, once.
    due_now(request)
    assert tasks.retry_due_revocations() == [request.pk]
    assert tasks.retry_due_revocations() == []
    assert len(issuer.calls) == 1
    verify(issuer.calls[0], issuer_secret(key.issuing_system_id))
    request.refresh_from_db()
    assert request.status == RevocationRequestStatus.ACKNOWLEDGED
    first, second = request.attempt_log.order_by("number")
    assert first.error == revocation.NO_RESULT
    assert (second.number, second.status_code, second.succeeded) == (2, 200, True)


def test_a_request_whose_enqueue_was_lost_is_sent_by_the_safety_net(admin_user, issuer):
    key = webhook_key(issuer.url)
    lifecycle.revoke_key(key, actor=admin_user, reason_code=RevocationReason.MANUAL)  # on_commit never runs here
    request = RevocationRequest.objects.get(key=key)
    assert tasks.retry_due_revocations() == []  # just opened: its own task is on the way
    RevocationRequest.objects.filter(pk=request.pk).update(requested_at=timezone.now() - datetime.timedelta(minutes=10))
    assert tasks.retry_due_revocations() == [request.pk]
    assert len(issuer.calls) == 1
    request.refresh_from_db()
    assert request.status == RevocationRequestStatus.ACKNOWLEDGED


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_deliveries_call_the_issuer_once():
    issuer = Issuer()
    issuer.delay = 0.3
    try:
        admin = factories.AdminFactory(username="dave")
        key = webhook_key(issuer.url, status=KeyStatus.REVOKED)
        # Opened directly: revoke_key would deliver it at once (on commit, eagerly).
        request = RevocationRequest.objects.create(key=key, issuing_system=key.issuing_system, reason_code="manual",
                                                   reason="racing workers", requested_by=admin)
        system_user()
        barrier = threading.Barrier(4)
        outcomes = []

        def run():
            try:
                barrier.wait()
                outcomes.append(revocation.deliver(request.pk).status)
            finally:
                connection.close()

        threads = [threading.Thread(target=run) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(outcomes).count(RevocationRequestStatus.ACKNOWLEDGED) == 1
        assert RevocationRequest.objects.get(pk=request.pk).status == RevocationRequestStatus.ACKNOWLEDGED
        assert len(issuer.calls) == 1
        assert RevocationAttempt.objects.filter(request=request).count() == 1
    finally:
        issuer.close()


# Manual confirmation


def confirm_url(request: RevocationRequest) -> str:
    return reverse("keys:revocation-confirm", args=[request.pk])


@pytest.fixture
def manual_request(admin_user, key):
    lifecycle.revoke_key(key, actor=admin_user, reason_code=RevocationReason.RELEASED, reason="no longer needed")
    return RevocationRequest.objects.get(key=key)


def test_admin_confirms_a_manual_revocation_once(client, admin_user, manual_request):
    client.force_login(admin_user)
    response = client.get(reverse("keys:revocations"))
    assert response.status_code == 200
    assert f'action="{confirm_url(manual_request)}"' in response.text

    response = client.post(confirm_url(manual_request), {"reference": "CHG-1234"})
    assert response.status_code == 302
    manual_request.refresh_from_db()
    assert manual_request.status == RevocationRequestStatus.CONFIRMED
    assert (manual_request.confirmed_by, manual_request.issuer_reference) == (admin_user, "CHG-1234")
    assert manual_request.history.latest().history_user == admin_user
    key = manual_request.key
    key.refresh_from_db()
    assert key.revocation_state == RevocationState.CONFIRMED
    [event] = key.events.filter(action=LifecycleAction.CONFIRM_REVOCATION)
    assert event.actor == admin_user and event.details["reference"] == "CHG-1234"

    client.post(confirm_url(manual_request), {"reference": "again"})
    manual_request.refresh_from_db()
    assert manual_request.issuer_reference == "CHG-1234"
    assert key.events.filter(action=LifecycleAction.CONFIRM_REVOCATION).count() == 1
    # Confirmed requests leave the default (open) list.
    assert f'id="revocation-{manual_request.pk}"' not in client.get(reverse("keys:revocations")).text


def test_confirmation_needs_a_reference(client, admin_user, manual_request):
    client.force_login(admin_user)
    client.post(confirm_url(manual_request), {"reference": "  "})
    manual_request.refresh_from_db()
    assert manual_request.status == RevocationRequestStatus.AWAITING_CONFIRMATION


def test_a_webhook_revocation_that_gave_up_can_be_confirmed_by_hand(admin_user, issuer, settings):
    settings.REVOCATION_MAX_ATTEMPTS = 1
    issuer.statuses = [500]
    key = webhook_key(issuer.url)
    lifecycle.revoke_key(key, actor=admin_user, reason_code=RevocationReason.MANUAL)
    request = RevocationRequest.objects.get(key=key)
    assert revocation.deliver(request.pk).status == RevocationRequestStatus.GAVE_UP
    revocation.confirm_revocation(request, actor=admin_user, reference="phoned the partner")
    key.refresh_from_db()
    assert key.revocation_state == RevocationState.CONFIRMED


def test_a_pending_webhook_revocation_cannot_be_confirmed_by_hand(admin_user, issuer):
    key = webhook_key(issuer.url)
    lifecycle.revoke_key(key, actor=admin_user, reason_code=RevocationReason.MANUAL)
    with pytest.raises(revocation.RevocationError):
        revocation.confirm_revocation(RevocationRequest.objects.get(key=key), actor=admin_user, reference="x")


def test_owner_cannot_see_or_confirm(client, owner, manual_request):
    client.force_login(owner)
    assert client.get(reverse("keys:revocations")).status_code == 403
    assert client.post(confirm_url(manual_request), {"reference": "mine"}).status_code == 403
    manual_request.refresh_from_db()
    assert manual_request.status == RevocationRequestStatus.AWAITING_CONFIRMATION


def test_compliance_reads_but_cannot_confirm(client, compliance_user, manual_request):
    client.force_login(compliance_user)
    response = client.get(reverse("keys:revocations"))
    assert response.status_code == 200
    assert f'id="revocation-{manual_request.pk}"' in response.text
    assert confirm_url(manual_request) not in response.text
    assert client.post(confirm_url(manual_request), {"reference": "x"}).status_code == 403
    manual_request.refresh_from_db()
    assert manual_request.status == RevocationRequestStatus.AWAITING_CONFIRMATION


def test_anonymous_is_sent_to_login(client, manual_request):
    for response in (client.get(reverse("keys:revocations")), client.post(confirm_url(manual_request))):
        assert response.status_code == 302 and response.url.startswith(reverse("login"))


def test_confirm_needs_post_and_an_existing_request(client, admin_user, manual_request):
    client.force_login(admin_user)
    assert client.get(confirm_url(manual_request)).status_code == 405
    assert client.post(reverse("keys:revocation-confirm", args=[99999]), {"reference": "x"}).status_code == 404


def test_list_filters_and_paginates_in_bounded_queries(client, admin_user, django_assert_max_num_queries):
    for _ in range(30):
        lifecycle.revoke_key(factories.ApiKeyFactory(), actor=admin_user, reason_code=RevocationReason.MANUAL)
    emergency = factories.ApiKeyFactory()
    lifecycle.revoke_key(emergency, actor=admin_user, reason_code=RevocationReason.EXPOSED, emergency=True)
    client.force_login(admin_user)
    with django_assert_max_num_queries(12):
        response = client.get(reverse("keys:revocations"))
    assert response.status_code == 200
    assert response.text.count('<tr id="revocation-') == 25
    assert 'rel="next"' in response.text and "cursor=" in response.text
    response = client.get(reverse("keys:revocations"), {"emergency": "true"})
    assert response.text.count('<tr id="revocation-') == 1
    response = client.get(reverse("keys:revocations"), {"state": RevocationRequestStatus.CONFIRMED})
    assert response.text.count('<tr id="revocation-') == 0
    next_page = client.get(reverse("keys:revocations")).context["table"].page.next_url
    assert client.get(next_page).text.count('<tr id="revocation-') == 6


def test_key_page_says_the_revocation_is_not_yet_confirmed(client, admin_user, owner, manual_request):
    client.force_login(owner)
    page = client.get(reverse("keys:detail", args=[manual_request.key_id])).text
    assert "Revocation not yet confirmed at the issuer" in page
    revocation.confirm_revocation(manual_request, actor=admin_user, reference="CHG-9")
    page = client.get(reverse("keys:detail", args=[manual_request.key_id])).text
    assert "Revocation not yet confirmed at the issuer" not in page
    assert "Confirmed at the issuer" in page
