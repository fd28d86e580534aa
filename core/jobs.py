"""Follow-up work that a service starts once its transaction commits.

Services name the Celery task instead of importing it: the tasks modules import the services (a task
is a thin wrapper over one), so an import the other way would run in a circle.
"""

from celery import current_app
from django.db import transaction


def registered_task(task_name: str):
    """The task registered as ``task_name``. Tasks modules are discovered when a worker starts; a web
    process (or tasks run in-process) discovers them here, the first time one is asked for."""
    if task_name not in current_app.tasks:
        current_app.loader.import_default_modules()
    if task_name not in current_app.tasks:
        raise LookupError(f"No Celery task is registered as {task_name!r}.")
    return current_app.tasks[task_name]


def enqueue_on_commit(task_name: str, *args) -> None:
    """Run the task registered as ``task_name`` with ``args`` once the current transaction commits
    (at once outside a transaction); in-process where tasks run eagerly."""
    task = registered_task(task_name)
    transaction.on_commit(lambda: task.delay(*args))
