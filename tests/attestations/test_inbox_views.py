import re

import pytest
from django.template.loader import render_to_string
from django.urls import reverse

from attestations.choices import Decision, ItemStatus, TransferStatus
from attestations.models import AttestationItem, OwnershipTransfer
from attestations.services import campaigns, decisions
from attestations.views import inbox as views
from keys.choices import KeyStatus
from tests import factories

pytestmark = pytest.mark.django_db

INBOX = reverse("attestations:inbox")
BULK = reverse("attestations:bulk-confirm")
HTMX = {"HTTP_HX_REQUEST": "true"}


def item_url(item):
    return reverse("attestations:item", args=[item.pk])


def decide_url(item):
    return reverse("attestations:decide", args=[item.pk])


def transfer_url(transfer, answer):
    return reverse("attestations:transfer", args=[transfer.pk, answer])


def confirm(**extra):
    return {"decision": "confirm", "affirm": "on", "justification": "still used by the nightly export", **extra}


def launch(compliance_user, name="2026-Q4", **fields):
    campaign = campaigns.create_campaign(actor=compliance_user, name=name, **fields)
    campaigns.launch_campaign(campaign, actor=compliance_user)
    return campaign


@pytest.fixture
def campaign(compliance_user, owner, other_owner):
    for _ in range(2):
        factories.ApiKeyFactory(owner=owner)
    factories.ApiKeyFactory(owner=other_owner)
    return launch(compliance_user)


@pytest.fixture
def item(campaign, owner):
    return campaign.items.filter(reviewer=owner).order_by("pk").first()


@pytest.fixture
def other_item(campaign, other_owner):
    return campaign.items.get(reviewer=other_owner)


def every_item_url(item):
    return [("get", item_url(item)), ("post", decide_url(item))]


# Permission matrix


def test_anonymous_is_sent_to_login_everywhere(client, item):
    transfer = OwnershipTransfer.objects.create(key=item.key, from_user=item.reviewer, to_user=item.reviewer,
                                                requested_by=item.reviewer, reason="x")
    urls = [("get", INBOX), ("post", BULK), ("post", transfer_url(transfer, "accept"))] + every_item_url(item)
    for method, url in urls:
        response = getattr(client, method)(url)
        assert response.status_code == 302, url
        assert response.url.startswith(reverse("login")), url


def test_post_views_refuse_get(client, owner, item):
    client.force_login(owner)
    assert client.get(decide_url(item)).status_code == 405
    assert client.get(BULK).status_code == 405


def test_reviewer_sees_own_items_only(client, owner, item, other_item):
    client.force_login(owner)
    response = client.get(INBOX)
    assert response.status_code == 200
    text = response.text
    assert item.key.label in text and item.key.prefix in text
    assert item.key.workflow.customer.name in text and item.key.workflow.purpose in text
    assert other_item.key.label not in text
    assert response.context["pending_count"] == 2
    assert client.get(item_url(item)).status_code == 200


def test_other_owner_gets_404_on_item_and_decide(client, other_owner, item):
    client.force_login(other_owner)
    for method, url in every_item_url(item):
        assert getattr(client, method)(url, confirm()).status_code == 404, url
    item.refresh_from_db()
    assert item.status == ItemStatus.PENDING


def test_compliance_sees_item_but_cannot_decide(client, compliance_user, item):
    client.force_login(compliance_user)
    response = client.get(item_url(item))
    assert response.status_code == 200
    assert decide_url(item) not in response.text
    response = client.post(decide_url(item), confirm())
    assert response.status_code == 400
    assert "Only the assigned reviewer or their delegate" in response.text
    item.refresh_from_db()
    assert item.status == ItemStatus.PENDING and item.decided_by is None
    assert item.history.count() == 1


def test_inbox_shows_row_details_and_recommendation(client, owner, compliance_user):
    factories.ApiKeyFactory(owner=owner, label="Never used key", last_used_at=None, scopes=["read:cases", "write:x"])
    launch(compliance_user)
    client.force_login(owner)
    text = client.get(INBOX).text
    assert "Never used key" in text and "never" in text
    assert "write:x" in text
    assert "Never used since it was issued" in text
    assert 'class="recommendation"' in text


# Decisions


def test_reviewer_confirms_without_js(client, owner, item):
    client.force_login(owner)
    response = client.post(decide_url(item), confirm(next=INBOX + "?status=pending"))
    assert response.status_code == 302 and response.url == INBOX + "?status=pending"
    item.refresh_from_db()
    assert item.status == ItemStatus.CONFIRMED and item.decided_by == owner and item.affirmed
    assert item.key.events.last().reason == "confirmed in campaign 2026-Q4"
    messages = [str(m) for m in client.get(INBOX).context["messages"]]
    assert messages == [f"Confirmed {item.key.label}."]


