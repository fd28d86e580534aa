"""Faults for real: Celery worker processes to SIGKILL, a PostgreSQL outage, an issuer that hangs.

- ``WorkerProcess``: ``celery -A tests.faults.celery_worker worker`` as a subprocess of its own session,
  pointed at the test database and the Redis broker (``TEST_CELERY_BROKER_URL``) on a queue of its own;
  ``kill()`` sends SIGKILL to the whole process group, as a crashed machine would.
- ``interrupt_postgres()``: with ``FAULT_RESTART_POSTGRES=1`` (set by ``.ci/run``) a real
  ``pg_ctlcluster ... restart``; otherwise every backend of the test database is terminated
  (``pg_terminate_backend``), which leaves the other databases of a shared development server alone.
- ``HangingIssuer``: an HTTP issuer on 127.0.0.1 that holds the first revocation call open until
  released and acknowledges every later one, recording each call it received.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg
from django.db import connection

from portal.celery import app
from tests.postgres import env_flag
from tests.worker import _reset_connections

ROOT = Path(__file__).resolve().parents[2]


def database_url() -> str:
    """The URL of the test database this process uses (pytest-django's test_<name>)."""
    s = connection.settings_dict
    auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def _admin_dsn() -> str:
    s = connection.settings_dict
    return psycopg.conninfo.make_conninfo(
        host=s["HOST"] or "127.0.0.1", port=s["PORT"] or 5432, user=s["USER"], password=s.get("PASSWORD") or None,
        dbname="postgres",
    )


def database_dsn() -> str:
    s = connection.settings_dict
    return psycopg.conninfo.make_conninfo(
        host=s["HOST"] or "127.0.0.1", port=s["PORT"] or 5432, user=s["USER"], password=s.get("PASSWORD") or None,
        dbname=s["NAME"],
    )


@contextlib.contextmanager
def broker_queue():
    """Send this process's tasks to the test broker, on a queue no other test or engineer uses."""
    broker = os.environ.get("TEST_CELERY_BROKER_URL", "")
    if not broker.startswith("redis://"):
        raise AssertionError("the fault tests need Redis: set TEST_CELERY_BROKER_URL=redis://127.0.0.1:6379/<db>")
    queue = f"faults-{uuid.uuid4().hex[:12]}"
    keys = ("task_always_eager", "broker_url", "result_backend", "task_default_queue")
    saved = {k: app.conf[k] for k in keys}
    app.conf.update(task_always_eager=False, broker_url=broker, result_backend=None, task_default_queue=queue)
    _reset_routing()
    try:
        yield broker, queue
    finally:
        app.conf.update(saved)
        _reset_routing()


def _reset_routing():
    """Drop the broker connections and the queue declarations Celery cached from the previous settings."""
    _reset_connections()
    for cached in ("queues", "default_queue", "router"):
        app.amqp.__dict__.pop(cached, None)


class WorkerProcess:
    """One real ``celery worker`` process (solo pool) consuming ``queue``, logging to ``log_path``."""

    def __init__(self, broker: str, queue: str, log_path: Path):
        self.log_path = log_path
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "DATABASE_URL": database_url(),
            "CELERY_BROKER_URL": broker,
            "CELERY_TASK_ALWAYS_EAGER": "false",
            "FAULT_QUEUE": queue,
            "PYTHONUNBUFFERED": "1",
        }
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()/kill()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tests.faults.celery_worker", "worker", "--pool", "solo",
             "-Q", queue, "-n", f"{log_path.stem}-{uuid.uuid4().hex[:6]}@%h", "--without-mingle",
             "--without-gossip", "--without-heartbeat", "--loglevel", "INFO"],
            cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        wait_until(lambda: " ready." in self.log() or self.process.poll() is not None, 60, "the worker to start")
        if self.process.poll() is not None:
            raise AssertionError(f"the worker exited at start:\n{self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def finished(self, task_id: str) -> str | None:
        """The task's logged outcome (``succeeded in ...: <result>``), if this worker ran it to the end."""
        found = re.search(rf"\[{re.escape(task_id)}\] (succeeded in [^\n]*|raised [^\n]*)", self.log())
        return found.group(1) if found else None

    def kill(self) -> None:
        """SIGKILL the worker and its children: no acknowledgement, no clean-up, no goodbye."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)
        self._log.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


def wait_until(condition, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def backend_waiting_on_lock(dbname: str, exclude_pid: int) -> bool:
    """A session of the test database (the worker's) is blocked on a row lock."""
    with psycopg.connect(_admin_dsn(), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> %s AND wait_event_type = 'Lock'",
            [dbname, exclude_pid],
        ).fetchone()
    return row[0] > 0


def interrupt_postgres() -> str:
    """Take the database away from every client, then wait until it answers again."""
    dbname = connection.settings_dict["NAME"]
    if env_flag("FAULT_RESTART_POSTGRES"):
        version = sorted(os.listdir("/etc/postgresql"))[-1]
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
                       check=True, timeout=120, capture_output=True)
        how = "restarted PostgreSQL"
    else:
        with psycopg.connect(_admin_dsn(), autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                [dbname],
            )
        how = f"terminated every session of {dbname}"
    # This process's own session died with the others: drop it so the next query reconnects.
    connection.close()
    wait_until(_postgres_answers, 60, "PostgreSQL to answer again", interval=0.5)
    return how


def _postgres_answers() -> bool:
    try:
        with psycopg.connect(database_dsn(), connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.OperationalError:
        return False


class HangingIssuer:
    """An issuer's revoke endpoint on 127.0.0.1: the first call hangs until ``release()``, later ones get 200."""

    def __init__(self):
        self.calls: list[dict] = []
        self.first_call = threading.Event()
        self._release = threading.Event()
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                number = len(issuer.calls) + 1
                issuer.calls.append({"body": json.loads(body), "idempotency_key": self.headers.get("Idempotency-Key"),
                                     "signature": self.headers.get("X-Keys-Signature")})
                if number == 1:
                    issuer.first_call.set()
                    issuer._release.wait(120)
                    return  # the caller is gone by now: no answer
                answer = json.dumps({"reference": f"ISS-{number}"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/revoke"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._release.set()

    def close(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()
