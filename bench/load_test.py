"""Load test: 50 owners deciding their items at once through the portal and the API, then a database audit.

    python bench/load_test.py [--duration 60] [--owners 50] [--keys-per-owner 200] [--workers 4] [--threads 4]

Self-contained, and it talks to 127.0.0.1 only:

1. creates (drops first) the PostgreSQL database ``keys_portal_load`` on 127.0.0.1:5432 (user postgres,
   trust authentication) and migrates it; seeds the owners, their keys and an active campaign with one
   item per key (default action ``keep_and_flag``), the launch notifications going to the worker;
2. starts gunicorn in production mode (``DJANGO_ENV=production``, plain http on loopback) and a real
   Celery worker on Redis (``redis://127.0.0.1:6379/14``), both as subprocesses it stops at the end; as in
   production, that Redis is also the cache, so sessions use Django's ``cached_db`` engine;
3. gives half of the owners a DRF token (they decide through ``POST /api/v1/attestations/{id}/decide/``)
   and signs the other half in through the login form (CSRF token from the page, session cookie); these
   post the inbox's decide form, half of the time as htmx does (``HX-Request``), half as a plain form;
4. runs one client thread per owner (keep-alive connections) for ``--duration`` seconds: each decides its
   own pending items (90 % confirm, 10 % release) and, on purpose, sends some again: a concurrent double
   submission (two connections at once: exactly one may be accepted) or a resend of a decided item
   (must be refused: 409 from the API, the form error from the portal). Refusals of duplicates are
   expected and not errors; 5xx, connection errors, unexpected statuses or bodies are;
5. prints decisions per second, p50/p95 latency, the error count and the CPU milliseconds per decision of
   gunicorn and of this database's PostgreSQL backends; closes the campaign through the
   Celery worker; then checks the database: every accepted decision recorded exactly once and nothing
   else decided, no item decided twice, one lifecycle event per decision, item and key history complete,
   the close applied once to every undecided item, and the history hash chain intact.

Exit status: 0 when there is no error and no mismatch; 1 otherwise; 3 when ``--min-rate`` is given and
the decision rate is below it. Logs of gunicorn and the worker, and a JSON summary, go to
bench/results/load-<timestamp>/.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))


VENV_BIN = Path(sys.executable).parent
HOST = "127.0.0.1"  # the only address this script ever talks to
PASSWORD = "load-test-" + secrets.token_hex(8)
CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load (default 60)")
    parser.add_argument("--owners", type=int, default=50, help="owners, one client each (default 50)")
    parser.add_argument("--keys-per-owner", type=int, default=200)
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes (default 4)")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker (default 4)")
    parser.add_argument("--worker-class", default="gthread", choices=["gthread", "sync"],
                        help="gunicorn worker class (default gthread; sync closes the connection after each answer)")
    parser.add_argument("--duplicate-rate", type=float, default=0.05,
                        help="share of decisions sent twice: half concurrently, half as a later resend (default 0.05)")
    parser.add_argument("--release-rate", type=float, default=0.10, help="share of releases among decisions")
    parser.add_argument("--database", default="keys_portal_load", help="database to (re)create on 127.0.0.1:5432")
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--min-rate", type=float, default=0.0, help="exit 3 when decisions/s fall below this")
    parser.add_argument("--seed", type=int, default=7, help="random seed of the clients' choices")
    args = parser.parse_args()
    if urllib.parse.urlsplit(args.broker).hostname not in (HOST, "localhost"):
        parser.error("the broker must be on 127.0.0.1")
    if args.owners < 2:
        parser.error("at least two owners (one API, one portal)")
    return args


# --------------------------------------------------------------------------------------------------
# Set-up: database, seed data, server processes
# --------------------------------------------------------------------------------------------------

def server_environment(args, database_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "DJANGO_ENV": "production",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "KEY_FINGERPRINT_PEPPER": "load-test-pepper",
        "WEBHOOK_SIGNING_KEY": "load-test-webhook-key",
        "ALLOWED_HOSTS": HOST,
        "SECURE_SSL_REDIRECT": "false",
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": args.broker,
        "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }


def create_database(name: str) -> str:
    import psycopg

    with psycopg.connect(f"postgresql://postgres@{HOST}:5432/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgres://postgres@{HOST}:5432/{name}"


def setup_django(env: dict[str, str]) -> None:
    """This process uses the same database and broker as the servers (tasks go to the real worker)."""
    for name in ("DATABASE_URL", "CELERY_BROKER_URL", "KEY_FINGERPRINT_PEPPER", "WEBHOOK_SIGNING_KEY", "EMAIL_BACKEND"):
        os.environ[name] = env[name]
    os.environ["DJANGO_SETTINGS_MODULE"] = "portal.settings"
    os.environ["LOG_LEVEL"] = "WARNING"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


@dataclass
class Seeded:
    campaign_id: int
    compliance_id: int
    owners: list[str]
    items: dict[str, list[int]]  # username -> item ids
    tokens: dict[str, str]  # username -> DRF token (API owners)


def seed(args) -> Seeded:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import Group
    from django.utils import timezone
    from rest_framework.authtoken.models import Token

    from attestations.choices import DefaultAction
    from attestations.models import AttestationItem
    from attestations.services import campaigns
    from core import roles
    from keys.choices import Environment, IssuingSystemKind, KeyStatus
    from keys.fingerprints import fingerprint_secret
    from keys.models import ApiKey, Customer, IssuingSystem, Workflow
    from portal.celery import app
    app.control.purge()  # tasks left in the broker by an earlier run refer to a dropped database
    User = get_user_model()
    hashed = make_password(PASSWORD)  # hashed once, shared: signing in is still a full PBKDF2 check
    names = [f"load-owner-{i:03d}" for i in range(args.owners)]
    User.objects.bulk_create([User(username=n, email=f"{n}@example.test", password=hashed) for n in names])
    owners = list(User.objects.filter(username__in=names).order_by("username"))
    Group.objects.get(name=roles.OWNER).user_set.add(*owners)
    compliance = User.objects.create(username="load-compliance", password=hashed)
    compliance.groups.add(Group.objects.get(name=roles.COMPLIANCE))

    system = IssuingSystem.objects.create(name="Load gateway", kind=IssuingSystemKind.MANUAL)
    customers = [Customer.objects.create(name=f"Load customer {i}", external_id=f"L{i:03d}") for i in range(10)]
    workflows = [
        Workflow.objects.create(customer=c, name=f"Load workflow {c.external_id}", purpose="load test",
                                data_scope="synthetic", environment=Environment.PRODUCTION, business_owner=owners[0])
        for c in customers
    ]
    today = timezone.localdate()
    keys = []
    for i, owner in enumerate(owners):
        for j in range(args.keys_per_owner):
            n = i * args.keys_per_owner + j
            keys.append(ApiKey(workflow=workflows[n % len(workflows)], issuing_system=system, label=f"load key {n}",
                               prefix=f"sk_ld_{n:07d}", fingerprint=fingerprint_secret(f"load-secret-{n:012d}"),
                               owner=owner, status=KeyStatus.ACTIVE, issued_on=today, scopes=["read:cases"]))
    ApiKey.objects.bulk_create(keys, batch_size=5000)

    campaign = campaigns.create_campaign(actor=compliance, name="Load test", default_action=DefaultAction.KEEP_AND_FLAG)
    campaigns.launch_campaign(campaign, actor=compliance)  # the launch notifications go to the worker

    items: dict[str, list[int]] = defaultdict(list)
    by_pk = {o.pk: o.username for o in owners}
    for pk, reviewer_id in AttestationItem.objects.filter(campaign=campaign).values_list("pk", "reviewer_id"):
        items[by_pk[reviewer_id]].append(pk)
    api_owners = names[::2]
    tokens = {owner.username: Token.objects.create(user=owner).key for owner in owners if owner.username in api_owners}
    return Seeded(campaign.pk, compliance.pk, names, dict(items), tokens)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start_process(cmd: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    log = open(log_path, "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def stop_process(proc: subprocess.Popen | None, name: str) -> None:
    """Stop a process this script started, with its children (its own process group)."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        print(f"{name} did not stop within 20 s: killing it")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


