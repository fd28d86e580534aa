"""The reads every request makes (its session, its user, a personal token) run SQL compiled once
(portal.sessions, portal.backends, keys.api.authentication) and refuse exactly what Django's and DRF's
own reads refuse."""

import datetime

import pytest
from django.contrib.sessions.models import Session
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from keys.api import authentication
from portal import backends, sessions

pytestmark = pytest.mark.django_db


def test_a_signed_in_request_reads_its_session_and_user_through_compiled_sql(client, owner):
    client.force_login(owner)
    for _ in range(3):
        assert client.get(reverse("attestations:inbox")).status_code == 200
    assert backends._USER._compiled["default"] is not None
    # On PostgreSQL the session's expiry time is substituted; SQLite's adapter makes it a string, so
    # there the read is built each time, as Django builds it.
    assert (sessions._SESSION._compiled["default"] is not None) is (connection.vendor == "postgresql")


def test_an_expired_session_or_an_inactive_user_is_signed_out(client, owner, other_owner):
    client.force_login(owner)
    assert client.get(reverse("attestations:inbox")).status_code == 200
    Session.objects.update(expire_date=timezone.now() - datetime.timedelta(seconds=1))
    response = client.get(reverse("attestations:inbox"))
    assert response.status_code == 302 and response.url.startswith(reverse("login"))

    client.force_login(other_owner)
    assert client.get(reverse("attestations:inbox")).status_code == 200
    other_owner.is_active = False
    other_owner.save()
    response = client.get(reverse("attestations:inbox"))
    assert response.status_code == 302 and response.url.startswith(reverse("login"))


def test_personal_tokens_through_compiled_sql(owner, other_owner):
    token = Token.objects.create(user=owner)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    for _ in range(2):
        response = api.get(reverse("apikey-list"))
        assert response.status_code == 200
    assert authentication._PERSONAL_TOKEN._compiled["default"] is not None

    # (403, not 401: the first authentication class, the session's, names no WWW-Authenticate scheme.)
    wrong = token.key[:-1] + ("0" if token.key[-1] != "0" else "1")
    api.credentials(HTTP_AUTHORIZATION=f"Token {wrong}")
    response = api.get(reverse("apikey-list"))
    assert response.status_code == 403 and response.json()["detail"] == "Invalid token."

    inactive = Token.objects.create(user=other_owner)
    other_owner.is_active = False
    other_owner.save()
    api.credentials(HTTP_AUTHORIZATION=f"Token {inactive.key}")
    response = api.get(reverse("apikey-list"))
    assert response.status_code == 403 and response.json()["detail"] == "User inactive or deleted."
