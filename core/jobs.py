"""Follow-up work that a service starts once its transaction commits.

Services name the Celery task instead of importing it: the tasks modules import the services (a task
is a thin wrapper over one), so an import the other way would run in a circle.
"""

from celery import current_app
from django.db import transaction


def enqueue_on_commit(task_name: str, *args) -> None:
    """Run the task registered as ``task_name`` with ``args`` once the current transaction commits
    (at once outside a transaction); in-process where tasks run eagerly."""
    transaction.on_commit(lambda: current_app.signature(task_name, args=args).delay())
