"""Keys under exception in campaigns: items carry the exception, lapsed ones come back, confirming re-affirms."""

import datetime

import pytest
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from attestations.choices import Decision, ItemStatus
from attestations.models import CampaignSchedule
from attestations.services import campaigns, decisions
from attestations.services.campaigns import CampaignError
from attestations.views import inbox as views
from core.actors import system_user
from keys.choices import ExceptionKind, ExceptionStatus, LifecycleAction
from keys.models import KeyException
from keys.services import key_exceptions as exceptions
from tests import factories
from tests.api import client_for

pytestmark = pytest.mark.django_db


def days(n: int) -> datetime.date:
    return timezone.localdate() + datetime.timedelta(days=n)


def launch(actor, name="2026-Q4", **fields):
    campaign = campaigns.create_campaign(actor=actor, name=name, **fields)
    campaigns.launch_campaign(campaign, actor=actor)
    return campaign


def approved_exception(key, compliance_user, **fields):
    exception = factories.KeyExceptionFactory(key=key, **fields)
    return exceptions.approve_exception(exception, actor=compliance_user)


def lapse(exception, compliance_user=None):
    due = {"end_date": days(-1)} if exception.kind == ExceptionKind.TRANSITIONAL else {"review_date": days(-1)}
    KeyException.objects.filter(pk=exception.pk).update(**due)
    exceptions.sweep_lapsed_exceptions(actor=system_user())
    exception.refresh_from_db()
    return exception


@pytest.fixture
def not_due(owner):
    return factories.ApiKeyFactory(owner=owner, label="Not due", next_review_on=days(60))


def test_items_carry_the_open_approved_exception(compliance_user, owner, key):
    exception = approved_exception(key, compliance_user)
    plain = factories.ApiKeyFactory(owner=owner)
    factories.KeyExceptionFactory(key=plain, status=ExceptionStatus.REJECTED)
    factories.KeyExceptionFactory(key=plain, status=ExceptionStatus.WITHDRAWN)
    requested_only = factories.ApiKeyFactory(owner=owner)
    factories.KeyExceptionFactory(key=requested_only)
    campaign = launch(compliance_user)
    items = {item.key_id: item for item in campaign.items.all()}
    assert items[key.pk].exception == exception and not items[key.pk].exception_lapsed
    assert items[plain.pk].exception is None and items[requested_only.pk].exception is None
    assert items[key.pk].history.get().exception_id == exception.pk


def test_lapsed_transitional_exception_brings_the_key_into_a_due_only_campaign(compliance_user, not_due, owner):
    factories.ApiKeyFactory(owner=owner, label="Also not due", next_review_on=days(60))
    exception = lapse(approved_exception(not_due, compliance_user))
    assert exception.status == ExceptionStatus.EXPIRED
    campaign = launch(compliance_user, due_for_review_only=True)
    item = campaign.items.get()
    assert item.key == not_due and item.exception == exception and item.exception_lapsed


def test_lapsed_permanent_exception_stays_approved_and_is_flagged(compliance_user, not_due):
    exception = approved_exception(not_due, compliance_user, kind=ExceptionKind.PERMANENT, end_date=None,
                                   migration_target="", review_date=days(100), risk_acceptance="CISO accepts")
    exception = lapse(exception)
    assert exception.status == ExceptionStatus.APPROVED and exception.lapsed_on
    item = launch(compliance_user, due_for_review_only=True).items.get()
    assert item.exception == exception and item.exception_lapsed


def test_a_settled_lapse_does_not_force_the_key_into_later_campaigns(compliance_user, not_due, owner):
    lapse(approved_exception(not_due, compliance_user))
    item = launch(compliance_user, due_for_review_only=True).items.get()
    decisions.record_decision(item, actor=owner, decision=Decision.CONFIRM, affirm=True, reaffirm_exception=True,
                              justification="Migration slipped to next quarter.")
    not_due.refresh_from_db()
    assert not_due.next_review_on == days(30)
    factories.ApiKeyFactory(owner=owner, next_review_on=None)
    later = launch(compliance_user, name="2027-Q1", due_for_review_only=True)
    assert not later.items.filter(key=not_due).exists()


def test_scope_preview_counts_lapsed_keys(compliance_user, not_due):
    scope = CampaignSchedule(name="due", due_for_review_only=True)
    assert not campaigns.scope_queryset(scope).filter(pk=not_due.pk).exists()
    lapse(approved_exception(not_due, compliance_user))
    assert campaigns.scope_queryset(scope).filter(pk=not_due.pk).exists()


def test_confirming_under_exception_requires_reaffirming(compliance_user, owner, key):
    approved_exception(key, compliance_user)
    campaign = launch(compliance_user, review_cadence_days=90, exception_review_cadence_days=21)
    item = campaign.items.get(key=key)
    with pytest.raises(CampaignError) as refused:
        decisions.record_decision(item, actor=owner, decision=Decision.CONFIRM, affirm=True, justification="used")
    assert set(refused.value.errors) == {"reaffirm_exception"}
    item.refresh_from_db()
    assert item.status == ItemStatus.PENDING
    decisions.record_decision(item, actor=owner, decision=Decision.CONFIRM, affirm=True, justification="used",
                              reaffirm_exception=True)
    item.refresh_from_db()
    key.refresh_from_db()
    assert item.status == ItemStatus.CONFIRMED and item.exception_reaffirmed
    assert key.next_review_on == days(21)
    attest = key.events.get(action=LifecycleAction.ATTEST)
    assert attest.reason == "confirmed in campaign 2026-Q4 (exception re-affirmed)"


