import datetime

import pytest
from django.urls import reverse
from django.utils import timezone

from keys.choices import KeyStatus, LifecycleAction, RevocationReason
from keys.models import ApiKey, LifecycleEvent
from keys.services import lifecycle
from keys.views.keys import KEY_ACTIONS
from tests import factories

pytestmark = pytest.mark.django_db

ACTION_SLUGS = ["approve", "suspend", "reinstate", "release", "revoke", "rotate", "change-owner", "expire"]


def detail_url(key):
    return reverse("keys:detail", args=[key.pk])


def action_url(key, slug):
    return reverse("keys:action", args=[key.pk, slug])


def every_key_url(key):
    """Every key page, as (method, url). A new slug in KEY_ACTIONS without a test entry fails here."""
    assert sorted(KEY_ACTIONS) == sorted(ACTION_SLUGS)
    return [("get", detail_url(key))] + [("post", action_url(key, slug)) for slug in ACTION_SLUGS]


# Permission matrix


def test_anonymous_is_sent_to_login_everywhere(client, key):
    urls = [("get", reverse("keys:list")), ("get", reverse("keys:register")), ("post", reverse("keys:register"))]
    for method, url in urls + every_key_url(key):
        response = getattr(client, method)(url)
        assert response.status_code == 302, url
        assert response.url.startswith(reverse("login")), url


def test_owner_sees_own_key(client, owner, key):
    client.force_login(owner)
    response = client.get(detail_url(key))
    assert response.status_code == 200
    assert key.label in response.text
    assert key.prefix in response.text
    assert key.workflow.purpose in response.text


def test_other_owner_gets_404_on_every_key_url(client, other_owner, key):
    client.force_login(other_owner)
    for method, url in every_key_url(key):
        assert getattr(client, method)(url, {"reason": "x"}).status_code == 404, url


def test_other_owner_does_not_see_key_in_list(client, other_owner, key, other_key):
    client.force_login(other_owner)
    response = client.get(reverse("keys:list"))
    assert other_key.label in response.text
    assert key.label not in response.text


def test_owner_cannot_act_on_own_key(client, owner, key):
    client.force_login(owner)
    for _, url in every_key_url(key)[1:]:
        assert client.post(url, {"reason": "mine"}).status_code == 403, url
    key.refresh_from_db()
    assert key.status == KeyStatus.ACTIVE
    response = client.get(detail_url(key))
    assert 'action="' + action_url(key, "suspend") not in response.text


def test_unknown_action_is_404(client, admin_user, key):
    client.force_login(admin_user)
    assert client.post(action_url(key, "delete"), {"reason": "x"}).status_code == 404


def test_actions_need_post(client, admin_user, key):
    client.force_login(admin_user)
    assert client.get(action_url(key, "suspend")).status_code == 405


def test_compliance_reads_every_key_but_acts_on_none(client, compliance_user, key, other_key):
    client.force_login(compliance_user)
    response = client.get(reverse("keys:list"))
    assert key.label in response.text and other_key.label in response.text
    assert client.get(detail_url(key)).status_code == 200
    for _, url in every_key_url(key)[1:]:
        assert client.post(url, {"reason": "audit"}).status_code == 403, url
    assert client.get(reverse("keys:register")).status_code == 403
    assert client.post(reverse("keys:register"), {}).status_code == 403
    key.refresh_from_db()
    assert key.status == KeyStatus.ACTIVE
    assert 'action="' + action_url(key, "suspend") not in client.get(detail_url(key)).text


def test_owners_cannot_register(client, owner):
    client.force_login(owner)
    assert client.get(reverse("keys:register")).status_code == 403


# Admin actions


def test_detail_offers_only_legal_actions(client, admin_user, key):
    client.force_login(admin_user)
    text = client.get(detail_url(key)).text
    for slug in ("suspend", "revoke", "rotate", "change-owner"):
        assert action_url(key, slug) in text
    for slug in ("approve", "reinstate", "expire"):
        assert action_url(key, slug) not in text

    pending = factories.ApiKeyFactory(status=KeyStatus.PENDING)
    text = client.get(detail_url(pending)).text
    assert action_url(pending, "approve") in text
    assert action_url(pending, "suspend") not in text

    revoked = factories.ApiKeyFactory(status=KeyStatus.REVOKED)
    text = client.get(detail_url(revoked)).text
    assert not any(action_url(revoked, slug) in text for slug in ACTION_SLUGS)


