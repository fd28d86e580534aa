import datetime

import pytest
from django.urls import reverse
from django.utils import timezone

from keys.choices import KeyStatus, LifecycleAction, RevocationReason, WorkflowStatus
from keys.fingerprints import fingerprint_secret
from keys.models import ApiKey, LifecycleEvent
from tests import factories

pytestmark = pytest.mark.django_db

MODELS = (
    "customer",
    "workflow",
    "issuingsystem",
    "ownerprofile",
    "apikey",
    "lifecycleevent",
    "apikeyuserobjectpermission",
    "apikeygroupobjectpermission",
)


def url(name, *args):
    return reverse(f"admin:keys_{name}", args=args)


@pytest.fixture(autouse=True)
def fast_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


def messages_of(response):
    return [str(m) for m in response.context["messages"]]


def run_action(client, action, keys, reason=""):
    data = {"action": action, "_selected_action": [k.pk for k in keys], "reason": reason}
    return client.post(url("apikey_changelist"), data, follow=True)


@pytest.mark.parametrize("model", MODELS)
def test_changelists_load_for_admin(admin_client, key, model):
    factories.OwnerProfileFactory(user=key.owner)
    response = admin_client.get(url(f"{model}_changelist"))
    assert response.status_code == 200


def test_key_changelist_query_count(admin_client, django_assert_max_num_queries):
    for _ in range(15):
        factories.ApiKeyFactory()
    with django_assert_max_num_queries(20):
        response = admin_client.get(url("apikey_changelist"))
    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == 15


def test_key_change_history_and_permission_pages_load(admin_client, key):
    change = admin_client.get(url("apikey_change", key.pk))
    assert change.status_code == 200
    content = change.content.decode()
    assert key.fingerprint in content
    assert 'name="secret"' not in content and 'name="fingerprint"' not in content
    assert url("apikey_permissions", key.pk) in content
    assert url("apikey_history", key.pk) in content

    assert admin_client.get(url("apikey_history", key.pk)).status_code == 200
    version = key.history.first().history_id
    assert admin_client.get(url("apikey_simple_history", key.pk, version)).status_code == 200
    assert admin_client.get(url("apikey_permissions", key.pk)).status_code == 200


@pytest.mark.parametrize("model", ["customer", "workflow", "issuingsystem"])
def test_other_models_have_history(admin_client, key, model):
    obj = {"customer": key.workflow.customer, "workflow": key.workflow, "issuingsystem": key.issuing_system}[model]
    assert admin_client.get(url(f"{model}_history", obj.pk)).status_code == 200
    assert admin_client.get(url(f"{model}_change", obj.pk)).status_code == 200


def test_object_permissions_page_grants_a_delegate(admin_client, key, other_owner):
    assert not ApiKey.objects.visible_to(other_owner).filter(pk=key.pk).exists()
    response = admin_client.post(
        url("apikey_permissions_manage_user", key.pk, other_owner.pk), {"permissions": ["view_apikey"]}
    )
    assert response.status_code == 302
    assert ApiKey.objects.visible_to(other_owner).filter(pk=key.pk).exists()


@pytest.mark.parametrize("path", ["/admin/", "/admin/keys/apikey/"])
def test_owner_is_sent_to_the_admin_login(client, owner, key, path):
    client.force_login(owner)
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_owner_cannot_reach_key_change_page(client, owner, key):
    client.force_login(owner)
    response = client.get(url("apikey_change", key.pk))
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


def test_anonymous_is_sent_to_the_admin_login(client, key):
    response = client.get(url("apikey_change", key.pk))
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


def change_form_data(response, **overrides):
    """The POST data the change page would submit, from its bound form and inline management forms."""
    form = response.context["adminform"].form
    data = {}
    for name, field in form.fields.items():
        value = form[name].value()
        if value is None:
            continue
        data[name] = field.widget.format_value(value) if name == "scopes" else value
    for inline in response.context["inline_admin_formsets"]:
        management = inline.formset.management_form
        for name in management.fields:
            data[f"{management.prefix}-{name}"] = management[name].value()
    data.update(overrides)
    return data