def test_unsafe_next_is_ignored(client, owner, item):
    client.force_login(owner)
    response = client.post(decide_url(item), confirm(next="https://evil.example/"))
    assert response.url == INBOX


def test_htmx_decision_returns_the_row(client, owner, item):
    client.force_login(owner)
    response = client.post(decide_url(item), confirm(), **HTMX)
    assert response.status_code == 200
    text = response.text
    assert text.lstrip().startswith("<article") and f'id="item-{item.pk}"' in text
    assert "<html" not in text
    assert "Confirmed" in text and 'role="status"' in text
    assert decide_url(item) not in text  # decided: no more forms
    item.refresh_from_db()
    assert item.status == ItemStatus.CONFIRMED


def test_htmx_errors_come_back_in_the_row(client, owner, item):
    client.force_login(owner)
    response = client.post(decide_url(item), {"decision": "confirm", "justification": ""}, **HTMX)
    assert response.status_code == 200
    text = response.text
    assert "Affirm that the key" in text and "This campaign asks for a justification." in text
    assert 'aria-invalid="true"' in text and "<details class=\"decision-panel\" open>" in text
    item.refresh_from_db()
    assert item.status == ItemStatus.PENDING


def test_errors_without_js_are_400_with_the_form(client, owner, item):
    client.force_login(owner)
    response = client.post(decide_url(item), {"decision": "release", "justification": "  "})
    assert response.status_code == 400
    assert "Say why the key is no longer needed." in response.text
    assert client.post(decide_url(item), {"decision": "shred"}).status_code == 400
    item.refresh_from_db()
    assert item.status == ItemStatus.PENDING


def test_release_suspends_the_key_for_its_grace_window(client, owner, item):
    client.force_login(owner)
    response = client.post(decide_url(item), {"decision": "release", "reason": "unused", "justification": "integration retired"})
    assert response.status_code == 302
    item.refresh_from_db()
    key = item.key
    key.refresh_from_db()
    assert item.status == ItemStatus.RELEASED
    assert key.status == KeyStatus.SUSPENDED and key.releases.get().status == "watching"
    assert "integration retired" in key.events.last().reason


def test_reassign_then_new_owner_accepts(client, owner, other_owner, item):
    client.force_login(owner)
    response = client.post(decide_url(item), {"decision": "reassign", "to": "nobody", "justification": "moved"})
    assert response.status_code == 400 and "No user named" in response.text
    response = client.post(decide_url(item), {"decision": "reassign", "to": other_owner.username,
                                              "justification": "bob's team runs it now"})
    assert response.status_code == 302
    item.refresh_from_db()
    assert item.status == ItemStatus.REASSIGNED and item.reassigned_to == other_owner
    transfer = OwnershipTransfer.objects.get(item=item)

    # Only the named person answers; anyone else gets 404.
    assert client.post(transfer_url(transfer, "accept")).status_code == 404
    client.force_login(other_owner)
    inbox = client.get(INBOX).text
    assert "Ownership offered to you" in inbox and transfer_url(transfer, "accept") in inbox
    assert client.post(transfer_url(transfer, "maybe")).status_code == 404
    response = client.post(transfer_url(transfer, "accept"))
    assert response.status_code == 302 and response.url == INBOX
    transfer.refresh_from_db()
    key = item.key
    key.refresh_from_db()
    assert transfer.status == TransferStatus.ACCEPTED
    assert key.owner == other_owner and key.rotation_required
    response = client.post(transfer_url(transfer, "decline"), follow=True)
    assert "already accepted" in response.text


def test_decline_keeps_the_owner(client, owner, other_owner, item):
    decisions.record_decision(item, actor=owner, decision=Decision.REASSIGN, to=other_owner, justification="x")
    transfer = OwnershipTransfer.objects.get(item=item)
    client.force_login(other_owner)
    client.post(transfer_url(transfer, "decline"))
    transfer.refresh_from_db()
    item.key.refresh_from_db()
    assert transfer.status == TransferStatus.DECLINED and item.key.owner == owner


