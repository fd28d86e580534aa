from django.core.management import call_command

from core import roles
from core.auditors.services import current_grant
from core.models import AuditorGrant
from tests.keys.test_seed_demo import user


def test_the_demo_auditor_signs_in_with_demo_and_reads_under_a_current_grant(db, settings):
    settings.DEBUG = True
    call_command("seed_demo")
    auditor = user("auditor")
    assert auditor.check_password("demo") and roles.is_auditor(auditor) and not auditor.is_staff
    grant = current_grant(auditor)
    assert grant is not None and grant.granted_by == user("compliance")
    call_command("seed_demo")
    assert AuditorGrant.objects.filter(auditor=auditor).count() == 1