def test_admin_suspends_and_reinstates(client, admin_user, key):
    client.force_login(admin_user)
    response = client.post(action_url(key, "suspend"), {"reason": "investigating a leak report"})
    assert response.status_code == 302 and response.url == detail_url(key)
    key.refresh_from_db()
    assert key.status == KeyStatus.SUSPENDED
    record = key.history.latest()
    assert record.history_user == admin_user
    assert record.history_change_reason == "investigating a leak report"
    event = key.events.get()
    assert (event.action, event.from_status, event.to_status, event.actor) == (
        LifecycleAction.SUSPEND, KeyStatus.ACTIVE, KeyStatus.SUSPENDED, admin_user
    )

    response = client.post(action_url(key, "reinstate"), {"reason": "cleared"}, follow=True)
    assert response.status_code == 200
    key.refresh_from_db()
    assert key.status == KeyStatus.ACTIVE
    text = response.text
    assert "Reinstate: done" in text
    assert "investigating a leak report" in text and "cleared" in text
    assert text.index("cleared") < text.index("investigating a leak report"), "history is newest first"


def test_admin_approves_pending_key(client, admin_user, owner):
    key = factories.ApiKeyFactory(owner=owner, status=KeyStatus.PENDING)
    client.force_login(admin_user)
    response = client.post(action_url(key, "approve"), {"reference": "CHG-42", "reason": ""})
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.status == KeyStatus.ACTIVE
    assert (key.approved_by, key.approval_reference) == (admin_user, "CHG-42")
    assert "CHG-42" in client.get(detail_url(key)).text


def test_admin_revokes_with_reason_code(client, admin_user, key):
    client.force_login(admin_user)
    response = client.post(action_url(key, "revoke"), {"reason_code": RevocationReason.CONTRACT_ENDED, "reason": ""})
    assert response.status_code == 302
    key.refresh_from_db()
    assert (key.status, key.revocation_reason) == (KeyStatus.REVOKED, RevocationReason.CONTRACT_ENDED)
    assert key.history.latest().history_user == admin_user


def test_revoke_needs_known_reason_code(client, admin_user, key):
    client.force_login(admin_user)
    response = client.post(action_url(key, "revoke"), {"reason_code": "bored"})
    assert response.status_code == 400
    key.refresh_from_db()
    assert key.status == KeyStatus.ACTIVE


def test_admin_changes_owner(client, admin_user, key, other_owner):
    client.force_login(admin_user)
    response = client.post(action_url(key, "change-owner"), {"new_owner": other_owner.username, "reason": "team move"})
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.owner == other_owner and key.rotation_required
    text = client.get(detail_url(key)).text
    assert "team move" in text
    assert "alice" in text and "bob" in text


def test_change_owner_to_same_owner_shows_lifecycle_error(client, admin_user, key, owner):
    client.force_login(admin_user)
    response = client.post(action_url(key, "change-owner"), {"new_owner": owner.username, "reason": "noop"})
    assert response.status_code == 400
    assert "already owns the key" in response.text


def test_suspend_needs_reason(client, admin_user, key):
    client.force_login(admin_user)
    response = client.post(action_url(key, "suspend"), {"reason": ""})
    assert response.status_code == 400
    assert "This field is required" in response.text
    key.refresh_from_db()
    assert key.status == KeyStatus.ACTIVE


def test_illegal_transition_is_refused_with_400(client, admin_user, key):
    client.force_login(admin_user)
    response = client.post(action_url(key, "reinstate"), {"reason": "not suspended"})
    assert response.status_code == 400
    assert "cannot be reinstated" in response.text
    assert not LifecycleEvent.objects.filter(key=key).exists()


def test_expire_only_after_expiry_date(client, admin_user, key):
    client.force_login(admin_user)
    assert client.post(action_url(key, "expire"), {"reason": ""}).status_code == 400
    key.expires_on = timezone.localdate() - datetime.timedelta(days=1)
    key.save()
    assert action_url(key, "expire") in client.get(detail_url(key)).text
    assert client.post(action_url(key, "expire"), {"reason": ""}).status_code == 302
    key.refresh_from_db()
    assert key.status == KeyStatus.EXPIRED


# Secrets never come back


def assert_secret_nowhere(secret, *responses):
    for response in responses:
        assert secret not in response.content.decode(), "secret echoed in a response"
    for row in ApiKey.objects.values():
        assert secret not in str(row)
    for row in ApiKey.history.values():
        assert secret not in str(row)
    for row in LifecycleEvent.objects.values():
        assert secret not in str(row)