def test_delegate_then_delegate_decides(client, owner, other_owner, item):
    client.force_login(owner)
    response = client.post(decide_url(item), {"decision": "delegate", "to": other_owner.username}, **HTMX)
    assert response.status_code == 200 and other_owner.username in response.text
    item.refresh_from_db()
    assert item.delegate == other_owner and item.status == ItemStatus.PENDING

    client.force_login(other_owner)
    inbox = client.get(INBOX)
    assert item.key.label in inbox.text
    row = next(row for row in inbox.context["rows"] if row.item.pk == item.pk)
    assert [panel.action.slug for panel in row.panels] == ["confirm", "release", "reassign"]
    assert client.get(item_url(item)).status_code == 200
    response = client.post(decide_url(item), {"decision": "delegate", "to": owner.username}, **HTMX)
    assert "Only the assigned reviewer can delegate" in response.text
    response = client.post(decide_url(item), confirm())
    assert response.status_code == 302
    item.refresh_from_db()
    assert item.status == ItemStatus.CONFIRMED and item.decided_by == other_owner


def test_second_decision_is_refused_with_a_message(client, owner, item):
    client.force_login(owner)
    assert client.post(decide_url(item), confirm()).status_code == 302
    response = client.post(decide_url(item), {"decision": "release", "justification": "changed my mind"})
    assert response.status_code == 400
    assert "This item was already decided (confirmed)." in response.text
    response = client.post(decide_url(item), confirm(), **HTMX)
    assert response.status_code == 200 and "already decided" in response.text
    item.refresh_from_db()
    assert item.status == ItemStatus.CONFIRMED
    assert item.key.status == KeyStatus.ACTIVE
    assert item.history.count() == 2


def test_item_detail_offers_forms_only_while_pending(client, owner, item):
    client.force_login(owner)
    response = client.get(item_url(item))
    assert decide_url(item) in response.text and "hx-post" not in response.text
    decisions.record_decision(item, actor=owner, decision=Decision.CONFIRM, justification="ok", affirm=True)
    text = client.get(item_url(item)).text
    assert decide_url(item) not in text
    assert "Confirmed in campaign 2026-Q4" in text  # the item's history


def _normalized(html):
    return re.sub(r"\s+", " ", re.sub(r">\s+<", "><", html)).strip()


def render_panels(row, **context) -> str:
    context = {"row": row, "csrf_token": "TOKEN", **context}
    return "".join(render_to_string("attestations/_inbox_decision_panel.html", {**context, "panel": panel})
                   for panel in row.panels)


@pytest.mark.parametrize("as_reviewer", [True, False])
def test_decision_panels_are_rendered_from_the_decision_forms(owner, other_owner, item, as_reviewer):
    row = views.item_row(item, owner if as_reviewer else other_owner, decidable=True)
    html = render_panels(row, return_to="/inbox/?page=2", hx_rows=True)
    decisions = ["confirm", "release", "reassign", "delegate"] if as_reviewer else ["confirm", "release", "reassign"]
    assert re.findall(r'name="decision" value="(\w+)"', html) == decisions
    assert html.count(f'hx-target="#item-{item.pk}"') == html.count('name="next" value="/inbox/?page=2"') == len(decisions)
    ids = re.findall(r' id="([^"]+)"', html)
    assert len(ids) == len(set(ids)) and all(i.startswith(f"item-{item.pk}-") for i in ids)
    labels = re.findall(r'<label for="([^"]+)">([^<]+)</label>', html)
    assert labels == [(f"item-{item.pk}-{panel.action.slug}-{field.name}", field.label)
                      for panel in row.panels for field in panel.form]
    assert "I affirm the purpose, scope and ownership are still right" in dict(labels).values()
    assert 'name="reaffirm_exception"' not in html and "field-error" not in html and " open>" not in html
    assert "hx-post" not in render_panels(row)


# Bulk confirm


def test_rows_share_blank_forms_but_not_field_ids(client, owner, campaign):
    client.force_login(owner)
    response = client.get(INBOX)
    first, second = (row for row in response.context["rows"] if row.pending)
    assert first.panels[0].form is second.panels[0].form  # built once per page
    ids = re.findall(r' id="([^"]+)"', response.text)
    assert len(ids) == len(set(ids))
    for row in (first, second):
        assert f'<label for="{row.dom_id}-confirm-affirm">' in response.text


def test_bulk_confirm_fields_are_rendered_from_its_form(client, owner, item):
    client.force_login(owner)
    text = client.get(INBOX).text
    assert ('<label for="bulk-affirm">I affirm the purpose, scope and ownership are still right for every selected key'
            '</label>') in text
    assert '<textarea name="justification" id="bulk-justification" rows="2" maxlength="2000"></textarea>' in text


