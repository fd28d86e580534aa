"""A real Celery worker for task tests: Redis in CI (``TEST_CELERY_BROKER_URL``), in-memory locally.

The worker runs in a thread of the test process and talks to the same test database, so the tests
using it need ``transactional_db``.
"""

import contextlib
import os
import time

from celery.contrib.testing.worker import start_worker
from django.db import OperationalError, connection
from kombu import pools as kombu_pools

from portal.celery import app


@contextlib.contextmanager
def running_worker():
    broker = os.environ.get("TEST_CELERY_BROKER_URL", "memory://localhost/")
    saved = {k: app.conf[k] for k in ("task_always_eager", "broker_url", "result_backend")}
    app.conf.update(task_always_eager=False, broker_url=broker, result_backend=None)
    _reset_connections()
    try:
        with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=30, loglevel="WARNING") as worker:
            yield worker
    finally:
        app.conf.update(saved)
        _reset_connections()


def _reset_connections():
    """Drop pooled broker connections so the next use connects to the configured broker."""
    kombu_pools.reset()
    app._pool = None
    app.amqp._producer_pool = None


def wait_for(condition, timeout: float = 30.0, interval: float = 0.1):
    """Poll until ``condition()`` is truthy; the worker runs tasks on its own schedule."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except OperationalError as error:
            # In-memory SQLite shares one cache between the test and the worker thread: a read while
            # the worker's transaction writes a table is refused ("database table is locked").
            if connection.vendor != "sqlite" or "locked" not in str(error):
                raise
            value = None
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")
