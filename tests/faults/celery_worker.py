"""The portal's Celery app for the fault tests' worker processes, with redelivery compressed in time.

Production keeps Redis's default visibility timeout (an unacknowledged task of a dead worker comes back
after an hour); here it comes back after a few seconds, and the worker looks for such tasks every
second (its mutex expiring after two seconds if the holder is killed), so a test can watch
``acks_late`` redelivery without waiting an hour.

    celery -A tests.faults.celery_worker worker ...
"""

import os

from portal.celery import app

# Tasks the worker sends itself (a retry, a safety net's re-enqueue) stay on the test's own queue.
app.conf.task_default_queue = os.environ.get("FAULT_QUEUE", "celery")
app.conf.broker_transport_options = {
    "visibility_timeout": int(os.environ.get("FAULT_VISIBILITY_TIMEOUT", "3")),
    "unacked_restore_interval": 1,
    "unacked_restore_throttle": 1,
    # The restore sweep holds a Redis mutex; a worker SIGKILLed while holding it would keep every other
    # worker from restoring anything for the default 5 minutes.
    "unacked_mutex_expire": 2,
}