def register_data(**overrides):
    workflow = overrides.pop("workflow", None) or factories.WorkflowFactory()
    data = {
        "workflow": workflow.pk,
        "issuing_system": factories.IssuingSystemFactory().pk,
        "label": "Screening export",
        "owner": "alice",
        "steward": "",
        "secret": factories.make_secret("sk_live_"),
        "fingerprint": "",
        "prefix": "sk_live_",
        "scopes": "read:cases, write:reports  read:cases",
        "risk_tier": "high",
        "issued_on": "",
        "expires_on": (timezone.localdate() + datetime.timedelta(days=365)).isoformat(),
        "next_review_on": "",
        "reason": "CHG-7",
    }
    data.update(overrides)
    return data


def test_admin_registers_key_by_secret(client, admin_user, owner):
    client.force_login(admin_user)
    data = register_data()
    response = client.post(reverse("keys:register"), data)
    key = ApiKey.objects.get()
    assert response.status_code == 302 and response.url == detail_url(key)
    assert (key.status, key.owner, key.prefix, key.risk_tier) == (KeyStatus.PENDING, owner, "sk_live_", "high")
    assert key.scopes == ["read:cases", "write:reports"]
    assert key.history.get().history_user == admin_user
    followed = client.get(detail_url(key))
    assert_secret_nowhere(data["secret"], response, followed)


def test_register_by_fingerprint(client, admin_user, owner):
    client.force_login(admin_user)
    data = register_data(secret="", fingerprint="ab" * 32, prefix="pk_9f")
    assert client.post(reverse("keys:register"), data).status_code == 302
    assert ApiKey.objects.get().fingerprint == "ab" * 32


def test_register_form_errors_never_echo_the_secret(client, admin_user, owner):
    client.force_login(admin_user)
    data = register_data(label="", prefix="not-the-start")
    response = client.post(reverse("keys:register"), data)
    assert response.status_code == 400
    assert "This field is required" in response.text
    assert_secret_nowhere(data["secret"], response)

    response = client.post(reverse("keys:register"), dict(data, label="Screening export"))
    assert response.status_code == 400
    assert "The prefix must be the start of the secret." in response.text
    assert not ApiKey.objects.exists()
    assert_secret_nowhere(data["secret"], response)


def test_register_duplicate_secret_maps_error_to_field(client, admin_user, owner):
    client.force_login(admin_user)
    data = register_data()
    assert client.post(reverse("keys:register"), data).status_code == 302
    response = client.post(reverse("keys:register"), dict(data, label="Again"))
    assert response.status_code == 400
    assert "already registered" in response.text
    assert ApiKey.objects.count() == 1
    assert_secret_nowhere(data["secret"], response)


def test_register_refuses_decommissioned_workflow(client, admin_user, owner):
    client.force_login(admin_user)
    workflow = factories.WorkflowFactory(status="decommissioned")
    response = client.post(reverse("keys:register"), register_data(workflow=workflow))
    assert response.status_code == 400
    assert "decommissioned" in response.text


def test_rotate_never_echoes_the_secret(client, admin_user, key):
    client.force_login(admin_user)
    secret = factories.make_secret("sk_live_")
    bad = client.post(action_url(key, "rotate"), {"secret": secret, "prefix": "wrong_", "reason": ""})
    assert bad.status_code == 400
    assert "The prefix must be the start of the secret." in bad.text
    assert_secret_nowhere(secret, bad)

    good = client.post(action_url(key, "rotate"), {"secret": secret, "prefix": "sk_live_", "reason": "yearly"}, follow=True)
    assert good.status_code == 200
    key.refresh_from_db()
    assert key.prefix == "sk_live_" and key.last_rotated_at is not None
    assert key.history.latest().history_user == admin_user
    assert_secret_nowhere(secret, good)


# List, filters and query counts


