"""On PostgreSQL: one link and one code, submitted many times at once, open exactly one session, and
wrong codes racing each other are all counted."""

import pytest
from django.core import mail

from contacts import access
from contacts.access import ContactError, LinkRefused
from contacts.models import AccessLink, CustomerContact
from tests import factories
from tests.attestations.test_concurrency_and_worker import _in_threads
from tests.postgres import requires_postgres

from .conftest import last_code


def _contact_with_code(settings):
    settings.CONTACT_CODE_MAX_FAILURES = 50
    compliance = factories.ComplianceFactory(username="carol")
    contact, token = access.invite_contact(actor=compliance, customer=factories.CustomerFactory(), name="Pat",
                                           email="pat@acme.test")
    link = access.send_code(access.open_link(token))
    return contact, link


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_one_code_submitted_twenty_times_at_once_signs_in_once(settings):
    contact, link = _contact_with_code(settings)
    code = last_code("pat@acme.test")
    results = _in_threads(20, lambda n: access.verify_code(link, code))
    signed_in = [r for r in results if isinstance(r, CustomerContact)]
    refused = [r for r in results if isinstance(r, LinkRefused)]
    assert len(signed_in) == 1 and len(refused) == 19, results
    assert {r.state for r in refused} == {"used"}
    assert AccessLink.objects.get(pk=link.pk).used_at is not None
    assert len(mail.outbox) == 2  # the invitation and one code


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_simultaneous_wrong_codes_are_all_counted(settings):
    contact, link = _contact_with_code(settings)
    wrong = f"{(int(last_code('pat@acme.test')) + 1) % 1_000_000:06d}"
    results = _in_threads(12, lambda n: access.verify_code(link, wrong))
    assert all(isinstance(r, ContactError) and not isinstance(r, LinkRefused) for r in results), results
    assert AccessLink.objects.get(pk=link.pk).failed_attempts == 12