def wait_for_server(port: int, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"gunicorn exited with status {proc.returncode} (see its log)")
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=5)
            conn.request("GET", "/login/")
            status = conn.getresponse().status
            conn.close()
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"gunicorn did not answer on {HOST}:{port} within {timeout:.0f} s")


def wait_for_worker(env: dict[str, str], timeout: float = 60.0) -> None:
    from portal.celery import app

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if app.control.ping(timeout=1.0):
            return
    raise SystemExit("the Celery worker did not answer a ping within 60 s (see its log)")


# --------------------------------------------------------------------------------------------------
# HTTP clients
# --------------------------------------------------------------------------------------------------

class Session:
    """One keep-alive connection to the server, with the cookies a browser would keep (bar messages)."""

    def __init__(self, port: int, cookies: dict[str, str] | None = None):
        self.port = port
        self.cookies = dict(cookies or {})
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        headers = dict(headers or {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if self.conn is None:
            self.conn = http.client.HTTPConnection(HOST, self.port, timeout=60)
        try:
            self.conn.request(method, path, body=body, headers=headers)
            response = self.conn.getresponse()
            data = response.read()
        except Exception:
            self.conn.close()
            self.conn = None
            raise
        for header in response.headers.get_all("Set-Cookie") or []:
            jar = SimpleCookie()
            jar.load(header)
            for name, morsel in jar.items():
                if name in ("sessionid", "csrftoken"):
                    self.cookies[name] = morsel.value
        if response.getheader("Connection", "").lower() == "close":
            self.conn.close()
            self.conn = None
        return response.status, response.headers, data

    def close(self):
        if self.conn is not None:
            self.conn.close()


def sign_in(port: int, username: str) -> tuple[dict[str, str], str]:
    """Sign in through the login form as a browser does; returns the cookies and the inbox's CSRF token."""
    session = Session(port)
    status, _, body = session.request("GET", "/login/")
    token = CSRF_INPUT.search(body.decode())
    if status != 200 or not token:
        raise SystemExit(f"login page: HTTP {status} without a CSRF token")
    form = urllib.parse.urlencode({"csrfmiddlewaretoken": token.group(1), "username": username, "password": PASSWORD,
                                   "next": "/inbox/"}).encode()
    status, headers, _ = session.request("POST", "/login/", form, {
        "Content-Type": "application/x-www-form-urlencoded", "Referer": f"http://{HOST}:{port}/login/"})
    if status != 302 or "sessionid" not in session.cookies:
        raise SystemExit(f"signing in {username}: HTTP {status}, no session cookie")
    status, _, body = session.request("GET", headers.get("Location") or "/inbox/")
    token = CSRF_INPUT.search(body.decode())
    if status != 200 or not token:
        raise SystemExit(f"inbox of {username}: HTTP {status} without a CSRF token")
    session.close()
    return session.cookies, token.group(1)


@dataclass
class Result:
    owner: str
    channel: str  # api, htmx, form
    item: int
    decision: str
    kind: str  # first, double, resend
    outcome: str  # accepted, refused, error
    status: int | None
    latency: float
    detail: str = ""


@dataclass
class OwnerClient:
    username: str
    items: list[int]
    port: int
    deadline: float
    rng: random.Random
    duplicate_rate: float
    release_rate: float
    token: str | None = None
    cookies: dict[str, str] = field(default_factory=dict)
    csrf: str = ""
    results: list[Result] = field(default_factory=list)

    def run(self):
        main, spare = Session(self.port, self.cookies), Session(self.port, self.cookies)
        decided: list[tuple[int, str]] = []
        queue = list(self.items)
        self.rng.shuffle(queue)
        try:
            while queue and time.monotonic() < self.deadline:
                roll = self.rng.random()
                if decided and roll < self.duplicate_rate / 2:
                    item, decision = self.rng.choice(decided)
                    self.results.append(self.decide(main, item, decision, "resend"))
                    continue
                item = queue.pop()
                decision = "release" if self.rng.random() < self.release_rate else "confirm"
                if roll < self.duplicate_rate:
                    twin: list[Result] = []

                    def send_twin(item=item, decision=decision, twin=twin):
                        twin.append(self.decide(spare, item, decision, "double"))

                    thread = threading.Thread(target=send_twin)
                    thread.start()
                    self.results.append(self.decide(main, item, decision, "double"))
                    thread.join()
                    self.results.extend(twin)
                else:
                    self.results.append(self.decide(main, item, decision, "first"))
                decided.append((item, decision))
        finally:
            main.close()
            spare.close()

    def decide(self, session: Session, item: int, decision: str, kind: str) -> Result:
        justification = f"load test: {decision} by {self.username}"
        if self.token:
            channel = "api"
            path = f"/api/v1/attestations/{item}/decide/"
            body = json.dumps({"decision": decision, "justification": justification, "affirm": True,
                               "reason": "unused" if decision == "release" else ""}).encode()
            headers = {"Authorization": f"Token {self.token}", "Content-Type": "application/json",
                       "Accept": "application/json"}
        else:
            channel = "htmx" if self.rng.random() < 0.5 else "form"
            path = f"/items/{item}/decide/"
            fields = {"csrfmiddlewaretoken": self.csrf, "decision": decision, "justification": justification,
                      "next": "/inbox/"}
            if decision == "confirm":
                fields["affirm"] = "on"
            else:
                fields["reason"] = "unused"
            body = urllib.parse.urlencode(fields).encode()
            headers = {"Content-Type": "application/x-www-form-urlencoded",
                       "Referer": f"http://{HOST}:{self.port}/inbox/", "Origin": f"http://{HOST}:{self.port}"}
            if channel == "htmx":
                headers.update({"HX-Request": "true", "HX-Target": f"item-{item}",
                                "HX-Current-URL": f"http://{HOST}:{self.port}/inbox/"})
        started = time.perf_counter()
        try:
            status, _, data = session.request("POST", path, body, headers)
        except (OSError, http.client.HTTPException) as exc:
            return Result(self.username, channel, item, decision, kind, "error", None,
                          time.perf_counter() - started, f"{type(exc).__name__}: {exc}")
        latency = time.perf_counter() - started
        outcome, detail = classify(channel, status, data)
        return Result(self.username, channel, item, decision, kind, outcome, status, latency, detail)


def classify(channel: str, status: int, data: bytes) -> tuple[str, str]:
    """accepted / refused (already decided) / error, from what the browser or API client would see."""
    text = data.decode("utf-8", "replace")
    already = "already decided" in text
    if channel == "api":
        if status == 200:
            return "accepted", ""
        if status == 409 and already:
            return "refused", ""
    elif channel == "form":
        if status == 302:
            return "accepted", ""
        if status == 400 and already:
            return "refused", ""
    elif status == 200:  # htmx: the row comes back either way, with the outcome or the refusal
        if 'class="inbox-done"' in text:
            return "accepted", ""
        if already:
            return "refused", ""
    return "error", f"HTTP {status}: {' '.join(text[:300].split())}"


# --------------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------------

class Audit:
    def __init__(self):
        self.failures: list[str] = []

    def check(self, ok: bool, label: str, detail: str = "") -> None:
        print(f"  [{'ok' if ok else 'FAIL'}] {label}{f': {detail}' if detail and not ok else ''}")
        if not ok:
            self.failures.append(f"{label}: {detail}" if detail else label)


def audit_decisions(audit: Audit, seeded: Seeded, accepted: dict[int, str]) -> None:
    from django.db.models import Count

    from attestations.choices import ItemStatus
    from attestations.models import AttestationItem
    from keys.choices import KeyStatus, LifecycleAction, RevocationReason
    from keys.models import ApiKey, KeyRelease, LifecycleEvent, RevocationRequest

    items = AttestationItem.objects.filter(campaign_id=seeded.campaign_id)
    history = AttestationItem.history.model.objects.filter(campaign_id=seeded.campaign_id)
    confirmed_ok = {pk for pk, d in accepted.items() if d == "confirm"}
    released_ok = {pk for pk, d in accepted.items() if d == "release"}
    confirmed = set(items.filter(status=ItemStatus.CONFIRMED).values_list("pk", flat=True))
    released = set(items.filter(status=ItemStatus.RELEASED).values_list("pk", flat=True))
    other = items.exclude(status__in=[ItemStatus.PENDING, ItemStatus.CONFIRMED, ItemStatus.RELEASED]).count()
    audit.check(confirmed == confirmed_ok, f"confirmed items == accepted confirmations ({len(confirmed_ok)})",
                f"{len(confirmed)} in the database; lost {len(confirmed_ok - confirmed)}, "
                f"unexplained {len(confirmed - confirmed_ok)}")
    audit.check(released == released_ok, f"released items == accepted releases ({len(released_ok)})",
                f"{len(released)} in the database; lost {len(released_ok - released)}, "
                f"unexplained {len(released - released_ok)}")
    audit.check(other == 0, "no item in any other decided state", f"{other} items")
    wrong_actor = items.exclude(status=ItemStatus.PENDING).exclude(decided_by_id=models_f("reviewer_id")).count()
    audit.check(wrong_actor == 0, "every decision made by the item's reviewer", f"{wrong_actor} items")

    decided_twice = (history.filter(status__in=[ItemStatus.CONFIRMED, ItemStatus.RELEASED])
                     .values("id").annotate(n=Count("history_id")).filter(n__gt=1).count())
    audit.check(decided_twice == 0, "no item decided twice (one decided history record per item)", f"{decided_twice} items")
    decided_records = history.filter(status__in=[ItemStatus.CONFIRMED, ItemStatus.RELEASED]).count()
    audit.check(decided_records == len(accepted), f"item history: one decision record per accepted decision ({len(accepted)})",
                f"{decided_records} records")
    created = history.filter(history_type="+").count()
    total = items.count()
    audit.check(created == total, f"item history: one creation record per item ({total})", f"{created} records")
    extra = history.filter(history_type="~", status=ItemStatus.PENDING).count()
    audit.check(extra == 0, "item history: no other change recorded on pending items", f"{extra} records")

    key_ids = items.values("key_id")
    events = LifecycleEvent.objects.filter(key_id__in=key_ids)
    attest = events.filter(action=LifecycleAction.ATTEST)
    audit.check(attest.count() == len(confirmed_ok), f"'attest' lifecycle events == accepted confirmations ({len(confirmed_ok)})",
                f"{attest.count()} events")
    twice = attest.values("key_id").annotate(n=Count("pk")).filter(n__gt=1).count()
    audit.check(twice == 0, "no key attested twice", f"{twice} keys")
    # A release opens a grace window (the key suspended, one KeyRelease) or, with no window, revokes at once.
    released_keys = set(items.filter(pk__in=released_ok).values_list("key_id", flat=True))
    windows = KeyRelease.objects.filter(key_id__in=key_ids)
    in_window = set(windows.values_list("key_id", flat=True))
    revoke = events.filter(action=LifecycleAction.REVOKE, details__reason_code=RevocationReason.RELEASED)
    revoked_now = set(revoke.values_list("key_id", flat=True))
    audit.check(windows.count() == len(in_window) and revoke.count() == len(revoked_now)
                and in_window | revoked_now == released_keys and not in_window & revoked_now,
                f"one grace window or one revocation per accepted release ({len(released_ok)})",
                f"{windows.count()} windows on {len(in_window)} keys, {revoke.count()} revocations on {len(revoked_now)} keys")
    suspended = ApiKey.objects.filter(pk__in=in_window, status=KeyStatus.SUSPENDED).count()
    revoked = ApiKey.objects.filter(pk__in=key_ids, status=KeyStatus.REVOKED).count()
    requests = RevocationRequest.objects.filter(key_id__in=key_ids).count()
    audit.check(suspended == len(in_window) and revoked == requests == len(revoked_now),
                "keys in a window suspended; one revocation request per revoked key",
                f"{suspended} suspended, {revoked} revoked keys, {requests} requests")
    key_history = ApiKey.history.model.objects.filter(id__in=key_ids).count()
    audit.check(key_history == len(accepted), f"key history: one record per accepted decision ({len(accepted)})",
                f"{key_history} records")


def models_f(name):
    from django.db.models import F

    return F(name)


def audit_close(audit: Audit, seeded: Seeded, accepted: dict[int, str], pending_before: int) -> None:
    from attestations.choices import CampaignStatus, DefaultAction, ItemStatus
    from attestations.models import AttestationItem, Campaign
    from keys.choices import LifecycleAction
    from keys.models import LifecycleEvent

    campaign = Campaign.objects.get(pk=seeded.campaign_id)
    audit.check(campaign.status == CampaignStatus.CLOSED, "campaign closed by the worker", campaign.status)
    closed_records = campaign.history.filter(status=CampaignStatus.CLOSED, history_type="~").count()
    audit.check(closed_records == 1, "campaign closed once (one 'closed' history record)", f"{closed_records} records")
    items = AttestationItem.objects.filter(campaign_id=seeded.campaign_id)
    expired = items.filter(status=ItemStatus.EXPIRED, default_action_applied=DefaultAction.KEEP_AND_FLAG).count()
    audit.check(items.filter(status=ItemStatus.PENDING).count() == 0, "no item left pending after the close")
    audit.check(expired == pending_before, f"every undecided item expired with the default action ({pending_before})",
                f"{expired} expired")
    audit.check(items.exclude(status=ItemStatus.EXPIRED).count() == len(accepted), "the close left every decision alone")
    history = AttestationItem.history.model.objects.filter(campaign_id=seeded.campaign_id, status=ItemStatus.EXPIRED)
    audit.check(history.count() == pending_before, "item history: one expiry record per undecided item",
                f"{history.count()} records")
    flags = LifecycleEvent.objects.filter(key__attestation_items__campaign_id=seeded.campaign_id,
                                          action=LifecycleAction.FLAG).count()
    audit.check(flags == pending_before, "one 'flag' lifecycle event per undecided key", f"{flags} events")


def audit_chain(audit: Audit) -> None:
    """The chain is part of every write: a chain module that cannot be found fails the audit."""
    try:
        from core.chain import verify_chain
    except ImportError as error:
        audit.check(False, "history hash chain verifies", f"no verify_chain to call ({error})")
        return
    report = verify_chain()
    audit.check(report.ok and report.checked > 0,
                f"history hash chain verifies ({report.checked} links, head at {report.head_seq})",
                str(report.problems[:5])[:500])


# --------------------------------------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


# --------------------------------------------------------------------------------------------------
# CPU accounting: what the load cost the servers, whatever else the machine was running
# --------------------------------------------------------------------------------------------------

def _proc_cpu() -> dict[int, tuple[int, float]]:
    """pid -> (process group, CPU seconds used so far) for every process we may read."""
    tick = os.sysconf("SC_CLK_TCK")
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found[int(entry)] = (int(fields[2]), (int(fields[11]) + int(fields[12])) / tick)
    return found


def _machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    with open("/proc/stat") as handle:
        values = [int(v) for v in handle.readline().split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = values[3] + values[4]
    return (sum(values) - idle) / tick, sum(values) / tick


def _backend_pids(database: str) -> set[int]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", [database])
        return {row[0] for row in cursor.fetchall()}


class CpuMeter:
    """CPU seconds used during the load by gunicorn, the Celery worker and this database's PostgreSQL backends.

    Backends come and go during the load (a server thread's connection is replaced when it reaches its
    maximum age): every second the meter notes the CPU of each backend it sees, so one that has ended by
    the end still counts up to its last reading.
    """

    def __init__(self, database: str, groups: dict[str, int]):
        self.database, self.groups = database, groups
        self.before, self.busy_before = _proc_cpu(), _machine_busy()
        self.backends = _backend_pids(database)
        self.last_seen: dict[int, float] = {}
        self._stopping = threading.Event()
        self._sampler = threading.Thread(target=self._sample, name="cpu-meter", daemon=True)
        self._sampler.start()

    def _sample(self):
        from django.db import connection

        try:
            while not self._stopping.wait(1.0):
                self.backends |= _backend_pids(self.database)
                now = _proc_cpu()
                for pid in self.backends:
                    if pid in now:
                        self.last_seen[pid] = now[pid][1]
        finally:
            connection.close()

    def stop(self) -> dict[str, float]:
        self._stopping.set()
        self._sampler.join(10)
        self.backends |= _backend_pids(self.database)
        after, busy_after = _proc_cpu(), _machine_busy()

        def used(pids):
            return sum(after[p][1] - self.before.get(p, (0, 0.0))[1] for p in pids if p in after)

        spent = {name: used([p for p, (group, _) in after.items() if group == pgid]) for name, pgid in self.groups.items()}
        ended = {p for p in self.backends if p not in after}
        spent["postgres"] = used(self.backends) + sum(
            self.last_seen.get(p, 0.0) - self.before.get(p, (0, 0.0))[1] for p in ended)
        spent["load client"] = used([os.getpid()])
        busy, total = busy_after[0] - self.busy_before[0], busy_after[1] - self.busy_before[1]
        spent["machine busy"], spent["machine total"] = busy, total
        return spent


def main() -> int:
    args = parse_args()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = ROOT / "bench" / "results" / f"load-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    database_url = create_database(args.database)
    env = server_environment(args, database_url)
    print(f"database {args.database} on {HOST}:5432; broker {args.broker}; logs in {out.relative_to(ROOT)}")
    t = time.perf_counter()
    setup_django(env)
    print(f"migrated in {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    seeded = seed(args)
    total_items = sum(len(v) for v in seeded.items.values())
    print(f"seeded {len(seeded.owners)} owners, {total_items} keys and items in one active campaign "
          f"in {time.perf_counter() - t:.1f} s")

    subprocess.run([str(VENV_BIN / "python"), "manage.py", "collectstatic", "--noinput", "-v", "0"], cwd=ROOT,
                   env=env, check=True)
    port = free_port()
    gunicorn = worker = None
    try:
        gunicorn = start_process(
            [str(VENV_BIN / "gunicorn"), "portal.wsgi", "-b", f"{HOST}:{port}", "-w", str(args.workers),
             "-k", args.worker_class, "--threads", str(args.threads), "--keep-alive", "75", "--timeout", "120",
             "--error-logfile", "-"],
            env, out / "gunicorn.log")
        worker = start_process(
            [str(VENV_BIN / "celery"), "-A", "portal", "worker", "-l", "warning", "-P", "solo",
             "-n", f"loadtest-{os.getpid()}@%h", "--without-gossip", "--without-mingle"],
            env, out / "worker.log")
        wait_for_server(port, gunicorn)
        wait_for_worker(env)
        print(f"gunicorn on {HOST}:{port} ({args.workers} workers x {args.threads} threads), Celery worker up")

        portal_owners = [o for o in seeded.owners if o not in seeded.tokens]
        signed_in: dict[str, tuple[dict[str, str], str]] = {}
        t = time.perf_counter()
        threads = [threading.Thread(target=lambda o=o: signed_in.__setitem__(o, sign_in(port, o))) for o in portal_owners]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if len(signed_in) != len(portal_owners):
            raise SystemExit("some portal owners could not sign in (see above)")
        print(f"{len(seeded.tokens)} owners with an API token, {len(signed_in)} signed in through the login form "
              f"in {time.perf_counter() - t:.1f} s")

        reference = reference_loop_seconds()
        print(f"machine speed: 10,000,000 Python additions in {reference:.2f} s (best of 3; lower is faster)")
        rng = random.Random(args.seed)
        start = time.monotonic()
        deadline = start + args.duration
        clients = []
        for owner in seeded.owners:
            cookies, csrf = signed_in.get(owner, ({}, ""))
            clients.append(OwnerClient(owner, seeded.items[owner], port, deadline, random.Random(rng.random()),
                                       args.duplicate_rate, args.release_rate, token=seeded.tokens.get(owner),
                                       cookies=cookies, csrf=csrf))
        print(f"load: {len(clients)} clients for {args.duration:.0f} s ...", flush=True)
        meter = CpuMeter(args.database, {"gunicorn": gunicorn.pid, "celery worker": worker.pid})
        threads = [threading.Thread(target=c.run, name=c.username) for c in clients]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(args.duration + 120)
        elapsed = time.monotonic() - start
        cpu = meter.stop()
        results = [r for c in clients for r in c.results]

        summary, accepted, errors = report(results, elapsed)
        summary["cpu_seconds"] = {k: round(v, 1) for k, v in cpu.items()}
        summary["reference_loop_seconds"] = round(reference, 3)
        print_cpu(cpu, len(accepted), elapsed)
        print()
        from django.db import connection

        connection.close()
        from attestations import tasks
        from attestations.choices import ItemStatus
        from attestations.models import AttestationItem

        audit = Audit()
        for problem in errors[:20]:
            print(f"  error: {problem}")
        audit.check(not errors, "no errors under load", f"{len(errors)} errors")
        print("Database audit after the load:")
        audit_decisions(audit, seeded, accepted)

        pending_before = AttestationItem.objects.filter(campaign_id=seeded.campaign_id, status=ItemStatus.PENDING).count()
        t = time.perf_counter()
        async_result = tasks.close_campaign.delay(seeded.campaign_id, seeded.compliance_id)
        from attestations.models import Campaign

        while Campaign.objects.filter(pk=seeded.campaign_id, closed_at__isnull=True).exists():
            if time.perf_counter() - t > 600:
                break
            if worker.poll() is not None:
                break
            time.sleep(0.5)
        close_time = time.perf_counter() - t
        print(f"\nClose through the Celery worker: {pending_before} undecided items in {close_time:.1f} s "
              f"(task {async_result.id})")
        # Closing again must change nothing (the task is safe to retry).
        from attestations.services import campaigns
        from core.actors import system_user


        again = campaigns.close_campaign(Campaign.objects.get(pk=seeded.campaign_id), actor=system_user())
        audit.check(again == {}, "a second close changes nothing", str(again))
        print("Database audit after the close:")
        audit_close(audit, seeded, accepted, pending_before)
        audit_chain(audit)

        summary.update({"close_seconds": round(close_time, 2), "closed_items": pending_before,
                        "failures": audit.failures, "workers": args.workers, "threads": args.threads,
                        "clients": len(clients), "duration": args.duration})
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        print()
        if audit.failures:
            print(f"FAILED: {len(audit.failures)} check(s) failed")
            return 1
        rate = summary["decisions_per_second"]
        if args.min_rate and rate < args.min_rate:
            print(f"PASSED the checks, but {rate:.1f} decisions/s is below --min-rate {args.min_rate}")
            return 3
        print(f"PASSED: {summary['accepted']} decisions, {rate:.1f} decisions/s, zero errors, nothing lost or doubled")
        return 0
    finally:
        stop_process(gunicorn, "gunicorn")
        stop_process(worker, "celery worker")


def reference_loop_seconds() -> float:
    """How fast this machine runs Python now: best of three loops of 10,000,000 additions (lower is faster).

    Decisions per second depend on the CPU as much as on the code; this figure makes runs on different
    machines (or on one machine whose speed varies) comparable.
    """
    best = float("inf")
    for _ in range(3):
        started, total = time.perf_counter(), 0
        for i in range(10_000_000):
            total += i
        best = min(best, time.perf_counter() - started)
    return best


def print_cpu(cpu: dict[str, float], decisions: int, elapsed: float) -> None:
    cores = os.cpu_count() or 1
    servers = cpu["gunicorn"] + cpu["celery worker"] + cpu["postgres"]
    others = max(cpu["machine busy"] - servers - cpu["load client"], 0.0)
    print("CPU during the load (seconds): " + ", ".join(
        f"{name} {cpu[name]:.1f}" for name in ("gunicorn", "postgres", "celery worker", "load client")))
    print(f"  machine: {cpu['machine busy']:.1f} of {cpu['machine total']:.1f} CPU seconds busy on {cores} cores; "
          f"{others:.1f} s went to processes outside this test")
    if decisions:
        print(f"  gunicorn + PostgreSQL: {1000 * cpu['gunicorn'] / decisions:.1f} + {1000 * cpu['postgres'] / decisions:.1f} "
              f"= {1000 * (cpu['gunicorn'] + cpu['postgres']) / decisions:.1f} CPU ms per decision")
        per = servers / decisions * 1000
        print(f"  servers (gunicorn + worker + PostgreSQL): {per:.1f} CPU ms per decision "
              f"-> at most {1000 * cores / per:.0f} decisions/s if they had all {cores} cores")


def report(results: list[Result], elapsed: float):
    accepted: dict[int, str] = {}
    per_item = Counter()
    errors = []
    for r in results:
        if r.outcome == "accepted":
            per_item[r.item] += 1
            accepted[r.item] = r.decision
        elif r.outcome == "error":
            errors.append(f"{r.owner} {r.channel} item {r.item} ({r.kind}): {r.detail}")
    for item, n in per_item.items():
        if n > 1:
            errors.append(f"item {item} accepted {n} times")
    doubles = defaultdict(list)
    for r in results:
        if r.kind == "double":
            doubles[r.item].append(r.outcome)
    for item, outcomes in doubles.items():
        if outcomes.count("accepted") != 1 and "error" not in outcomes:
            errors.append(f"item {item}: concurrent double submission gave {outcomes}")
    for r in results:
        if r.kind == "resend" and r.outcome == "accepted":
            errors.append(f"item {r.item}: a resend of a decided item was accepted")
        if r.kind == "first" and r.outcome == "refused":
            errors.append(f"item {r.item}: a first submission was refused as already decided")

    latencies = [r.latency for r in results]
    by_channel = defaultdict(list)
    for r in results:
        by_channel[r.channel].append(r.latency)
    statuses = Counter((r.channel, r.status) for r in results)
    refused = sum(1 for r in results if r.outcome == "refused")
    rate = len(accepted) / elapsed if elapsed else 0.0
    print(f"\nRequests: {len(results)} in {elapsed:.1f} s ({len(results) / elapsed:.1f}/s)")
    print(f"Decisions accepted: {len(accepted)} ({Counter(accepted.values())})  ->  {rate:.1f} decisions/s")
    print(f"Duplicates refused as expected: {refused} "
          f"(concurrent doubles: {len(doubles)} items; resends: {sum(1 for r in results if r.kind == 'resend')})")
    print(f"Latency: p50 {percentile(latencies, 0.5) * 1000:.0f} ms, p95 {percentile(latencies, 0.95) * 1000:.0f} ms, "
          f"max {max(latencies, default=0) * 1000:.0f} ms")
    for channel, values in sorted(by_channel.items()):
        print(f"  {channel:5}: {len(values):6} requests, p50 {percentile(values, 0.5) * 1000:.0f} ms, "
              f"p95 {percentile(values, 0.95) * 1000:.0f} ms")
    print(f"Statuses: {dict(sorted(statuses.items(), key=str))}")
    print(f"Errors: {len(errors)}")
    summary = {
        "requests": len(results), "elapsed": round(elapsed, 2), "accepted": len(accepted),
        "decisions_per_second": round(rate, 1), "refused_duplicates": refused, "errors": len(errors),
        "p50_ms": round(percentile(latencies, 0.5) * 1000, 1), "p95_ms": round(percentile(latencies, 0.95) * 1000, 1),
        "per_channel": {c: {"requests": len(v), "p50_ms": round(percentile(v, 0.5) * 1000, 1),
                            "p95_ms": round(percentile(v, 0.95) * 1000, 1)} for c, v in by_channel.items()},
        "mean_ms": round(statistics.fmean(latencies) * 1000, 1) if latencies else None,
    }
    return summary, accepted, errors


if __name__ == "__main__":
    sys.exit(main())
