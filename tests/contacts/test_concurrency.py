"""One link and one code, submitted many times at once, open exactly one session, and wrong codes racing
each other are all counted: through the service on PostgreSQL, and through HTTP on both databases."""

import pytest
from django.conf import settings as django_settings
from django.core import mail
from django.test import Client
from django.urls import reverse

from contacts import access
from contacts.access import ContactError, LinkRefused
from contacts.models import AccessLink, CustomerContact
from core.models import AccessAction, AccessRecord
from tests import factories
from tests.attestations.test_concurrency_and_worker import _in_threads
from tests.postgres import requires_postgres
from tests.shared_database import file_for_threads, in_a_thread

from .conftest import last_code, last_link_token


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



def _browser_waiting_for_a_code(settings) -> tuple[str, str]:
    """A contact's browser that opened its link and was sent a code: (its session key, the code)."""
    settings.CONTACT_CODE_MAX_FAILURES = 50
    compliance = factories.ComplianceFactory(username="carol")
    access.invite_contact(actor=compliance, customer=factories.CustomerFactory(), name="Pat", email="pat@acme.test")
    browser = Client()
    opened = browser.post(reverse("contacts:access", args=[last_link_token("pat@acme.test")]))
    assert opened.status_code == 302 and opened.url == reverse("contacts:code")
    return browser.cookies[django_settings.SESSION_COOKIE_NAME].value, last_code("pat@acme.test")


def _submit_at_once(count: int, session: str, code_for) -> list[tuple[int, str | None, str]]:
    """``count`` submissions of the code page from one browser session at once: (status, Location, body)."""

    def submit(n):
        client = Client(raise_request_exception=False)
        client.cookies[django_settings.SESSION_COOKIE_NAME] = session
        response = client.post(reverse("contacts:code"), {"code": code_for(n)})
        return response.status_code, response.get("Location"), response.content.decode()

    answers = _in_threads(count, submit)
    assert not [a for a in answers if isinstance(a, Exception)], answers
    assert all(status < 500 for status, _, _ in answers), sorted(status for status, _, _ in answers)
    return answers


@pytest.mark.django_db(transaction=True)
def test_one_code_submitted_twenty_times_at_once_over_http_signs_in_once(settings, tmp_path):
    """The right code twenty times at once from one browser (a double click, a retry): one submission signs in,
    the others get a page saying the link is used or the session moved on; none is a server error."""
    session, code = _browser_waiting_for_a_code(settings)
    with file_for_threads(tmp_path):
        answers = _submit_at_once(20, session, lambda n: code)
        signed_in = in_a_thread(lambda: AccessRecord.objects.filter(action=AccessAction.CONTACT_SIGNED_IN).count())
        used = in_a_thread(lambda: AccessLink.objects.get().used_at is not None)
    assert [(status, url) for status, url, _ in answers if status == 302] == [(302, reverse("contacts:home"))]
    assert {status for status, _, _ in answers} <= {302, 400, 410}, answers
    assert signed_in == 1 and used


@pytest.mark.django_db(transaction=True)
def test_twenty_wrong_codes_at_once_over_http_are_each_answered_and_counted(settings, tmp_path):
    """Twenty wrong codes at once: each is told the code is wrong and each is counted. On SQLite each write
    waits for the one before (an immediate transaction, a busy timeout) instead of failing with "database is
    locked"."""
    session, code = _browser_waiting_for_a_code(settings)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    with file_for_threads(tmp_path):
        answers = _submit_at_once(20, session, lambda n: wrong)
        failures = in_a_thread(lambda: AccessLink.objects.get().failed_attempts)
    assert [status for status, _, _ in answers] == [400] * 20, answers
    assert all("That code is not right." in body for _, _, body in answers)
    assert failures == 20