def test_list_filters(client, compliance_user):
    today = timezone.localdate()
    acme = factories.CustomerFactory(name="Acme")
    acme_flow = factories.WorkflowFactory(customer=acme, environment="staging")
    due = factories.ApiKeyFactory(label="due-key", workflow=acme_flow, next_review_on=today + datetime.timedelta(days=5))
    later = factories.ApiKeyFactory(
        label="later-key", prefix="pk_later", next_review_on=today + datetime.timedelta(days=200),
        last_used_at=timezone.now() - datetime.timedelta(days=2), risk_tier="critical",
    )
    suspended = factories.ApiKeyFactory(
        label="suspended-key", status=KeyStatus.SUSPENDED, next_review_on=None,
        last_used_at=timezone.now() - datetime.timedelta(days=120),
    )
    client.force_login(compliance_user)

    def labels(**params):
        response = client.get(reverse("keys:list"), params)
        assert response.status_code == 200
        return {k.label for k in response.context["table"].data}

    assert labels() == {"due-key", "later-key", "suspended-key"}
    assert labels(q="pk_LATER") == {"later-key"}
    assert labels(q="due") == {"due-key"}
    assert labels(status="suspended") == {"suspended-key"}
    assert labels(customer=acme.pk) == {"due-key"}
    assert labels(workflow=acme_flow.pk) == {"due-key"}
    assert labels(environment="staging") == {"due-key"}
    assert labels(owner=due.owner.username) == {"due-key"}
    assert labels(risk_tier="critical") == {"later-key"}
    assert labels(due_for_review="true") == {"due-key"}
    assert labels(due_for_review="false") == {"later-key", "suspended-key"}
    assert labels(unused_days=30) == {"due-key", "suspended-key"}
    assert labels(unused_days=1) == {"due-key", "later-key", "suspended-key"}
    assert labels(unused_days=200) == {"due-key"}
    assert later.pk and suspended.pk


def test_owner_filter_choices_leak_no_other_customers(client, owner, key, other_key):
    client.force_login(owner)
    text = client.get(reverse("keys:list")).text
    assert key.workflow.customer.name in text
    assert other_key.workflow.customer.name not in text


def test_list_is_sortable_and_paginated(client, compliance_user):
    for n in range(30):
        factories.ApiKeyFactory(label=f"bulk-{n:02d}")
    client.force_login(compliance_user)
    response = client.get(reverse("keys:list"), {"sort": "-label"})
    rows = list(response.context["table"].page.object_list)
    assert len(rows) == 25
    assert rows[0].record.label == "bulk-29"
    page2 = client.get(response.context["table"].page.next_url)
    assert len(page2.context["table"].page.object_list) == 5
    assert "bulk-00" in page2.text


def test_list_renders_table_only_for_htmx(client, owner, key):
    client.force_login(owner)
    response = client.get(reverse("keys:list"), {"q": key.label}, headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert key.label in response.text
    assert "<html" not in response.text
    assert "HX-Request" in response["Vary"]


@pytest.mark.parametrize("user_fixture", ["compliance_user", "owner"])
def test_list_query_count_does_not_grow(client, request, django_assert_max_num_queries, user_fixture):
    user = request.getfixturevalue(user_fixture)
    client.force_login(user)

    def make_keys(n):
        for _ in range(n):
            factories.ApiKeyFactory(owner=user if user_fixture == "owner" else factories.OwnerFactory())

    make_keys(2)
    with django_assert_max_num_queries(12) as small:
        client.get(reverse("keys:list"))
    make_keys(20)
    with django_assert_max_num_queries(len(small.captured_queries)):
        response = client.get(reverse("keys:list"))
    assert len(response.context["table"].page.object_list) == 22


def test_detail_timeline_merges_events_and_history(client, compliance_user, admin_user, owner):
    key = lifecycle.register_key(
        actor=admin_user, workflow=factories.WorkflowFactory(), issuing_system=factories.IssuingSystemFactory(),
        label="Timeline key", owner=owner, fingerprint="cd" * 32, prefix="tl_", reason="CHG-1",
    )
    key = lifecycle.approve_key(key, actor=admin_user, reference="CHG-1")
    key = lifecycle.suspend_key(key, actor=admin_user, reason="suspicious calls")
    key.label = "Timeline key renamed"
    key._history_user = admin_user
    key._change_reason = "typo"
    key.save()
    client.force_login(compliance_user)
    response = client.get(detail_url(key))
    timeline = response.context["timeline"]
    assert [entry.title for entry in timeline] == ["Changed", "Suspended", "Approved", "Registered"]
    assert all(entry.actor == admin_user for entry in timeline)
    suspended = timeline[1]
    assert suspended.transition == ("Active", "Suspended")
    assert suspended.reason == "suspicious calls"
    assert {"field": "status", "old": "Active", "new": "Suspended"} in suspended.changes
    assert {"field": "label", "old": "Timeline key", "new": "Timeline key renamed"} in timeline[0].changes
    approved = timeline[2]
    assert {"field": "approved by", "old": "—", "new": str(admin_user)} in approved.changes
    assert "suspicious calls" in response.text and "typo" in response.text
