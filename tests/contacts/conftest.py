import re

import pytest
from django.core import mail

from attestations.choices import DefaultAction
from attestations.services import campaigns
from contacts import access
from tests import factories

LINK = re.compile(r"http://[^\s]+/c/([A-Za-z0-9_-]+)/")
CODE = re.compile(r"one-time code for the keys portal is (\d{6})")


def last_link_token(address: str) -> str:
    message = [m for m in mail.outbox if address in m.to and LINK.search(m.body)][-1]
    return LINK.search(message.body).group(1)


def last_code(address: str) -> str:
    message = [m for m in mail.outbox if address in m.to and CODE.search(m.body)][-1]
    return CODE.search(message.body).group(1)


@pytest.fixture
def world(db, owner, compliance_user, admin_user, django_capture_on_commit_callbacks):
    """Acme with two keys assigned to contact Pat, one owned by alice; Globex with a key of contact Quinn;
    a campaign launched over both customers."""
    acme = factories.CustomerFactory(name="Acme Payments")
    globex = factories.CustomerFactory(name="Globex")
    acme_flow = factories.WorkflowFactory(customer=acme, name="Payouts")
    globex_flow = factories.WorkflowFactory(customer=globex, name="Claims")
    with django_capture_on_commit_callbacks(execute=True):
        pat, pat_token = access.invite_contact(actor=compliance_user, customer=acme, name="Pat Lee", email="pat@acme.test")
        quinn, _ = access.invite_contact(actor=compliance_user, customer=globex, name="Quinn Roe",
                                         email="quinn@globex.test")
    pat_keys = [factories.ApiKeyFactory(workflow=acme_flow, owner=owner, label=f"Acme payouts {n}") for n in (1, 2)]
    for key in pat_keys:
        access.assign_key(pat, key, actor=admin_user)
    alice_key = factories.ApiKeyFactory(workflow=acme_flow, owner=owner, label="Acme internal")
    quinn_key = factories.ApiKeyFactory(workflow=globex_flow, owner=owner, label="Globex claims")
    access.assign_key(quinn, quinn_key, actor=admin_user)
    campaign = campaigns.create_campaign(actor=compliance_user, name="2026-Q4", customers=[acme, globex],
                                         default_action=DefaultAction.KEEP_AND_FLAG)
    with django_capture_on_commit_callbacks(execute=True):
        campaigns.launch_campaign(campaign, actor=compliance_user)
    campaign.refresh_from_db()
    return {
        "acme": acme, "globex": globex, "pat": pat, "quinn": quinn, "pat_token": pat_token,
        "pat_keys": pat_keys, "alice_key": alice_key, "quinn_key": quinn_key, "campaign": campaign,
        "pat_items": list(campaign.items.filter(key__in=pat_keys).order_by("pk")),
        "quinn_item": campaign.items.get(key=quinn_key), "alice_item": campaign.items.get(key=alice_key),
    }