def test_change_edits_descriptive_fields_but_never_lifecycle_fields(admin_client, key, other_owner):
    page = admin_client.get(url("apikey_change", key.pk))
    assert "status" not in page.context["adminform"].form.fields
    assert "owner" not in page.context["adminform"].form.fields
    data = change_form_data(page, label="Renamed export", status=KeyStatus.REVOKED, owner=other_owner.pk,
                            fingerprint="0" * 64)
    response = admin_client.post(url("apikey_change", key.pk), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    key.refresh_from_db()
    assert key.label == "Renamed export"
    assert key.status == KeyStatus.ACTIVE
    assert key.owner != other_owner
    assert key.fingerprint != "0" * 64
    latest = key.history.first()
    assert latest.history_change_reason == "Edited in the Django admin"
    assert latest.history_user.username == "dave"


def test_change_validates_dates(admin_client, key):
    page = admin_client.get(url("apikey_change", key.pk))
    data = change_form_data(page, expires_on=(key.issued_on - datetime.timedelta(days=1)).isoformat())
    response = admin_client.post(url("apikey_change", key.pk), data)
    assert response.status_code == 200
    assert "expires_on" in response.context["adminform"].form.errors


def test_final_key_is_entirely_read_only(admin_client):
    revoked = factories.ApiKeyFactory(status=KeyStatus.REVOKED)
    page = admin_client.get(url("apikey_change", revoked.pk))
    assert page.status_code == 200
    assert not page.context["adminform"].form.fields


def test_history_revert_is_refused(admin_client, key):
    version = key.history.first().history_id
    response = admin_client.post(url("apikey_simple_history", key.pk, version), {"label": "x"})
    assert response.status_code == 405
    assert b"Revert" not in admin_client.get(url("apikey_simple_history", key.pk, version)).content


def test_keys_cannot_be_deleted_in_admin(admin_client, key):
    assert admin_client.get(url("apikey_delete", key.pk)).status_code == 403
    assert ApiKey.objects.filter(pk=key.pk).exists()


def registration_data(**overrides):
    workflow = factories.WorkflowFactory()
    data = {
        "workflow": workflow.pk,
        "issuing_system": factories.IssuingSystemFactory().pk,
        "label": "Claims export",
        "owner": factories.OwnerFactory(username="erin").pk,
        "risk_tier": "high",
        "scopes": "read:claims, write:notes",
        "secret": factories.make_secret("sk_live_"),
        "prefix": "sk_live_",
        "reason": "Onboarding ticket OPS-1",
    }
    data.update(overrides)
    return data


def test_add_registers_through_the_lifecycle(admin_client, admin_user):
    assert admin_client.get(url("apikey_add")).status_code == 200
    data = registration_data()
    response = admin_client.post(url("apikey_add"), data)
    key = ApiKey.objects.get(label="Claims export")
    assert response.status_code == 302 and response["Location"] == url("apikey_change", key.pk)
    assert key.status == KeyStatus.PENDING
    assert key.fingerprint == fingerprint_secret(data["secret"])
    assert key.scopes == ["read:claims", "write:notes"]
    event = LifecycleEvent.objects.get(key=key)
    assert (event.action, event.actor, event.reason) == (LifecycleAction.REGISTER, admin_user, "Onboarding ticket OPS-1")
    assert key.history.get().history_user == admin_user
    assert key.owner.has_perm("keys.view_apikey", key)


def test_add_reports_lifecycle_refusals_without_echoing_the_secret(admin_client):
    workflow = factories.WorkflowFactory(status=WorkflowStatus.DECOMMISSIONED)
    data = registration_data(workflow=workflow.pk)
    response = admin_client.post(url("apikey_add"), data)
    assert response.status_code == 200
    assert "decommissioned" in str(response.context["adminform"].form.errors["workflow"])
    assert data["secret"] not in response.content.decode()
    assert not ApiKey.objects.exists()


def test_add_refuses_secret_and_fingerprint_together(admin_client):
    response = admin_client.post(url("apikey_add"), registration_data(fingerprint="a" * 64))
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["secret"]
    assert not ApiKey.objects.exists()


def test_approve_action_calls_the_lifecycle(admin_client, admin_user):
    pending = [factories.ApiKeyFactory(status=KeyStatus.PENDING) for _ in range(2)]
    response = run_action(admin_client, "approve_selected", pending, reason="CAB-42")
    assert "Approve: 2 keys." in messages_of(response)
    for key in pending:
        key.refresh_from_db()
        assert key.status == KeyStatus.ACTIVE
        assert key.approved_by == admin_user and key.approval_reference == "CAB-42"
        assert key.events.get().action == LifecycleAction.APPROVE
        assert key.history.first().history_user == admin_user


def test_action_reports_each_illegal_transition(admin_client):
    pending = factories.ApiKeyFactory(status=KeyStatus.PENDING)
    active = factories.ApiKeyFactory(status=KeyStatus.ACTIVE, label="Already live")
    response = run_action(admin_client, "approve_selected", [pending, active])
    messages = messages_of(response)
    assert "Approve: 1 key." in messages
    assert any(m.startswith("Already live") and "cannot be approved" in m for m in messages)
    active.refresh_from_db()
    assert active.status == KeyStatus.ACTIVE and not active.events.exists()


def test_owner_cannot_approve_own_key_through_admin(client):
    admin_owner = factories.AdminFactory(username="selfie")
    own = factories.ApiKeyFactory(status=KeyStatus.PENDING, owner=admin_owner)
    client.force_login(admin_owner)
    response = run_action(client, "approve_selected", [own])
    assert any("owner cannot approve" in m for m in messages_of(response))
    own.refresh_from_db()
    assert own.status == KeyStatus.PENDING


def test_suspend_requires_a_reason(admin_client, key):
    response = run_action(admin_client, "suspend_selected", [key])
    assert any("Give a reason" in m for m in messages_of(response))
    key.refresh_from_db()
    assert key.status == KeyStatus.ACTIVE


def test_suspend_reinstate_and_revoke_actions(admin_client, key, admin_user):
    run_action(admin_client, "suspend_selected", [key], reason="Odd traffic")
    key.refresh_from_db()
    assert key.status == KeyStatus.SUSPENDED
    run_action(admin_client, "reinstate_selected", [key], reason="Traffic explained")
    key.refresh_from_db()
    assert key.status == KeyStatus.ACTIVE
    response = run_action(admin_client, "revoke_selected", [key], reason="Customer asked")
    assert "Revoke: 1 key." in messages_of(response)
    key.refresh_from_db()
    assert key.status == KeyStatus.REVOKED and key.revocation_reason == RevocationReason.MANUAL
    actions = list(key.events.values_list("action", "actor", "reason"))
    assert actions == [
        (LifecycleAction.SUSPEND, admin_user.pk, "Odd traffic"),
        (LifecycleAction.REINSTATE, admin_user.pk, "Traffic explained"),
        (LifecycleAction.REVOKE, admin_user.pk, "Customer asked"),
    ]
    assert [h.status for h in key.history.order_by("history_date")][-3:] == ["suspended", "active", "revoked"]


def test_expire_action_only_expires_keys_past_their_date(admin_client):
    due = factories.ApiKeyFactory(expires_on=timezone.localdate() - datetime.timedelta(days=1))
    not_due = factories.ApiKeyFactory(label="Still valid")
    response = run_action(admin_client, "expire_selected", [due, not_due])
    messages = messages_of(response)
    assert "Expire: 1 key." in messages
    assert any(m.startswith("Still valid") and "not reached its expiry" in m for m in messages)
    due.refresh_from_db()
    not_due.refresh_from_db()
    assert (due.status, not_due.status) == (KeyStatus.EXPIRED, KeyStatus.ACTIVE)


def test_lifecycle_events_are_read_only(admin_client, key, admin_user):
    event = LifecycleEvent.objects.create(key=key, action=LifecycleAction.SUSPEND, actor=admin_user, reason="test")
    assert admin_client.get(url("lifecycleevent_add")).status_code == 403
    assert admin_client.get(url("lifecycleevent_delete", event.pk)).status_code == 403
    page = admin_client.get(url("lifecycleevent_change", event.pk))
    assert page.status_code == 200 and not page.context["adminform"].form.fields
    assert admin_client.post(url("lifecycleevent_change", event.pk), {"reason": "edited"}).status_code == 403
    event.refresh_from_db()
    assert event.reason == "test"
