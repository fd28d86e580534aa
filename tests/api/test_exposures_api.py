import io

import pytest
from django.core import mail
from django.core.management import call_command
from django.urls import reverse

from keys.api.exposure_views import NO_MATCH
from keys.choices import ExposureSource, KeyStatus
from keys.fingerprints import fingerprint_secret
from keys.models import Exposure
from keys.services.exposures import report_exposure
from tests import factories
from tests.integration_tokens import make_token, token_client

from . import client_for

pytestmark = pytest.mark.django_db

SECRET = "sk_live_apiExposedSecret00077"


@pytest.fixture
def exposed_key(owner):
    return factories.ApiKeyFactory(owner=owner, fingerprint=fingerprint_secret(SECRET), prefix="sk_live_apie")


def post(client, **data):
    data.setdefault("location", "https://git.example/repo/blob/main/.env")
    return client.post(reverse("exposure-list"), data, format="json")


def test_compliance_is_told_which_key_matched(exposed_key, compliance_user, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = post(client_for(compliance_user), secret=SECRET)
    assert response.status_code == 201
    body = response.json()
    assert body["matched"] is True and body["key"] == exposed_key.pk
    assert "which is revoked" in body["message"]
    exposed_key.refresh_from_db()
    assert exposed_key.status == KeyStatus.REVOKED
    assert mail.outbox
    assert SECRET not in response.content.decode()


def test_a_key_the_reporter_cannot_see_looks_like_no_match(exposed_key, other_owner):
    matched = post(client_for(other_owner), secret=SECRET)
    unmatched = post(client_for(other_owner), secret="sk_live_unknownSecret000000")
    assert matched.status_code == unmatched.status_code == 201
    strip = lambda body: {k: v for k, v in body.items() if k != "id"}  # noqa: E731
    assert strip(matched.json()) == strip(unmatched.json())
    assert matched.json()["key"] is None
    assert exposed_key.label not in matched.content.decode()
    exposed_key.refresh_from_db()
    assert exposed_key.status == KeyStatus.REVOKED, "the key is revoked all the same"


def test_the_owner_is_told_of_their_own_key(exposed_key, owner):
    assert post(client_for(owner), secret=SECRET).json()["key"] == exposed_key.pk


def test_integration_token_reports_and_sees_only_its_scope(exposed_key):
    other_system = factories.IssuingSystemFactory(name="Elsewhere")
    _, outside = make_token(issuing_system=other_system, name="Other")
    body = post(token_client(outside), secret=SECRET).json()
    assert body["key"] is None
    exposure = Exposure.objects.get(pk=body["id"])
    assert exposure.source == ExposureSource.API and exposure.key == exposed_key
    _, inside = make_token(issuing_system=exposed_key.issuing_system, name="Gateway")
    assert post(token_client(inside), fingerprint=exposed_key.fingerprint).json()["key"] == exposed_key.pk


@pytest.mark.parametrize(("data", "field"), [
    ({}, "secret"),
    ({"secret": SECRET, "fingerprint": "ab" * 32}, "secret"),
    ({"secret": "short"}, "secret"),
    ({"fingerprint": "zz"}, "fingerprint"),
    ({"secret": SECRET, "location": ""}, "location"),
])
def test_validation_errors_per_field(owner, exposed_key, data, field):
    response = post(client_for(owner), **data)
    assert response.status_code == 400
    assert field in response.json()
    assert SECRET not in response.content.decode()
    assert not Exposure.objects.exists()


def test_anonymous_cannot_report():
    assert post(client_for(), secret=SECRET).status_code == 403


def test_list_is_for_compliance_and_admins(exposed_key, owner, compliance_user, admin_user):
    report_exposure(reporter=owner, source=ExposureSource.PORTAL, secret=SECRET, location="a")
    report_exposure(reporter=owner, source=ExposureSource.PORTAL, fingerprint="ef" * 32, location="b")
    rows = client_for(compliance_user).get(reverse("exposure-list")).json()["results"]
    assert [(row["location"], row["key"], row["matched"]) for row in rows] == [("b", None, False),
                                                                             ("a", exposed_key.pk, True)]
    assert "fingerprint" not in rows[0]
    assert client_for(admin_user).get(reverse("exposure-list")).status_code == 200
    assert client_for(owner).get(reverse("exposure-list")).status_code == 403


def test_secret_never_stored_after_api_report(exposed_key, owner):
    post(client_for(owner), secret=SECRET, notes=f"it was {SECRET}")
    dump = io.StringIO()
    call_command("dumpdata", stdout=dump)
    assert SECRET not in dump.getvalue()


# Portal pages


def test_report_page_for_anyone_signed_in(owner):
    assert client_for().get(reverse("keys:exposure-report")).status_code == 302
    page = client_for(owner).get(reverse("keys:exposure-report"))
    assert page.status_code == 200
    assert 'type="password"' in page.content.decode()


def test_portal_report_of_an_invisible_key_says_no_match(exposed_key, other_owner):
    response = client_for(other_owner).post(reverse("keys:exposure-report"),
                                            {"secret": SECRET, "location": "slack #general"}, follow=True)
    html = response.content.decode()
    assert "matches none of the keys you can see" in html
    assert exposed_key.label not in html and SECRET not in html
    assert Exposure.objects.get().key == exposed_key


def test_portal_report_of_own_key_goes_to_the_key(exposed_key, owner):
    response = client_for(owner).post(reverse("keys:exposure-report"), {"secret": SECRET, "location": "a log"})
    assert response.status_code == 302
    assert response["Location"] == exposed_key.get_absolute_url()


def test_portal_form_errors_do_not_echo_the_secret(owner):
    response = client_for(owner).post(reverse("keys:exposure-report"), {"secret": SECRET, "location": ""})
    assert response.status_code == 400
    assert SECRET not in response.content.decode()


def test_exposure_list_page(owner, compliance_user, exposed_key):
    report_exposure(reporter=owner, source=ExposureSource.PORTAL, secret=SECRET, location="ci log")
    page = client_for(compliance_user).get(reverse("keys:exposures"))
    assert page.status_code == 200 and "ci log" in page.content.decode()
    assert client_for(owner).get(reverse("keys:exposures")).status_code == 403


# A fingerprint alone, and who may report


def test_a_fingerprint_of_a_key_the_reporter_cannot_see_revokes_nothing_and_answers_as_no_match(
    exposed_key, other_owner, compliance_user, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        matched = post(client_for(other_owner), fingerprint=exposed_key.fingerprint)
    unmatched = post(client_for(other_owner), fingerprint="ab" * 32)
    assert matched.status_code == unmatched.status_code == 201
    strip = lambda body: {k: v for k, v in body.items() if k != "id"}  # noqa: E731
    assert strip(matched.json()) == strip(unmatched.json())
    exposed_key.refresh_from_db()
    assert exposed_key.status == KeyStatus.ACTIVE
    assert sorted(a for m in mail.outbox for a in m.to) == sorted([exposed_key.owner.email, compliance_user.email])
    rows = client_for(compliance_user).get(reverse("exposure-list")).json()["results"]
    assert [(row["key"], row["triage"]) for row in rows] == [(None, None), (exposed_key.pk, "open")]


def test_a_fingerprint_from_a_token_out_of_its_scope_revokes_nothing(exposed_key):
    _, outside = make_token(issuing_system=factories.IssuingSystemFactory(name="Elsewhere"), name="Other")
    body = post(token_client(outside), fingerprint=exposed_key.fingerprint).json()
    assert body["key"] is None and body["message"] == NO_MATCH
    exposed_key.refresh_from_db()
    assert exposed_key.status == KeyStatus.ACTIVE


def test_customer_contacts_and_accounts_without_a_role_may_not_report(exposed_key, compliance_user):
    from rest_framework.authtoken.models import Token

    from contacts import access

    contact, _ = access.invite_contact(actor=compliance_user, customer=exposed_key.workflow.customer,
                                       name="Pat Contact", email="pat@acme.test")
    nobody = factories.UserFactory(username="nobody")
    for user in (contact.user, nobody):
        # A personal API token: no contact session for the contact pages' middleware to stop.
        client = token_client(Token.objects.create(user=user).key)
        for proof in ({"secret": SECRET}, {"fingerprint": exposed_key.fingerprint}):
            response = post(client, **proof)
            assert response.status_code == 403, response.content
            assert SECRET not in response.content.decode()
    assert not Exposure.objects.exists()
    exposed_key.refresh_from_db()
    assert exposed_key.status == KeyStatus.ACTIVE


def test_portal_fingerprint_of_an_invisible_key_says_no_match_and_revokes_nothing(exposed_key, other_owner):
    response = client_for(other_owner).post(reverse("keys:exposure-report"),
                                            {"fingerprint": exposed_key.fingerprint, "location": "a wiki page"},
                                            follow=True)
    html = response.content.decode()
    assert "matches none of the keys you can see" in html and exposed_key.label not in html
    exposed_key.refresh_from_db()
    assert exposed_key.status == KeyStatus.ACTIVE


def test_portal_report_page_refuses_accounts_without_a_role():
    nobody = factories.UserFactory(username="nobody")
    assert client_for(nobody).get(reverse("keys:exposure-report")).status_code == 403
    response = client_for(nobody).post(reverse("keys:exposure-report"), {"secret": SECRET, "location": "a"})
    assert response.status_code == 403
    assert not Exposure.objects.exists()


def test_compliance_triages_on_the_exposure_list(exposed_key, other_owner, compliance_user, owner):
    report_exposure(reporter=other_owner, source=ExposureSource.PORTAL, fingerprint=exposed_key.fingerprint,
                    location="wiki")
    exposure = Exposure.objects.get()
    page = client_for(compliance_user).get(reverse("keys:exposures"), {"triage": "open"})
    html = page.content.decode()
    assert page.status_code == 200 and reverse("keys:exposure-triage", args=[exposure.pk]) in html
    url = reverse("keys:exposure-triage", args=[exposure.pk])
    assert client_for(owner).post(url, {"decision": "revoke", "reason": "mine"}).status_code == 403
    refused = client_for(compliance_user).post(url, {"decision": "dismiss"}, follow=True)
    assert any("Say why" in str(m) for m in refused.context["messages"])
    done = client_for(compliance_user).post(url, {"decision": "revoke", "reason": "Confirmed with the owner"})
    assert done.status_code == 302
    exposed_key.refresh_from_db()
    assert exposed_key.status == KeyStatus.REVOKED
    listed = client_for(compliance_user).get(reverse("keys:exposures")).content.decode()
    assert "Key revoked after triage" in listed and url not in listed
