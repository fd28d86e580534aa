"""Operations endpoints: /health/ (status to anyone, which part failed only to allowed addresses), /metrics
(allowed addresses or the token; the portal's own gauges) and the request log lines (JSON in production).

The test client's REMOTE_ADDR is 127.0.0.1, an allowed address by default: the refusals are asked from
OUTSIDE. The last tests run against the real services (PostgreSQL, Redis and a Celery worker) where CI has them.
"""

import concurrent.futures
import datetime
import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.utils import timezone
from prometheus_client import REGISTRY

from attestations.models import EvidenceExport
from attestations.services import campaigns
from core.request_log import JsonFormatter, RequestContextFilter
from keys.choices import RevocationReason
from keys.services import lifecycle
from keys.services.usage import ingest_usage
from ops.heartbeat import WORKER, record_heartbeat
from ops.models import WorkerHeartbeat
from tests import factories
from tests.postgres import env_flag, postgres_required, require_postgres

ROOT = Path(__file__).resolve().parents[2]
OUTSIDE = "203.0.113.7"
CLOSED_PORT = "redis://127.0.0.1:9/0"
JSON = {"HTTP_ACCEPT": "application/json"}


@pytest.fixture(autouse=True)
def storage(media_root):
    """The storage check writes and deletes a file in the test's own media folder."""


@pytest.fixture
def broken_cache(settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CLOSED_PORT}}


@pytest.fixture
def with_worker(settings):
    """A real worker is configured (tasks are not run in-process): the broker and heartbeat are checked."""
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.CELERY_BROKER_URL = "memory://localhost/"


def test_health_answers_anyone_without_a_session(client, db):
    response = client.get("/health/")
    assert response.status_code == 200
    assert response.content.decode().splitlines() == [
        "ok", "database: OK", "cache: OK", "storage: OK", "broker: in-process", "worker: in-process"]
    assert "no-cache" in response["Cache-Control"]
    assert "sessionid" not in response.cookies

    response = client.get("/health/", REMOTE_ADDR=OUTSIDE, **JSON)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_health_names_the_failing_part_only_to_allowed_addresses(client, db, broken_cache):
    response = client.get("/health/", REMOTE_ADDR=OUTSIDE, **JSON)
    assert response.status_code == 500
    assert response.json() == {"status": "error"}
    text = client.get("/health/", REMOTE_ADDR=OUTSIDE)
    assert text.status_code == 500 and text.content == b"error\n"

    response = client.get("/health/", **JSON)
    assert response.status_code == 500
    body = response.json()
    assert body["status"] == "error"
    assert body["checks"]["database"] == "OK"
    assert body["checks"]["cache"].startswith("Unexpected Result")


def test_health_allowed_addresses_are_a_setting(client, db, broken_cache, settings):
    settings.HEALTH_ALLOWED_IPS = ["203.0.113.0/24"]
    assert "checks" in client.get("/health/", REMOTE_ADDR=OUTSIDE, **JSON).json()
    assert "checks" not in client.get("/health/", **JSON).json()