def test_confirming_without_exception_keeps_the_normal_cadence(compliance_user, owner, key):
    item = launch(compliance_user, review_cadence_days=90).items.get(key=key)
    decisions.record_decision(item, actor=owner, decision=Decision.CONFIRM, affirm=True, justification="used")
    key.refresh_from_db()
    item.refresh_from_db()
    assert key.next_review_on == days(90) and not item.exception_reaffirmed


def test_release_under_exception_needs_no_reaffirmation(compliance_user, owner, key):
    approved_exception(key, compliance_user)
    item = launch(compliance_user).items.get(key=key)
    decisions.record_decision(item, actor=owner, decision=Decision.RELEASE, reason="replaced", justification="Migrated to OAuth")
    item.refresh_from_db()
    assert item.status == ItemStatus.RELEASED


def test_bulk_confirm_refuses_items_under_exception(compliance_user, owner, key):
    approved_exception(key, compliance_user)
    plain = factories.ApiKeyFactory(owner=owner)
    campaign = launch(compliance_user)
    ids = list(campaign.items.values_list("pk", flat=True))
    done, refused = decisions.bulk_confirm(ids, actor=owner, justification="all used", affirm=True)
    assert done == [campaign.items.get(key=plain).pk]
    assert list(refused) == [campaign.items.get(key=key).pk]


def test_schedule_passes_its_exception_cadence(compliance_user):
    schedule = CampaignSchedule.objects.create(name="Quarterly", exception_review_cadence_days=14)
    campaign = campaigns.create_campaign(actor=compliance_user, name="from schedule", schedule=schedule)
    assert campaign.exception_review_cadence_days == 14


# The inbox


def test_inbox_row_shows_the_exception_and_the_reaffirm_checkbox(client, compliance_user, owner, not_due):
    exception = lapse(approved_exception(not_due, compliance_user, other_controls="IP allow-list at the edge"))
    item = launch(compliance_user, due_for_review_only=True).items.get()
    client.force_login(owner)
    text = client.get(reverse("attestations:inbox")).text
    row = text[text.index(f'id="item-{item.pk}"'):]
    assert "Under a transitional (migrating away) exception" in row
    assert escape(exception.business_justification) in row
    assert "Stored in a secret manager; IP allow-list at the edge" in row
    assert "Exception lapsed" in row and exception.end_date.strftime("%Y") in row
    assert 'name="reaffirm_exception"' in row
    detail = client.get(reverse("attestations:item", args=[item.pk])).text
    assert "Exception lapsed" in detail and 'name="reaffirm_exception"' in detail


def test_rows_without_exception_have_no_reaffirm_checkbox(client, compliance_user, owner, key):
    launch(compliance_user)
    client.force_login(owner)
    assert 'name="reaffirm_exception"' not in client.get(reverse("attestations:inbox")).text


def test_htmx_confirm_without_reaffirming_shows_the_error_beside_the_box(client, compliance_user, owner, key):
    approved_exception(key, compliance_user)
    item = launch(compliance_user).items.get(key=key)
    client.force_login(owner)
    url = reverse("attestations:decide", args=[item.pk])
    data = {"decision": "confirm", "affirm": "on", "justification": "used"}
    response = client.post(url, data, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert f'id="item-{item.pk}-confirm-reaffirm_exception-error"' in response.text
    assert "re-affirm its justification" in response.text
    item.refresh_from_db()
    assert item.status == ItemStatus.PENDING
    response = client.post(url, {**data, "reaffirm_exception": "on"})
    assert response.status_code == 302
    item.refresh_from_db()
    assert item.status == ItemStatus.CONFIRMED and item.exception_reaffirmed


def test_only_the_confirm_panel_of_an_item_under_exception_asks_to_reaffirm(compliance_user, owner, key):
    approved_exception(key, compliance_user)
    item = launch(compliance_user).items.select_related("exception").get(key=key)
    row = views.item_row(item, owner, decidable=True)
    html = "".join(render_to_string("attestations/_inbox_decision_panel.html",
                                    {"row": row, "hx_rows": True, "csrf_token": "token", "panel": p})
                   for p in row.panels)
    assert html.count('name="reaffirm_exception"') == 1
    assert (f'<label for="item-{item.pk}-confirm-reaffirm_exception">I re-affirm the justification of the exception '
            "and its compensating controls</label>") in html


# The API's decide


def test_api_confirm_needs_reaffirm_exception(compliance_user, owner, key):
    approved_exception(key, compliance_user)
    item = launch(compliance_user).items.get(key=key)
    client = client_for(owner)
    url = reverse("attestation-decide", args=[item.pk])
    body = {"decision": "confirm", "affirm": True, "justification": "used"}
    response = client.post(url, body, format="json")
    assert response.status_code == 400 and "reaffirm_exception" in response.json()
    listed = client.get(reverse("attestation-detail", args=[item.pk])).json()
    assert listed["exception"] == item.exception_id and listed["exception_lapsed"] is False
    response = client.post(url, {**body, "reaffirm_exception": True}, format="json")
    assert response.status_code == 200, response.content
    item.refresh_from_db()
    assert item.status == ItemStatus.CONFIRMED and item.exception_reaffirmed
