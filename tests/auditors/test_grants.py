"""Compliance grants and ends auditor access: the service's rules, the pages (list, form, end now, password
link), the new auditor's first password, and the grant's chained history."""

import datetime

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from contacts import access
from core import roles
from core.auditors import services
from core.auditors.services import AuditorError, end_auditor_access, grant_auditor_access
from core.chain import verify_chain
from core.models import AuditorGrant, AuditorGrantState
from keys.services import tokens
from tests import factories

from .conftest import days_from_now, set_password_path

pytestmark = pytest.mark.django_db
User = get_user_model()

NEW_AUDITOR = {"username": "ines.auditor", "name": "Inès Moreau", "email": "Ines.Moreau@audit-firm.test",
               "engagement": "SOC 2 Type II 2027 (ref. AF-118)"}


def grant_form(**overrides):
    data = {**NEW_AUDITOR, "auditor": "", "starts_on": "", "ends_on": days_from_now(14).isoformat(), **overrides}
    return {k: v for k, v in data.items() if v is not None}


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


# Granting


def test_compliance_grants_access_to_a_new_auditor_who_chooses_a_password(compliance_user, django_capture_on_commit_callbacks):
    client = signed_in(compliance_user)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("auditors:grant"), grant_form())
    assert response.status_code == 302, response.content.decode()[:2000]
    auditor = User.objects.get(username="ines.auditor")
    assert roles.is_auditor(auditor) and not auditor.has_usable_password() and not auditor.is_staff
    assert auditor.email == "ines.moreau@audit-firm.test" and auditor.get_full_name() == "Inès Moreau"
    grant = auditor.auditor_grants.get()
    assert grant.state == AuditorGrantState.CURRENT and grant.granted_by == compliance_user
    assert grant.engagement == NEW_AUDITOR["engagement"]
    # Through the whole last day: access ends at the midnight after it.
    assert timezone.localtime(grant.ends_at) == timezone.make_aware(
        datetime.datetime.combine(days_from_now(15), datetime.time.min))
    assert grant.history.get().history_change_reason == f"granted by carol: {NEW_AUDITOR['engagement']}"
    (message,) = mail.outbox
    assert message.to == ["ines.moreau@audit-firm.test"] and "SOC 2 Type II 2027" in message.body
    assert "cannot change anything" in message.body and "Every page you open is recorded" in message.body
    # The link lets the auditor choose a password, once.
    anonymous = Client()
    link = set_password_path("ines.moreau@audit-firm.test")
    form_page = anonymous.get(link, follow=True)
    assert form_page.status_code == 200 and "Choose your password" in form_page.content.decode()
    done = anonymous.post(form_page.redirect_chain[-1][0],
                          {"new_password1": "correct horse battery 9", "new_password2": "correct horse battery 9"})
    assert done.status_code == 302 and done.url == reverse("auditors:password-set")
    auditor.refresh_from_db()
    assert auditor.check_password("correct horse battery 9")
    again = Client().get(link, follow=True)
    assert "This link does not work" in again.content.decode()
    # And signs in with it.
    signed = Client().post(reverse("login"), {"username": "ines.auditor", "password": "correct horse battery 9"})
    assert signed.status_code == 302 and signed.url == reverse("dashboard")


def test_the_password_link_is_for_auditor_accounts_only(owner):
    from django.contrib.auth.tokens import default_token_generator
    from django.utils.encoding import force_bytes
    from django.utils.http import urlsafe_base64_encode

    path = reverse("auditors:set-password", args=[urlsafe_base64_encode(force_bytes(owner.pk)),
                                                  default_token_generator.make_token(owner)])
    response = Client().get(path, follow=True)
    assert "This link does not work" in response.content.decode()


def test_an_existing_auditor_gets_access_again(compliance_user, auditor_user):
    grant = auditor_user.auditor_grants.get()
    end_auditor_access(compliance_user, grant, reason="fieldwork done")
    again = grant_auditor_access(compliance_user, auditor=auditor_user, engagement="Follow-up review",
                                 ends_on=days_from_now(5))
    assert again.state == AuditorGrantState.CURRENT and auditor_user.auditor_grants.count() == 2


def test_a_later_grant_is_scheduled(compliance_user, auditor_user):
    later = grant_auditor_access(compliance_user, auditor=factories.AuditorFactory(username="petra"),
                                 engagement="Year-end audit", starts_on=days_from_now(40), ends_on=days_from_now(49))
    assert later.state == AuditorGrantState.SCHEDULED
    assert timezone.localtime(later.starts_at).time() == datetime.time.min