def test_an_unreachable_broker_fails_the_health_check(client, db, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.CELERY_BROKER_URL = CLOSED_PORT
    record_heartbeat()
    response = client.get("/health/", **JSON)
    assert response.status_code == 500
    checks = response.json()["checks"]
    assert checks["broker"].startswith("Unavailable: broker unreachable")
    assert "127.0.0.1:9" not in checks["broker"]
    assert checks["worker"] == "OK"


def test_the_worker_heartbeat_must_be_recent(client, db, with_worker, settings):
    response = client.get("/health/", **JSON)
    assert response.status_code == 500
    assert "no worker heartbeat" in response.json()["checks"]["worker"]

    record_heartbeat()
    response = client.get("/health/", **JSON)
    assert response.status_code == 200, response.content
    assert response.json()["checks"] == {
        "database": "OK", "cache": "OK", "storage": "OK", "broker": "OK", "worker": "OK"}

    WorkerHeartbeat.objects.filter(name=WORKER).update(beat_at=timezone.now() - datetime.timedelta(minutes=10))
    settings.WORKER_HEARTBEAT_MAX_AGE = 300
    response = client.get("/health/", **JSON)
    assert response.status_code == 500
    assert response.json()["checks"]["worker"].startswith("Unavailable: last worker heartbeat 6")


def test_the_heartbeat_task_records_the_time(db):
    from ops.tasks import record_heartbeat as task

    task.delay()
    assert timezone.now() - WorkerHeartbeat.objects.get(name=WORKER).beat_at < datetime.timedelta(seconds=5)


def test_metrics_are_refused_to_other_addresses_without_the_token(client, db, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics", REMOTE_ADDR=OUTSIDE).status_code == 403
    assert client.get("/metrics", REMOTE_ADDR=OUTSIDE, HTTP_AUTHORIZATION="Bearer ").status_code == 403

    settings.METRICS_TOKEN = "scrape-token-0123456789"
    assert client.get("/metrics", REMOTE_ADDR=OUTSIDE).status_code == 403
    assert client.get("/metrics", REMOTE_ADDR=OUTSIDE, HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR=OUTSIDE,
                      HTTP_AUTHORIZATION="Token scrape-token-0123456789").status_code == 403
    response = client.get("/metrics", REMOTE_ADDR=OUTSIDE, HTTP_AUTHORIZATION="Bearer scrape-token-0123456789")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")

    assert client.get("/metrics").status_code == 200
    settings.METRICS_ALLOWED_IPS = ["10.0.0.0/8"]
    assert client.get("/metrics").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="10.2.3.4").status_code == 200


def test_metrics_behind_a_trusted_proxy_use_the_forwarded_address(client, db, settings):
    settings.TRUST_X_FORWARDED_FOR = True
    assert client.get("/metrics", HTTP_X_FORWARDED_FOR=OUTSIDE).status_code == 403
    assert client.get("/metrics", REMOTE_ADDR=OUTSIDE, HTTP_X_FORWARDED_FOR="127.0.0.1").status_code == 200


def sample(text: str, name: str, **labels) -> float | None:
    wanted = name + ("{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else "")
    for line in text.splitlines():
        metric, _, value = line.rpartition(" ")
        if metric == wanted:
            return float(value)
    return None


def test_metrics_carry_the_portals_gauges(client, key, other_key, compliance_user, admin_user,
                                          django_assert_max_num_queries):
    campaign = campaigns.create_campaign(actor=compliance_user, name="2026-Q4")
    campaigns.launch_campaign(campaign, actor=compliance_user)
    late = campaigns.create_campaign(actor=compliance_user, name="Late \"one\"", customers=[])
    doomed = factories.ApiKeyFactory()
    campaigns.launch_campaign(late, actor=compliance_user)
    late.__class__.objects.filter(pk=late.pk).update(due_on=timezone.localdate() - datetime.timedelta(days=1))
    lifecycle.revoke_key(doomed, actor=admin_user, reason_code=RevocationReason.MANUAL, reason="Metrics test.")
    now = timezone.now()
    EvidenceExport.objects.create(kind=EvidenceExport.Kind.KEY, key=key, requested_by=compliance_user,
                                  status=EvidenceExport.Status.DONE, requested_at=now - datetime.timedelta(seconds=42),
                                  finished_at=now)

    with django_assert_max_num_queries(3):
        response = client.get("/metrics")
    assert response.status_code == 200
    text = response.content.decode()
    pending = sample(text, "portal_campaign_items_pending", campaign_id=campaign.pk, campaign="2026-Q4")
    assert pending == campaign.items.filter(status="pending").count() > 0
    assert sample(text, "portal_campaign_items_overdue", campaign_id=campaign.pk, campaign="2026-Q4") == 0
    late_pending = late.items.filter(status="pending").count()
    assert sample(text, "portal_campaign_items_overdue", campaign_id=late.pk, campaign='Late \\"one\\"') == late_pending
    assert sum(sample(text, "portal_revocation_requests_open", status=s) or 0
               for s in ("pending", "retrying", "awaiting_confirmation", "gave_up")) == 1
    assert sample(text, "portal_evidence_export_duration_seconds_count") == 1
    assert sample(text, "portal_evidence_export_duration_seconds_sum") == pytest.approx(42)
    assert sample(text, "portal_evidence_export_duration_seconds_bucket", le="60.0") == 1
    assert sample(text, "portal_evidence_export_duration_seconds_bucket", le="30.0") == 0
    assert "django_http_requests_total_by_method_total" in text or "django_http_requests_before_middlewares_total" in text


def test_usage_ingest_is_counted_for_metrics(client, key):
    def accepted():
        return REGISTRY.get_sample_value("portal_usage_events_total", {"outcome": "accepted"}) or 0

    before = accepted()
    at = timezone.now().isoformat()
    ingest_usage([{"id": "m1", "key": key.pk, "at": at}, {"id": "m2", "key": key.pk, "at": at},
                  {"id": "m1", "key": key.pk, "at": at}, {"id": "m3", "key": 0, "at": at}])
    assert accepted() - before == 2
    text = client.get("/metrics").content.decode()
    assert sample(text, "portal_usage_events_total", outcome="accepted") == accepted()
    assert sample(text, "portal_usage_events_total", outcome="rejected") >= 1


@pytest.fixture
def json_log():
    """The console handler of production: JSON lines with the request context."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestContextFilter())
    logger = logging.getLogger("portal")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(level)


def lines(stream) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_request_logs_one_json_line_with_its_id_user_and_outcome(client, owner, json_log):
    client.force_login(owner)
    json_log.truncate(0)
    json_log.seek(0)
    response = client.get("/keys/", HTTP_X_REQUEST_ID="lb-7f3a9c2e-0001")
    assert response.status_code == 200
    assert response["X-Request-ID"] == "lb-7f3a9c2e-0001"
    [entry] = [e for e in lines(json_log) if e["logger"] == "portal.request"]
    assert entry["request_id"] == "lb-7f3a9c2e-0001"
    assert entry["user"] == "alice"
    assert entry["outcome"] == 200
    assert entry["message"] == "GET /keys/ 200"
    assert entry["level"] == "INFO"
    assert datetime.datetime.fromisoformat(entry["time"]).tzinfo is not None


def test_an_insane_request_id_is_replaced(client, db, json_log):
    response = client.get("/health/", HTTP_X_REQUEST_ID="x\r\nSet-Cookie: a=b")
    given = response["X-Request-ID"]
    assert len(given) == 32 and given.isalnum()
    [entry] = [e for e in lines(json_log) if e["logger"] == "portal.request"]
    assert entry["request_id"] == given and entry["user"] == "-" and entry["outcome"] == 200


def test_lines_written_during_a_request_carry_its_context(client, owner, json_log):
    from core.audit import record_access

    client.force_login(owner)
    response = client.get("/", HTTP_X_REQUEST_ID="trace-00000042")
    assert response.status_code == 200
    # An access audit line (portal.access) written outside a request has no context; within one it has.
    record_access(None, "login", "outside", user=owner)
    entries = [e for e in lines(json_log) if e["logger"] == "portal.access"]
    assert entries[-1]["request_id"] == "-"
    assert [e["user"] for e in lines(json_log) if e["request_id"] == "trace-00000042"] == ["alice"]


def test_production_logs_are_json_lines(tmp_path):
    """The settings choose JSON without DEBUG (LOG_FORMAT=json here, on a local database)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CELERY_", "LOG_"))}
    env.update(DJANGO_SETTINGS_MODULE="portal.settings", LOG_FORMAT="json", DATABASE_URL=f"sqlite:///{tmp_path / 'db'}",
               MEDIA_ROOT=str(tmp_path / "media"))
    code = ("import django; django.setup(); from django.test import Client; "
            "print(Client().get('/health/', HTTP_X_REQUEST_ID='probe-12345678').status_code)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    entries = [json.loads(line) for line in result.stderr.splitlines()]
    [request] = [e for e in entries if e["logger"] == "portal.request"]
    assert request["request_id"] == "probe-12345678" and request["outcome"] == 200


def real_services() -> str:
    """The Redis broker of CI (TEST_CELERY_BROKER_URL) on PostgreSQL; skipped locally, required in CI."""
    require_postgres()
    broker = os.environ.get("TEST_CELERY_BROKER_URL", "")
    if not broker.startswith("redis://"):
        if postgres_required() or env_flag("CI"):
            pytest.fail("TEST_CELERY_BROKER_URL (Redis) must be set where PostgreSQL is required")
        pytest.skip("needs TEST_CELERY_BROKER_URL (Redis)")
    return broker


class LoopFreeClient:
    """The test client's GET run in a thread of its own. /health/ is an async view; after the browser tests
    Playwright's sync API leaves an event loop running in the test thread, where Django cannot run an async
    view from WSGI (as it can in a server's worker thread). Needs a transactional test: the thread has its own
    database connection."""

    def __init__(self, client):
        self.client = client

    def get(self, *args, **kwargs):
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(self.client.get, *args, **kwargs).result()


@pytest.mark.postgres
@pytest.mark.worker
def test_health_against_the_real_services(transactional_db, client, settings, tmp_path):
    client = LoopFreeClient(client)
    broker = real_services()
    from ops.tasks import record_heartbeat as heartbeat_task
    from tests.worker import running_worker, wait_for

    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.CELERY_BROKER_URL = broker
    with running_worker():
        heartbeat_task.delay()
        wait_for(lambda: WorkerHeartbeat.objects.filter(name=WORKER).exists())
    response = client.get("/health/", **JSON)
    assert response.status_code == 200, response.content
    assert response.json()["checks"] == {
        "database": "OK", "cache": "OK", "storage": "OK", "broker": "OK", "worker": "OK"}

    settings.CELERY_BROKER_URL = CLOSED_PORT
    response = client.get("/health/", **JSON)
    assert response.status_code == 500
    assert response.json()["checks"]["broker"].startswith("Unavailable: broker unreachable")
    assert client.get("/health/", REMOTE_ADDR=OUTSIDE, **JSON).json() == {"status": "error"}

    # The database unreachable: another process, pointed at a closed port (the test database is left alone).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CELERY_"))}
    env.update(DJANGO_SETTINGS_MODULE="portal.settings", DATABASE_URL="postgres://postgres@127.0.0.1:9/keys_portal",
               MEDIA_ROOT=str(tmp_path / "media"), LOG_LEVEL="CRITICAL")
    code = ("import django, json; django.setup(); from django.test import Client; "
            "r = Client().get('/health/', HTTP_ACCEPT='application/json'); print(r.status_code, r.content.decode())")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    status, _, body = result.stdout.strip().splitlines()[-1].partition(" ")
    assert status == "500"
    checks = json.loads(body)["checks"]
    assert checks["database"].startswith("Unavailable"), checks
    assert checks["cache"] == "OK" and checks["storage"] == "OK"
