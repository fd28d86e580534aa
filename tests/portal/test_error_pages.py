"""A secret submitted to a request that then fails never appears on the error page or in the log."""

import logging

import pytest
from django.test import Client
from django.urls import reverse

from keys.services import lifecycle
from tests import factories

pytestmark = pytest.mark.django_db


def boom(**kwargs):
    raise RuntimeError("issuer database unavailable")


def test_technical_500_page_hides_the_secret(settings, admin_user, monkeypatch, caplog):
    settings.DEBUG = True
    monkeypatch.setattr(lifecycle, "register_key", boom)
    monkeypatch.setattr("keys.views.keys.lifecycle.register_key", boom, raising=False)
    workflow = factories.WorkflowFactory()
    system = factories.IssuingSystemFactory()
    secret = factories.make_secret("sk_live_")
    client = Client(raise_request_exception=False)
    client.force_login(admin_user)
    with caplog.at_level(logging.DEBUG):
        response = client.post(reverse("keys:register"), {
            "workflow": workflow.pk, "issuing_system": system.pk, "label": "x", "owner": admin_user.username,
            "secret": secret, "prefix": "sk_live_", "risk_tier": "medium", "issued_on": "2026-01-01",
        })
    assert response.status_code == 500
    page = response.content.decode()
    assert "issuer database unavailable" in page  # the real technical page was rendered
    assert secret not in page
    assert secret not in caplog.text