def test_bulk_confirm_reports_refused_items(client, owner, other_owner, campaign, other_item):
    mine = list(campaign.items.filter(reviewer=owner).order_by("pk"))
    decisions.record_decision(mine[0], actor=owner, decision=Decision.CONFIRM, justification="ok", affirm=True)
    client.force_login(owner)
    response = client.post(BULK, {"items": [m.pk for m in mine] + [other_item.pk], "affirm": "on",
                                  "justification": "reviewed with the team"}, follow=True)
    messages = [str(m) for m in response.context["messages"]]
    assert messages[0] == "Confirmed 1 item."
    assert f"{mine[0].key.label} ({mine[0].key.prefix}…) was not confirmed: This item was already decided" in messages[1]
    # Another owner's item is refused without naming its key, as if it did not exist.
    assert messages[2] == f"Item #{other_item.pk} was not confirmed: No such item."
    assert other_item.key.label not in response.text
    statuses = dict(AttestationItem.objects.values_list("pk", "status"))
    assert statuses[mine[1].pk] == ItemStatus.CONFIRMED
    assert statuses[other_item.pk] == ItemStatus.PENDING


def test_bulk_confirm_answers_another_owners_item_as_a_missing_one(client, owner, campaign, other_item):
    """The answer must not tell which item ids exist: the API answers both with a 404."""
    missing = AttestationItem.objects.order_by("-pk").values_list("pk", flat=True).first() + 1000
    client.force_login(owner)
    response = client.post(BULK, {"items": [other_item.pk, missing], "affirm": "on", "justification": "ok"},
                           follow=True)
    messages = [str(m) for m in response.context["messages"]]
    assert [m.replace(f"#{other_item.pk}", "#N").replace(f"#{missing}", "#N") for m in messages] == [
        "Item #N was not confirmed: No such item."] * 2
    assert AttestationItem.objects.get(pk=other_item.pk).status == ItemStatus.PENDING


def test_bulk_confirm_needs_affirmation_and_a_selection(client, owner, campaign):
    client.force_login(owner)
    ids = list(campaign.items.filter(reviewer=owner).values_list("pk", flat=True))
    response = client.post(BULK, {"items": ids, "justification": "ok"}, follow=True)
    assert all("Affirm that the key" in str(m) for m in response.context["messages"])
    response = client.post(BULK, {"affirm": "on", "justification": "ok"}, follow=True)
    assert [str(m) for m in response.context["messages"]] == ["Select the items to confirm."]
    assert not AttestationItem.objects.exclude(status=ItemStatus.PENDING).exists()


# Listing


def test_filters_and_pending_first(client, owner, compliance_user, campaign, item):
    decisions.record_decision(item, actor=owner, decision=Decision.CONFIRM, justification="ok", affirm=True)
    other_customer_key = factories.ApiKeyFactory(owner=owner, label="Elsewhere")
    second = launch(compliance_user, name="Second")
    client.force_login(owner)
    rows = client.get(INBOX).context["rows"]
    # One pending in the first campaign; the confirmed key and the new one in the second.
    assert [row.pending for row in rows] == [True, True, True, False]
    assert rows[-1].item == item

    pending = client.get(INBOX, {"status": "pending"}).context["rows"]
    assert item not in [row.item for row in pending] and len(pending) == 3
    decided = client.get(INBOX, {"status": "decided"}).context["rows"]
    assert [row.item for row in decided] == [item]
    by_campaign = client.get(INBOX, {"campaign": second.pk}).context["rows"]
    assert {row.item.key for row in by_campaign} == {item.key, other_customer_key}
    customer = other_customer_key.workflow.customer
    by_customer = client.get(INBOX, {"customer": customer.pk}).context["rows"]
    assert [row.item.key for row in by_customer] == [other_customer_key]


def test_pagination_keeps_filters(client, owner, compliance_user):
    for _ in range(52):
        factories.ApiKeyFactory(owner=owner, workflow=factories.WorkflowFactory())
    launch(compliance_user)
    client.force_login(owner)
    response = client.get(INBOX, {"status": "pending"})
    assert len(response.context["rows"]) == 50
    assert "?status=pending&amp;page=2" in response.text
    assert len(client.get(INBOX, {"status": "pending", "page": 2}).context["rows"]) == 2


def test_query_count_does_not_grow(client, owner, compliance_user, other_owner, django_assert_max_num_queries):
    def make_items(n, name):
        for _ in range(n):
            factories.ApiKeyFactory(owner=owner, last_used_at=None)
        campaign = launch(compliance_user, name=name)
        first = campaign.items.order_by("pk").first()
        decisions.record_decision(first, actor=owner, decision=Decision.DELEGATE, to=other_owner)

    client.force_login(owner)
    make_items(5, "small")
    with django_assert_max_num_queries(15) as small:
        response = client.get(INBOX)
    assert len(response.context["rows"]) == 5
    make_items(45, "big")
    with django_assert_max_num_queries(len(small.captured_queries)):
        response = client.get(INBOX)
    assert len(response.context["rows"]) == 50
