"""Services start follow-up tasks by name (core.jobs): every name they use is a registered task, and
a fresh web process, which never imported a tasks module, still runs them."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from core.jobs import registered_task

ROOT = Path(settings.BASE_DIR)


def enqueued_names() -> set[str]:
    names = set()
    for path in ROOT.glob("*/services/*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "enqueue_on_commit":
                names.add(node.args[0].value)
    return names


def test_every_task_a_service_names_is_registered():
    names = enqueued_names()
    assert "keys.tasks.deliver_revocation" in names and len(names) >= 4
    for name in names:
        assert registered_task(name).name == name


def test_an_unknown_task_name_is_refused_at_once():
    with pytest.raises(LookupError, match="keys.tasks.no_such_task"):
        registered_task("keys.tasks.no_such_task")


def test_a_fresh_process_finds_the_tasks_without_importing_them():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "DATABASE_URL"))}
    env["DJANGO_SETTINGS_MODULE"] = "portal.settings"
    code = ("import django; django.setup(); import sys; "
            "assert 'keys.tasks' not in sys.modules and 'attestations.tasks' not in sys.modules; "
            "from core.jobs import registered_task; "
            "print(registered_task('attestations.tasks.notify_campaign_launched').name)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "attestations.tasks.notify_campaign_launched"
