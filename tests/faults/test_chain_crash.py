"""A process killed between its writes and their commit leaves nothing that verification calls tampering:
the records and their links are written in one transaction, and PostgreSQL drops both."""

import os
import subprocess
import sys

import pytest
from django.conf import settings

from core import chain
from core.models import ChainLink
from keys.models import ApiKey
from tests import factories
from tests.faults.harness import database_url
from tests.postgres import requires_postgres

# Writes a key's suspension (history record, lifecycle event) and an access record in one sealed block, says
# so, and waits to be killed: before sealing ("written") or after the links are inserted ("sealed").
CHILD = r"""
import os, sys, time
import django
os.environ["DJANGO_SETTINGS_MODULE"] = "portal.settings"
django.setup()
from django.contrib.auth import get_user_model
from core import chain
from core.audit import record_access
from core.models import AccessAction
from keys.models import ApiKey
from keys.services import lifecycle

phase, key_id, actor_id = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if phase == "sealed":
    appended = chain._append
    def append_then_wait(*args, **kwargs):
        count = appended(*args, **kwargs)
        print("sealed", flush=True)
        time.sleep(120)
        return count
    chain._append = append_then_wait
actor = get_user_model().objects.get(pk=actor_id)
with chain.sealed_atomic():
    lifecycle.suspend_key(ApiKey.objects.get(pk=key_id), actor=actor, reason="killed before its commit")
    record_access(None, AccessAction.LOGIN_FAILED, username="never-committed")
    if phase == "written":
        print("written", flush=True)
        time.sleep(120)
"""


@requires_postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("phase", ["written", "sealed"])
def test_a_process_killed_before_its_commit_leaves_no_tampering(phase, owner, compliance_user):
    key = factories.ApiKeyFactory(owner=owner)
    assert chain.verify_chain().ok
    links = ChainLink.objects.count()
    env = {**os.environ, "DATABASE_URL": database_url(), "PYTHONPATH": str(settings.BASE_DIR)}
    child = subprocess.Popen([sys.executable, "-c", CHILD, phase, str(key.pk), str(compliance_user.pk)],
                             cwd=settings.BASE_DIR, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == phase
    finally:
        child.kill()  # SIGKILL: no rollback from the process, PostgreSQL drops the open transaction
        child.wait(timeout=30)
    assert ApiKey.objects.get(pk=key.pk).status == key.status
    assert ChainLink.objects.count() == links
    for result in (chain.verify_chain(), chain.verify_since_checkpoint()):
        assert result.ok, result.problems
