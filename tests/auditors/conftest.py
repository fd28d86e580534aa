import datetime
import re
from contextlib import contextmanager
from unittest import mock

import pytest
from django.core import mail
from django.utils import timezone

from attestations.choices import DefaultAction
from attestations.services import campaigns
from tests.attestations.export_world import owner_dossier_export

SET_PASSWORD_LINK = re.compile(r"http://[^\s]+(/account/set-password/[^\s]+/)")


def set_password_path(address: str) -> str:
    message = [m for m in mail.outbox if address in m.to and SET_PASSWORD_LINK.search(m.body)][-1]
    return SET_PASSWORD_LINK.search(message.body).group(1)


@contextmanager
def clock_at(moment: datetime.datetime):
    """Every ``timezone.now()`` of the portal (services, middleware, sessions, the access log) answers ``moment``."""
    with mock.patch("django.utils.timezone.now", return_value=moment):
        yield


@pytest.fixture
def long_sessions(settings):
    """Sessions that outlive a moved clock, so that only the auditor's grant can end them."""
    settings.SESSION_COOKIE_AGE = 400 * 24 * 3600
    settings.SESSION_IDLE_TIMEOUT = 0


@pytest.fixture
def world(owner, other_owner, compliance_user, admin_user, auditor_user, key, other_key, media_root):
    """A launched campaign over alice's and bob's keys, alice's key dossier (done, with a file), and the auditor."""
    campaign = campaigns.create_campaign(actor=compliance_user, name="2026-Q4", default_action=DefaultAction.KEEP_AND_FLAG)
    campaigns.launch_campaign(campaign, actor=compliance_user)
    world = {"owner": owner, "other": other_owner, "compliance": compliance_user, "admin": admin_user,
             "auditor": auditor_user, "key": key, "other_key": other_key, "campaign": campaign,
             "item": campaign.items.get(key=key), "grant": auditor_user.auditor_grants.get()}
    owner_dossier_export(world)
    return world


def days_from_now(days: int) -> datetime.date:
    return timezone.localdate() + datetime.timedelta(days=days)

