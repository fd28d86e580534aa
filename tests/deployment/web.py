"""The portal's WSGI application for the deployment test's web processes, sending tasks to the test's queue.

    gunicorn tests.deployment.web:application ...

As ``tests.faults.celery_worker`` does for its workers: the tasks a web process enqueues (an export, a
decision's follow-up) go to the queue of the test that started it (``FAULT_QUEUE``), never to another
test's or engineer's.
"""

import os

from portal.celery import app
from portal.wsgi import application

app.conf.task_default_queue = os.environ.get("FAULT_QUEUE", "celery")

__all__ = ["application"]
