"""Schemathesis fuzzing of the whole OpenAPI schema: no request, valid or not, may cause a server error.

The schema is read live from ``/api/schema/``; every operation is then called through the WSGI application
with cases generated from it (positive: valid by the schema; negative: violating it), as an admin and as an
owner (each with a personal token), and checked with ``not_a_server_error``. It runs on the database of the
run: SQLite locally, PostgreSQL in CI. FUZZ_EXAMPLES sets the number of examples per operation, mode and
role (default 10), which keeps a run to a minute or two.
"""

import os

import pytest
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from rest_framework.authtoken.models import Token

from attestations.choices import DefaultAction
from attestations.services import campaigns
from tests import factories

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.generation import GenerationMode  # noqa: E402

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "10"))

pytestmark = [pytest.mark.fuzz, pytest.mark.django_db]


@pytest.fixture
def tokens(db):
    """An admin and an owner, each with a personal token, and a world for them to reach: keys of both, an
    exception, a launched campaign whose items the owner reviews."""
    admin = factories.AdminFactory(username="fuzz-admin")
    owner = factories.OwnerFactory(username="fuzz-owner")
    compliance = factories.ComplianceFactory(username="fuzz-compliance")
    key = factories.ApiKeyFactory(owner=owner)
    factories.KeyExceptionFactory(key=key, requested_by=owner)
    factories.ApiKeyFactory(workflow=key.workflow, owner=owner)
    factories.ApiKeyFactory()
    campaign = campaigns.create_campaign(actor=compliance, name="fuzz", default_action=DefaultAction.KEEP_AND_FLAG)
    campaigns.launch_campaign(campaign, actor=compliance)
    return {"admin": Token.objects.create(user=admin).key, "owner": Token.objects.create(user=owner).key}


@pytest.fixture
def schema(tokens, settings):
    settings.ALLOWED_HOSTS = ["*"]
    # As Django's test client does: the WSGI handler must not close the test's database connection
    # (and with it the test transaction) at the end of each request.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application(),
                                             headers={"Authorization": f"Token {tokens['admin']}"})
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def operations(schema):
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.parametrize("role", ["admin", "owner"])
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_errors(schema, tokens, role, mode):
    headers = {"Authorization": f"Token {tokens[role]}"}
    failures, calls = [], []
    ops = operations(schema)
    assert len(ops) >= 20, [op.label for op in ops]
    for operation in ops:

        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case):
            calls.append(case.call_and_validate(headers=headers, checks=[not_a_server_error]).status_code)

        try:
            run()
        except Exception as error:  # noqa: BLE001 - collect every operation's failure, then report them all
            failures.append(f"{operation.label}: {str(error)[:1500]}")
    assert not failures, "\n\n".join(failures)
    assert len(calls) >= 2 * len(ops), "the fuzzer made too few calls to have tested anything"
    assert any(400 <= status < 500 for status in calls), "no request was refused: the fuzzing is not reaching the API"
    if role == "owner":
        assert any(status == 403 for status in calls), "the owner was never refused: is it really an owner's token?"
