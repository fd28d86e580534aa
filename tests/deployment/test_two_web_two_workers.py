"""Two web processes and two Celery workers on one PostgreSQL database, one Redis broker and one Redis cache,
as two hosts would run them: decisions from several clients spread over both web processes, a campaign
close racing them, and an evidence export rendered by whichever worker is free, all at once. Nothing is
lost or done twice.

- web: two gunicorn processes (``tests.deployment.web``) on two loopback ports, sharing the test database,
  the Redis cache (sessions: Django's ``cached_db`` engine), the secret key, the export storage
  (``MEDIA_ROOT``) and the evidence signing key;
- workers: two ``celery worker`` processes (``tests.faults.harness.WorkerProcess``) on the test's own queue;
- clients: each owner signs in on one web process and decides through the other, some decisions sent to
  both at once; compliance closes the campaign through the API while a worker runs the close task too,
  and requests a campaign report on one web process, follows it on the other and downloads it.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import secrets
import subprocess
import sys
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.conf import settings
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.contrib.sessions.backends.cached_db import SessionStore
from django.core.cache import cache
from pypdf import PdfReader

from attestations import tasks
from attestations.choices import CampaignStatus, DefaultAction, ItemStatus
from attestations.models import AttestationItem, Campaign, EvidenceExport
from attestations.services import campaigns
from core.chain import verify_chain
from keys.choices import LifecycleAction
from keys.models import LifecycleEvent
from tests import factories
from tests.attestations.evidence_helpers import decided_campaign
from tests.faults.harness import ROOT, WorkerProcess, broker_queue, database_url, wait_until
from tests.postgres import postgres_required, requires_postgres

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

HOST = "127.0.0.1"
PASSWORD = "two-hosts-" + secrets.token_hex(6)
OWNERS = 6
KEYS_PER_OWNER = 8
CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class WebProcess:
    """One gunicorn process of the portal on a loopback port (its own process group, stopped at the end)."""

    def __init__(self, env: dict[str, str], log_path):
        self.port = _free_port()
        self.url = f"http://{HOST}:{self.port}"
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.log_path = log_path
        self.process = subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "gunicorn") if (ROOT / ".venv" / "bin" / "gunicorn").exists()
             else os.path.join(os.path.dirname(sys.executable), "gunicorn"),
             "tests.deployment.web:application", "-b", f"{HOST}:{self.port}", "-w", "1", "--threads", "8",
             "--worker-class", "gthread", "--timeout", "120"],
            cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"gunicorn exited:\n{self.log_path.read_text(errors='replace')[-3000:]}")
        try:
            return requests.get(f"{self.url}/login/", timeout=5).status_code == 200
        except requests.ConnectionError:
            return False

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait(10)
        self._log.close()


def _redis_cache_url() -> str:
    location = settings.CACHES["default"].get("LOCATION", "")
    if "redis" not in settings.CACHES["default"]["BACKEND"].lower() or not str(location).startswith("redis://"):
        message = "needs the Redis cache shared by the web processes (CACHE_URL=redis://127.0.0.1:6379/<db>)"
        if postgres_required():
            pytest.fail(message)
        pytest.skip(message)
    return location


@pytest.fixture
def hosts(tmp_path, monkeypatch):
    """Two web processes and two workers sharing the database, the broker, the cache and the export storage."""
    cache_url = _redis_cache_url()
    media, signing = tmp_path / "media", tmp_path / "signing"
    media.mkdir()
    # The worker processes of this test keep Redis's redelivery at an hour, as in production: a long part
    # is not handed to the other worker while it still renders.
    monkeypatch.setenv("FAULT_VISIBILITY_TIMEOUT", "3600")
    for name, value in {"MEDIA_ROOT": str(media), "EVIDENCE_SIGNING_DIR": str(signing), "CACHE_URL": cache_url,
                        "SECRET_KEY": settings.SECRET_KEY, "KEY_FINGERPRINT_PEPPER": settings.KEY_FINGERPRINT_PEPPER,
                        "LOG_LEVEL": "WARNING", "EVIDENCE_SIGNING_PKCS12": "", "EVIDENCE_TSA_URL": "",
                        "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend"}.items():
        monkeypatch.setenv(name, value)
    started = []
    with broker_queue() as (broker, queue):
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "portal.settings", "DATABASE_URL": database_url(),
               "CELERY_BROKER_URL": broker, "CELERY_TASK_ALWAYS_EAGER": "false", "FAULT_QUEUE": queue,
               "CELERY_RESULT_BACKEND": "", "PYTHONUNBUFFERED": "1"}
        try:
            webs = [WebProcess(env, tmp_path / f"web-{n}.log") for n in (1, 2)]
            started += webs
            workers = [WorkerProcess(broker, queue, tmp_path / f"worker-{n}.log") for n in (1, 2)]
            started += workers
            for web in webs:
                wait_until(web.ready, 60, f"gunicorn on port {web.port}")
            yield webs, workers, media
        finally:
            for process in started:
                process.stop()


def sign_in(base_url: str, username: str) -> requests.Session:
    """Through the login form, as a browser does: the session cookie and the CSRF cookie."""
    browser = requests.Session()
    page = browser.get(f"{base_url}/login/", timeout=30)
    token = CSRF_INPUT.search(page.text).group(1)
    answer = browser.post(f"{base_url}/login/", data={"csrfmiddlewaretoken": token, "username": username,
                                                      "password": PASSWORD}, headers={"Referer": f"{base_url}/login/"},
                          allow_redirects=False, timeout=30)
    assert answer.status_code == 302 and "sessionid" in browser.cookies, (username, answer.status_code)
    return browser


def api(browser: requests.Session, method: str, url: str, body: dict | None = None) -> requests.Response:
    """The REST API with the browser's session, as the portal's pages call it (CSRF token from its cookie)."""
    return browser.request(method, url, json=body, timeout=60,
                           headers={"X-CSRFToken": browser.cookies.get("csrftoken", ""), "Accept": "application/json"})


def _user(username: str, factory=factories.OwnerFactory):
    user = factory(username=username)
    # A hash the web processes' default hashers verify (the tests' own MD5 hasher is not among them), with few
    # iterations: the sign-in upgrades it.
    user.password = PBKDF2PasswordHasher().encode(PASSWORD, PBKDF2PasswordHasher().salt(), iterations=1000)
    user.save()
    return user


@requires_postgres
def test_two_web_processes_and_two_workers_lose_nothing_and_do_nothing_twice(hosts):
    (web1, web2), workers, media = hosts
    compliance = _user("carol", factories.ComplianceFactory)
    owners = [_user(f"owner{n}") for n in range(OWNERS)]
    for owner in owners:
        for _ in range(KEYS_PER_OWNER):
            factories.ApiKeyFactory(owner=owner)
    campaign = campaigns.create_campaign(actor=compliance, name="Two hosts", default_action=DefaultAction.SUSPEND)
    campaigns.launch_campaign(campaign, actor=compliance)
    # The report exported meanwhile: another, closed campaign, every item printed.
    reported, _, _ = decided_campaign(compliance, _user("alice"), _user("bob"), keys_per_owner=12, name="Reported")
    items = {owner.username: list(campaign.items.filter(reviewer=owner).order_by("pk").values_list("pk", flat=True))
             for owner in owners}
    webs = [web1, web2]

    # Each owner signs in on one web process and works through the other; its session lives in Redis.
    sessions = {owner.username: sign_in(webs[n % 2].url, owner.username) for n, owner in enumerate(owners)}
    for n, (username, browser) in enumerate(sessions.items()):
        other = webs[(n + 1) % 2]
        inbox = browser.get(f"{other.url}/inbox/", timeout=30)
        assert inbox.status_code == 200 and username in inbox.text, (username, inbox.status_code)
        assert cache.get(SessionStore(session_key=browser.cookies["sessionid"]).cache_key), "session not in Redis"
    staff = sign_in(web2.url, "carol")

    outcomes: list[tuple[str, int, int, str]] = []  # (owner, item, status, web)
    lock = threading.Lock()
    start = threading.Barrier(OWNERS + 2)

    def decide(username: str, item: int, web) -> None:
        answer = api(sessions[username], "POST", f"{web.url}/api/v1/attestations/{item}/decide/",
                     {"decision": "confirm", "justification": f"still used by {username}", "affirm": True})
        with lock:
            outcomes.append((username, item, answer.status_code, web.url))

    def owner_client(n: int, username: str) -> None:
        start.wait(60)
        with ThreadPoolExecutor(2) as twins:
            for k, item in enumerate(items[username][: KEYS_PER_OWNER - 2]):
                if k % 3 == 0:
                    # The same decision sent to both web processes at once: exactly one is recorded.
                    list(twins.map(lambda web, item=item: decide(username, item, web), webs))
                else:
                    decide(username, item, webs[(n + k) % 2])

    closes: dict[str, object] = {}

    def close_client() -> None:
        start.wait(60)
        # Some decisions first, the rest racing the close.
        wait_until(lambda: sum(status == 200 for _, _, status, _ in outcomes) >= OWNERS, 60, "the first decisions")
        closes["task"] = tasks.close_campaign.delay(campaign.pk, compliance.pk)
        closes["api"] = api(staff, "POST", f"{web1.url}/api/v1/campaigns/{campaign.pk}/close/")

    export_answer = {}

    def export_client() -> None:
        start.wait(60)
        export_answer["created"] = api(staff, "POST", f"{web1.url}/api/v1/exports/",
                                       {"kind": "campaign", "campaign": reported.pk, "print_all_items": True})

    threads = [threading.Thread(target=owner_client, args=(n, o.username)) for n, o in enumerate(owners)]
    threads += [threading.Thread(target=close_client), threading.Thread(target=export_client)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads)

    # Nothing failed: every answer is a decision recorded (200) or refused as already decided or closed (409).
    assert outcomes and all(status in (200, 409) for _, _, status, _ in outcomes), Counter(s for _, _, s, _ in outcomes)
    assert {url for _, _, status, url in outcomes if status == 200} == {web1.url, web2.url}
    assert closes["api"].status_code == 200, closes["api"].text
    assert export_answer["created"].status_code == 202, export_answer["created"].text
    export_id = export_answer["created"].json()["id"]

    # The export, followed on the other web process until a worker finished it, then downloaded.
    def finished():
        answer = api(staff, "GET", f"{web2.url}/api/v1/exports/{export_id}/")
        return answer.json() if answer.json()["status"] in ("done", "failed") else None

    followed = wait_until(finished, 90, "the export to finish")
    assert followed["status"] == "done", followed["error"]
    download = staff.get(f"{web1.url}/api/v1/exports/{export_id}/download/", timeout=60)
    assert download.status_code == 200 and download.headers["X-Export-SHA256"] == followed["sha256"]
    assert hashlib.sha256(download.content).hexdigest() == followed["sha256"]
    wait_until(lambda: any(w.finished(closes["task"].id) for w in workers), 60, "the close task")

    # Every accepted decision recorded once; the close applied once, to the rest; nothing decided twice.
    accepted = Counter(item for _, item, status, _ in outcomes if status == 200)
    assert set(accepted.values()) == {1}, [item for item, n in accepted.items() if n > 1]
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.CLOSED
    assert Campaign.history.filter(id=campaign.pk, status=CampaignStatus.CLOSED).count() == 1
    history = AttestationItem.history.filter(campaign_id=campaign.pk)
    for item in campaign.items.all():
        decided = history.filter(id=item.pk, status=ItemStatus.CONFIRMED).count()
        expired = history.filter(id=item.pk, status=ItemStatus.EXPIRED).count()
        if item.pk in accepted:
            assert (item.status, decided, expired) == (ItemStatus.CONFIRMED, 1, 0), item.pk
        else:
            assert (item.status, decided, expired) == (ItemStatus.EXPIRED, 0, 1), item.pk
            assert LifecycleEvent.objects.filter(key_id=item.key_id, action=LifecycleAction.SUSPEND).count() == 1
    assert campaign.items.filter(status=ItemStatus.CONFIRMED).count() == len(accepted)

    # The export: done once, from parts any worker rendered, its file the one downloaded, its parts gone.
    export = EvidenceExport.objects.get(pk=export_id)
    assert export.history.filter(status=EvidenceExport.Status.DONE).count() == 1
    stored = sorted(p.name for p in media.rglob("*") if p.is_file())
    assert stored == [os.path.basename(export.file.name)], stored
    pdf = PdfReader(io.BytesIO(download.content))
    (csv_name,) = [n for n in pdf.attachments if n.endswith(".csv")]
    rows = pdf.attachments[csv_name][0].decode().splitlines()[1:]
    assert len(rows) == reported.items.count()
    text = "\n".join(page.extract_text() for page in pdf.pages)
    assert f"Page {len(pdf.pages)} of {len(pdf.pages)}" in text and "Reported" in text
    ran = {n: w.log() for n, w in enumerate(workers)}
    for name in ("render_export", "render_export_front", "render_export_chunk", "assemble_export"):
        assert sum(log.count(f"attestations.tasks.{name}[") for log in ran.values()) >= 1, name

    # Signed out on one web process, the session is gone on the other too.
    some = sessions[owners[0].username]
    assert some.post(f"{web2.url}/logout/", headers={"X-CSRFToken": some.cookies.get("csrftoken", ""),
                                                      "Referer": f"{web2.url}/"}, allow_redirects=False,
                     timeout=30).status_code == 302
    assert some.get(f"{web1.url}/inbox/", allow_redirects=False, timeout=30).status_code == 302

    result = verify_chain()
    assert result.ok, result.problems[:5]