@pytest.mark.parametrize("actor", ["owner", "admin_user", "auditor_user"])
def test_only_compliance_grants(request, actor):
    user = request.getfixturevalue(actor)
    with pytest.raises(AuditorError, match="Only compliance"):
        grant_auditor_access(user, engagement="x", ends_on=days_from_now(3), username="nobody", name="No Body",
                             email="nobody@audit.test")
    client = signed_in(user)
    assert client.get(reverse("auditors:grant")).status_code == 403
    assert client.post(reverse("auditors:grant"), grant_form()).status_code == 403
    assert not User.objects.filter(username="ines.auditor").exists()


@pytest.mark.parametrize("holder", ["owner", "compliance_user", "admin_user", "contact", "plain"])
def test_never_to_an_account_with_another_role(request, compliance_user, holder):
    if holder == "contact":
        customer = factories.CustomerFactory()
        user = access.invite_contact(actor=compliance_user, customer=customer, name="Pat Lee", email="pat@c.test")[0].user
    elif holder == "plain":
        user = factories.UserFactory(username="someone")
    else:
        user = request.getfixturevalue(holder)
    # Even once made an auditor by hand in the admin, the other role keeps it out.
    if holder != "plain":
        factories._join(user, True, roles.AUDITOR)
    with pytest.raises(AuditorError) as refused:
        grant_auditor_access(compliance_user, auditor=user, engagement="x", ends_on=days_from_now(3))
    assert set(refused.value.errors) == {"auditor"}
    assert not AuditorGrant.objects.filter(auditor=user).exists()


@pytest.mark.parametrize(("overrides", "field", "message"), [
    ({"engagement": ""}, "engagement", "Name the engagement"),
    ({"engagement": "Audit\u202e2027"}, "engagement", "invisible character"),
    ({"ends_on": ""}, "ends_on", "auditor access always ends"),
    ({"ends_on": "2027-02-30"}, "ends_on", "Enter a date"),
    ({"starts_on": "2020-01-01"}, "starts_on", "today"),
    ({"starts_on": days_from_now(10).isoformat(), "ends_on": days_from_now(9).isoformat()}, "ends_on", "comes before"),
    ({"ends_on": days_from_now(90).isoformat()}, "ends_on", "at most 90 days"),
    ({"username": ""}, "username", "Give the auditor's username"),
    ({"username": "carol"}, "username", "taken"),
    ({"username": "has space"}, "username", "valid username"),
    ({"name": ""}, "name", "Give the auditor's name"),
    ({"email": "not-an-address"}, "email", "valid email"),
    ({"email": "carol@example.test"}, "email", "belongs to a portal account"),
])
def test_bad_input_is_refused_beside_its_field_and_writes_nothing(compliance_user, overrides, field, message):
    users = User.objects.count()
    response = signed_in(compliance_user).post(reverse("auditors:grant"), grant_form(**overrides))
    assert response.status_code == 400
    form = response.context["form"]
    assert any(message in error for error in form.errors.get(field, [])), form.errors
    assert User.objects.count() == users and not AuditorGrant.objects.exists() and not mail.outbox


def test_an_empty_form_says_everything_that_is_missing_at_once(compliance_user):
    response = signed_in(compliance_user).post(reverse("auditors:grant"), {})
    assert response.status_code == 400
    assert set(response.context["form"].errors) == {"username", "name", "email", "engagement", "ends_on"}


def test_the_maximum_is_a_setting(compliance_user, settings):
    settings.AUDITOR_GRANT_MAX_DAYS = 7
    with pytest.raises(AuditorError, match="at most 7 days"):
        grant_auditor_access(compliance_user, engagement="x", ends_on=days_from_now(7), **{
            k: NEW_AUDITOR[k] for k in ("username", "name", "email")})
    assert grant_auditor_access(compliance_user, engagement="x", ends_on=days_from_now(6), **{
        k: NEW_AUDITOR[k] for k in ("username", "name", "email")})


def test_one_open_grant_at_a_time(compliance_user, auditor_user):
    response = signed_in(compliance_user).post(reverse("auditors:grant"), grant_form(
        auditor=auditor_user.pk, username="", name="", email="", ends_on=days_from_now(3).isoformat()))
    assert response.status_code == 400
    assert "already has access" in response.context["form"].errors["auditor"][0]
    assert auditor_user.auditor_grants.count() == 1


def test_an_integration_token_never_acts_as_an_auditor(admin_user, auditor_user, key):
    with pytest.raises(tokens.TokenError, match="not an auditor"):
        tokens.create_token(actor=admin_user, name="Sync", acts_as=auditor_user, issuing_system=key.issuing_system)


