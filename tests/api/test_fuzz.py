"""Schemathesis fuzzing of the whole OpenAPI schema: no request, valid or not, may cause a server error.

Every operation is called through the WSGI application as an admin (DRF token), with cases generated
from the schema (positive: valid by the schema; negative: violating it), and checked with
``not_a_server_error``. FUZZ_EXAMPLES sets the number of examples per operation and mode (default 8).
"""

import os

import pytest
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from rest_framework.authtoken.models import Token

from tests import factories

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.generation import GenerationMode  # noqa: E402

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "8"))


@pytest.fixture
def admin_token(db):
    admin = factories.AdminFactory(username="fuzz-admin")
    key = factories.ApiKeyFactory()
    factories.KeyExceptionFactory(key=key)
    factories.ApiKeyFactory(workflow=key.workflow)
    return Token.objects.create(user=admin).key


@pytest.fixture
def schema(admin_token, settings):
    settings.ALLOWED_HOSTS = ["*"]
    # As Django's test client does: the WSGI handler must not close the test's database connection
    # (and with it the test transaction) at the end of each request.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def operations(schema):
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.django_db
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_errors(schema, admin_token, mode):
    headers = {"Authorization": f"Token {admin_token}"}
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