# The list and ending access


def test_the_list_filters_and_offers_compliance_its_actions(compliance_user, admin_user, auditor_user):
    ended = grant_auditor_access(compliance_user, auditor=factories.AuditorFactory(username="otto"),
                                 engagement="Closed engagement", ends_on=days_from_now(2))
    end_auditor_access(compliance_user, ended, reason="report delivered")
    page = signed_in(compliance_user).get(reverse("auditors:list"), {"state": "open"})
    html = page.content.decode()
    assert page.status_code == 200 and "audrey" in html and "otto" not in html and ">End now</button>" in html
    assert ">Grant access</a>" in html
    ended_page = signed_in(compliance_user).get(reverse("auditors:list"), {"state": "ended"}).content.decode()
    assert "otto" in ended_page and "report delivered" in ended_page and "audrey" not in ended_page
    assert "otto" in signed_in(compliance_user).get(reverse("auditors:list"), {"q": "closed eng"}).content.decode()
    # Admins read the list, and neither grant nor end.
    admin_page = signed_in(admin_user).get(reverse("auditors:list")).content.decode()
    assert "audrey" in admin_page and ">End now</button>" not in admin_page and ">Grant access</a>" not in admin_page


def test_the_list_is_paginated(compliance_user):
    for n in range(55):
        grant_auditor_access(compliance_user, auditor=factories.AuditorFactory(username=f"aud{n:02d}"),
                             engagement=f"Engagement {n}", ends_on=days_from_now(3))
    first = signed_in(compliance_user).get(reverse("auditors:list"))
    assert first.content.decode().count('id="grant-') == 50
    second = signed_in(compliance_user).get(first.context["table"].page.next_url)
    assert second.content.decode().count('id="grant-') == 5


def test_compliance_ends_access_now_and_the_auditors_sessions_end(compliance_user, auditor_user):
    auditor = signed_in(auditor_user)
    assert auditor.get(reverse("keys:list")).status_code == 200
    grant = auditor_user.auditor_grants.get()
    response = signed_in(compliance_user).post(reverse("auditors:end", args=[grant.pk]), {"reason": "fieldwork over"})
    assert response.status_code == 302
    grant.refresh_from_db()
    assert grant.state == AuditorGrantState.ENDED and grant.ended_by == compliance_user
    assert grant.end_reason == "fieldwork over"
    assert grant.history.latest("history_id").history_change_reason == "ended early by carol: fieldwork over"
    after = auditor.get(reverse("keys:list"))
    assert after.status_code == 302 and after.url.startswith(reverse("login"))
    assert "_auth_user_id" not in auditor.session
    # Ending it twice changes nothing.
    with pytest.raises(AuditorError, match="already over"):
        end_auditor_access(compliance_user, grant)


@pytest.mark.parametrize("actor", ["admin_user", "owner", "auditor_user"])
def test_only_compliance_ends_access(request, compliance_user, auditor_user, actor):
    grant = auditor_user.auditor_grants.get()
    response = signed_in(request.getfixturevalue(actor)).post(reverse("auditors:end", args=[grant.pk]))
    assert response.status_code == 403
    grant.refresh_from_db()
    assert grant.state == AuditorGrantState.CURRENT


def test_a_new_password_link_for_an_auditor_who_has_none(compliance_user, auditor_user,
                                                        django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        grant = grant_auditor_access(compliance_user, engagement="x", ends_on=days_from_now(3), **{
            k: NEW_AUDITOR[k] for k in ("username", "name", "email")})
    client = signed_in(compliance_user)
    assert "Send password link" in client.get(reverse("auditors:list")).content.decode()
    response = client.post(reverse("auditors:send-link", args=[grant.pk]), follow=True)
    assert "A new link to choose a password was emailed" in response.content.decode()
    assert len(mail.outbox) == 2 and mail.outbox[-1].to == ["ines.moreau@audit-firm.test"]
    # audrey has a password: no link for her.
    refused = client.post(reverse("auditors:send-link", args=[auditor_user.auditor_grants.get().pk]), follow=True)
    assert "has chosen a password already" in refused.content.decode() and len(mail.outbox) == 2


def test_grants_are_in_the_chained_history(compliance_user, auditor_user):
    grant = auditor_user.auditor_grants.get()
    end_auditor_access(compliance_user, grant)
    assert services.expire_auditor_grants() == 0
    assert grant.history.count() == 2
    result = verify_chain()
    assert result.ok, result.problems
