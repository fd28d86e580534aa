"""Key exceptions: every state change and every refusal, in the service, the portal pages, the admin and the API."""

import datetime

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from core.actors import system_user
from keys import tasks as exception_tasks
from keys.choices import (
    BlastRadius,
    CompensatingControl,
    ExceptionKind,
    ExceptionStatus,
    KeyStatus,
    MigrationTarget,
    Replaceability,
)
from keys.models import KeyException
from keys.services import key_exceptions as exceptions
from keys.services.key_exceptions import KeyExceptionError
from tests import factories
from tests.api import client_for

pytestmark = pytest.mark.django_db

TODAY = timezone.localdate


def days(n: int) -> datetime.date:
    return TODAY() + datetime.timedelta(days=n)


def transitional(**overrides) -> dict:
    fields = {
        "kind": ExceptionKind.TRANSITIONAL,
        "business_justification": "The vendor SDK takes only API keys until v5.",
        "blast_radius": BlastRadius.MEDIUM,
        "replaceability": Replaceability.WITH_EFFORT,
        "compensating_controls": [CompensatingControl.SECRET_MANAGER],
        "migration_target": MigrationTarget.OAUTH,
        "migration_plan": "Move to client credentials when v5 ships.",
        "end_date": days(90),
    }
    fields.update(overrides)
    return fields


def permanent(**overrides) -> dict:
    fields = {
        "kind": ExceptionKind.PERMANENT,
        "business_justification": "The appliance firmware only supports a static key.",
        "blast_radius": BlastRadius.LOW,
        "replaceability": Replaceability.NOT_REPLACEABLE,
        "compensating_controls": [CompensatingControl.NETWORK_RESTRICTION, CompensatingControl.EXTRA_LOGGING],
        "risk_acceptance": "Accepted by the CISO, ticket RISK-42.",
        "review_date": days(180),
    }
    fields.update(overrides)
    return fields


@pytest.fixture
def second_compliance(db):
    return factories.ComplianceFactory(username="erin")


@pytest.fixture
def requested(key, owner):
    return exceptions.request_exception(key, actor=owner, **transitional())


@pytest.fixture
def approved(requested, compliance_user):
    return exceptions.approve_exception(requested, actor=compliance_user, reason="Migration plan is credible.")


def reasons(exception) -> list[tuple[str, str]]:
    return [
        (r.history_user.username, r.history_change_reason)
        for r in exception.history.select_related("history_user").order_by("history_date", "history_id")
    ]


# Requesting


def test_owner_requests_a_transitional_exception(key, owner):
    exception = exceptions.request_exception(key, actor=owner, **transitional(risk_acceptance="ignored",
                                                                              review_date=days(10)))
    assert exception.status == ExceptionStatus.REQUESTED and exception.requested_by == owner
    assert exception.end_date == days(90) and exception.due_on == days(90)
    assert exception.risk_acceptance == "" and exception.review_date is None
    assert reasons(exception) == [("alice", "transitional exception requested")]


def test_steward_and_admin_may_request_others_may_not(key, owner, other_owner, compliance_user, admin_user):
    steward = factories.OwnerFactory(username="stu")
    key.steward = steward
    key.save()
    for refused in (other_owner, compliance_user):
        with pytest.raises(KeyExceptionError, match="Only an admin or the key's owner or steward"):
            exceptions.request_exception(key, actor=refused, **transitional())
    exception = exceptions.request_exception(key, actor=steward, **permanent())
    assert exception.kind == ExceptionKind.PERMANENT and exception.migration_target == ""
    exceptions.withdraw_exception(exception, actor=owner, reason="asked twice")
    assert exceptions.request_exception(key, actor=admin_user, **transitional()).requested_by == admin_user


def test_transitional_needs_a_target_and_a_future_end_date_within_a_year(key, owner):
    for end_date, message in ((None, "Give the end date"), (TODAY(), "in the future"), (days(400), "at most 365")):
        with pytest.raises(KeyExceptionError) as refused:
            exceptions.request_exception(key, actor=owner, **transitional(end_date=end_date, migration_target=""))
        assert message in " ".join(refused.value.errors["end_date"])
        assert "migration_target" in refused.value.errors
    assert not KeyException.objects.exists()


def test_permanent_needs_risk_acceptance_controls_and_review_date(key, owner):
    with pytest.raises(KeyExceptionError) as refused:
        exceptions.request_exception(key, actor=owner, **permanent(
            risk_acceptance=" ", compensating_controls=[], review_date=days(-1),
            replaceability=Replaceability.REPLACEABLE,
        ))
    errors = refused.value.errors
    assert set(errors) == {"risk_acceptance", "compensating_controls", "review_date", "replaceability"}
    # A control described in words counts as a control.
    exception = exceptions.request_exception(key, actor=owner, **permanent(
        compensating_controls=[], other_controls="mTLS between the appliance and the gateway"))
    assert exception.other_controls.startswith("mTLS")


def test_common_fields_are_checked(key, owner):
    with pytest.raises(KeyExceptionError) as refused:
        exceptions.request_exception(key, actor=owner, **transitional(
            business_justification="", blast_radius="huge", replaceability="", compensating_controls=["magic"]))
    assert set(refused.value.errors) == {
        "business_justification", "blast_radius", "replaceability", "compensating_controls"
    }
    with pytest.raises(KeyExceptionError) as refused:
        exceptions.request_exception(key, actor=owner, **transitional(kind="forever"))
    assert "kind" in refused.value.errors


def test_one_open_exception_per_key_and_only_for_live_keys(requested, key, owner, compliance_user):
    with pytest.raises(KeyExceptionError, match=r"already has an open exception \(requested\)"):
        exceptions.request_exception(key, actor=owner, **transitional())
    exceptions.approve_exception(requested, actor=compliance_user)
    with pytest.raises(KeyExceptionError, match=r"already has an open exception \(approved\)"):
        exceptions.request_exception(key, actor=owner, **permanent())
    revoked = factories.ApiKeyFactory(owner=owner, status=KeyStatus.REVOKED)
    with pytest.raises(KeyExceptionError, match="revoked key needs no exception"):
        exceptions.request_exception(revoked, actor=owner, **transitional())


# Deciding: segregation of duties


def test_compliance_approves_with_history(requested, compliance_user):
    exception = exceptions.approve_exception(requested, actor=compliance_user, reason="Plan is credible.")
    assert exception.status == ExceptionStatus.APPROVED
    assert exception.decided_by == compliance_user and exception.decision_reason == "Plan is credible."
    assert reasons(exception) == [
        ("alice", "transitional exception requested"), ("carol", "approved: Plan is credible."),
    ]


def test_non_compliance_cannot_decide(requested, admin_user, other_owner):
    for actor in (admin_user, other_owner):
        for decide in (exceptions.approve_exception, exceptions.reject_exception):
            with pytest.raises(KeyExceptionError, match="Only compliance can approve or reject"):
                decide(requested, actor=actor, reason="x")
    requested.refresh_from_db()
    assert requested.status == ExceptionStatus.REQUESTED and requested.history.count() == 1


def test_compliance_owner_steward_or_requester_cannot_decide(owner, compliance_user, second_compliance):
    owning = factories.ApiKeyFactory(owner=compliance_user)
    exception = factories.KeyExceptionFactory(key=owning, requested_by=compliance_user)
    with pytest.raises(KeyExceptionError, match="You own this key"):
        exceptions.approve_exception(exception, actor=compliance_user)

    stewarded = factories.ApiKeyFactory(owner=owner, steward=second_compliance)
    exception = factories.KeyExceptionFactory(key=stewarded, requested_by=owner)
    with pytest.raises(KeyExceptionError, match="You steward this key"):
        exceptions.reject_exception(exception, actor=second_compliance, reason="no")

    admin_requester = factories.AdminFactory(username="frank")
    admin_requester.groups.add(*second_compliance.groups.all())
    key = factories.ApiKeyFactory(owner=owner)
    exception = exceptions.request_exception(key, actor=admin_requester, **transitional())
    with pytest.raises(KeyExceptionError, match="You requested this exception"):
        exceptions.approve_exception(exception, actor=admin_requester)
    assert exceptions.approve_exception(exception, actor=compliance_user).status == ExceptionStatus.APPROVED


def test_reject_needs_a_reason(requested, compliance_user):
    with pytest.raises(KeyExceptionError) as refused:
        exceptions.reject_exception(requested, actor=compliance_user, reason="  ")
    assert refused.value.errors == {"reason": ["Say why the exception is rejected."]}
    exception = exceptions.reject_exception(requested, actor=compliance_user, reason="Use OAuth now.")
    assert exception.status == ExceptionStatus.REJECTED and exception.decision_reason == "Use OAuth now."
    assert reasons(exception)[-1] == ("carol", "rejected: Use OAuth now.")
    with pytest.raises(KeyExceptionError, match="A rejected exception cannot be approved"):
        exceptions.approve_exception(exception, actor=compliance_user)


def test_approval_refused_when_key_is_gone_or_date_passed(requested, key, compliance_user):
    KeyException.objects.filter(pk=requested.pk).update(end_date=TODAY())
    with pytest.raises(KeyExceptionError, match="end or review date has passed"):
        exceptions.approve_exception(requested, actor=compliance_user)
    KeyException.objects.filter(pk=requested.pk).update(end_date=days(30))
    key.status = KeyStatus.REVOKED
    key.save()
    with pytest.raises(KeyExceptionError, match="key is revoked"):
        exceptions.approve_exception(requested, actor=compliance_user)
    requested.refresh_from_db()
    assert requested.status == ExceptionStatus.REQUESTED


# Withdrawing


def test_requester_owner_or_admin_withdraws(key, owner, other_owner, admin_user, compliance_user):
    exception = exceptions.request_exception(key, actor=admin_user, **transitional())
    with pytest.raises(KeyExceptionError, match="Only the requester, the key's owner or an admin"):
        exceptions.withdraw_exception(exception, actor=other_owner, reason="x")
    with pytest.raises(KeyExceptionError, match="Only the requester"):
        exceptions.withdraw_exception(exception, actor=compliance_user, reason="x")
    with pytest.raises(KeyExceptionError) as refused:
        exceptions.withdraw_exception(exception, actor=owner, reason="")
    assert "reason" in refused.value.errors
    exceptions.approve_exception(exception, actor=compliance_user)
    exception = exceptions.withdraw_exception(exception, actor=owner, reason="Migrated to OAuth.")
    assert exception.status == ExceptionStatus.WITHDRAWN
    assert reasons(exception)[-1] == ("alice", "withdrawn: Migrated to OAuth.")
    with pytest.raises(KeyExceptionError, match="A withdrawn exception cannot be withdrawn"):
        exceptions.withdraw_exception(exception, actor=admin_user, reason="again")


# Lapsing, renewing and reminders


def test_sweep_expires_a_transitional_exception_past_its_end_date(approved):
    KeyException.objects.filter(pk=approved.pk).update(end_date=days(-1))
    system = system_user()
    assert exceptions.sweep_lapsed_exceptions(actor=system) == [approved.pk]
    approved.refresh_from_db()
    assert approved.status == ExceptionStatus.EXPIRED and approved.lapsed_on == TODAY()
    assert reasons(approved)[-1] == ("system", f"expired: migration not done by {days(-1).isoformat()}")
    assert exceptions.sweep_lapsed_exceptions(actor=system) == []
    assert approved.history.count() == 3


def test_sweep_leaves_a_permanent_exception_approved_but_lapsed_until_renewed(
    key, owner, compliance_user, second_compliance
):
    exception = exceptions.request_exception(key, actor=owner, **permanent())
    exceptions.approve_exception(exception, actor=compliance_user)
    KeyException.objects.filter(pk=exception.pk).update(review_date=days(-2))
    assert exception_tasks.sweep_lapsed_exceptions() == [exception.pk]
    exception.refresh_from_db()
    assert exception.status == ExceptionStatus.APPROVED and exception.lapsed_on == days(-1)
    assert "lapsed: risk acceptance not reviewed" in reasons(exception)[-1][1]

    with pytest.raises(KeyExceptionError, match="You own this key|Only compliance"):
        exceptions.renew_exception(exception, actor=owner, review_date=days(100), reason="still fine")
    with pytest.raises(KeyExceptionError) as refused:
        exceptions.renew_exception(exception, actor=second_compliance, review_date=days(500), reason="ok")
    assert "review_date" in refused.value.errors
    exception = exceptions.renew_exception(exception, actor=second_compliance, review_date=days(100),
                                           reason="Controls verified again.")
    assert exception.lapsed_on is None and exception.review_date == days(100)
    assert exception.decided_by == second_compliance


def test_expire_refuses_before_the_due_date(approved):
    with pytest.raises(KeyExceptionError, match="has not passed"):
        exceptions.expire_exception(approved, actor=system_user())


def test_reminders_14_and_3_days_before_due_to_requester_and_owner_once(approved, owner, admin_user):
    owner.email = "alice@example.test"
    owner.save()
    KeyException.objects.filter(pk=approved.pk).update(requested_by=admin_user, end_date=days(14))
    assert exception_tasks.send_exception_reminders() == 2
    assert len(mail.outbox) == 1
    assert sorted(mail.outbox[0].to) == ["alice@example.test", "dave@example.test"]
    assert "due in 14 days" in mail.outbox[0].subject
    assert exception_tasks.send_exception_reminders() == 0  # a rerun the same day sends nothing
    KeyException.objects.filter(pk=approved.pk).update(end_date=days(10))
    assert exception_tasks.send_exception_reminders() == 0  # the 14-day reminder was sent
    KeyException.objects.filter(pk=approved.pk).update(end_date=days(3))
    assert exception_tasks.send_exception_reminders() == 2
    assert "due in 3 days" in mail.outbox[-1].subject
    assert exception_tasks.send_exception_reminders() == 0
    sent = approved.history.filter(history_change_reason__startswith="reminder sent").count()
    assert sent == 2 and len(mail.outbox) == 2


def test_no_reminder_far_from_due_or_for_requested_exceptions(requested, approved):
    assert exception_tasks.send_exception_reminders() == 0
    assert mail.outbox == []


def test_daily_jobs_are_scheduled():
    tasks = set(PeriodicTask.objects.values_list("task", flat=True))
    assert {"keys.tasks.sweep_lapsed_exceptions", "keys.tasks.send_exception_reminders"} <= tasks


# Portal pages


def list_url():
    return reverse("keys:exceptions")


def detail_url(exception):
    return reverse("keys:exception", args=[exception.pk])


def action_url(exception, action):
    return reverse("keys:exception-action", args=[exception.pk, action])


def request_url(key):
    return reverse("keys:exception-request", args=[key.pk])


ACTIONS = ("approve", "reject", "withdraw", "renew")


def test_anonymous_is_sent_to_login_everywhere(client, requested, key):
    urls = [("get", list_url()), ("get", detail_url(requested)), ("get", request_url(key)),
            ("post", request_url(key))] + [("post", action_url(requested, a)) for a in ACTIONS]
    for method, url in urls:
        response = getattr(client, method)(url)
        assert response.status_code == 302 and response.url.startswith(reverse("login")), url


def test_other_owner_gets_404_and_does_not_see_it_listed(client, other_owner, requested, key, other_key):
    theirs = factories.KeyExceptionFactory(key=other_key)
    client.force_login(other_owner)
    for method, url in [("get", detail_url(requested)), ("get", request_url(key)), ("post", request_url(key))] + [
        ("post", action_url(requested, a)) for a in ACTIONS
    ]:
        assert getattr(client, method)(url, {"reason": "x"}).status_code == 404, url
    text = client.get(list_url()).text
    assert detail_url(theirs) in text and detail_url(requested) not in text


def test_owner_requests_through_the_form(client, owner, key):
    client.force_login(owner)
    assert "Request exception" in client.get(reverse("keys:detail", args=[key.pk])).text
    assert client.get(request_url(key)).status_code == 200
    data = {k: v for k, v in transitional().items() if k != "compensating_controls"}
    data["compensating_controls"] = [CompensatingControl.SECRET_MANAGER, CompensatingControl.SHORTER_ROTATION]
    response = client.post(request_url(key), {**data, "end_date": days(90).isoformat()})
    exception = KeyException.objects.get()
    assert response.status_code == 302 and response.url == detail_url(exception)
    assert exception.compensating_controls == ["secret_manager", "shorter_rotation"]
    response = client.post(request_url(key), {**data, "end_date": days(90).isoformat()})
    assert response.status_code == 400 and "already has an open exception (requested)" in response.text


def test_request_form_shows_per_field_errors(client, owner, key):
    client.force_login(owner)
    response = client.post(request_url(key), {"kind": ExceptionKind.PERMANENT})
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert {"business_justification", "risk_acceptance", "review_date", "compensating_controls"} <= set(errors)
    assert not KeyException.objects.exists()


def test_compliance_and_delegates_cannot_request(client, compliance_user, key):
    client.force_login(compliance_user)
    assert client.get(request_url(key)).status_code == 403
    assert "Request exception" not in client.get(reverse("keys:detail", args=[key.pk])).text


def test_owner_cannot_approve_own_request_in_the_portal(client, owner, requested):
    client.force_login(owner)
    page = client.get(detail_url(requested)).text
    assert action_url(requested, "approve") not in page and action_url(requested, "withdraw") in page
    response = client.post(action_url(requested, "approve"), {"reason": "mine"})
    assert response.status_code == 400
    assert "Only compliance can approve or reject an exception." in response.text
    requested.refresh_from_db()
    assert requested.status == ExceptionStatus.REQUESTED


def test_admin_is_refused_approval_in_the_portal(client, admin_user, requested):
    client.force_login(admin_user)
    response = client.post(action_url(requested, "approve"), {})
    assert response.status_code == 400 and "Only compliance can approve" in response.text


def test_compliance_requester_is_told_someone_else_must_decide(client, owner, second_compliance):
    second_compliance.groups.add(*factories.AdminFactory(username="ad").groups.all())
    key = factories.ApiKeyFactory(owner=owner)
    exception = exceptions.request_exception(key, actor=second_compliance, **transitional())
    client.force_login(second_compliance)
    page = client.get(detail_url(exception)).text
    assert "You requested this exception: someone else in compliance must decide it." in page
    assert action_url(exception, "approve") not in page
    response = client.post(action_url(exception, "approve"), {})
    assert response.status_code == 400 and "You requested this exception" in response.text


def test_compliance_approves_and_rejects_in_the_portal(client, compliance_user, requested, key, owner):
    client.force_login(compliance_user)
    page = client.get(detail_url(requested)).text
    assert action_url(requested, "approve") in page and action_url(requested, "reject") in page
    response = client.post(action_url(requested, "reject"), {"reason": ""})
    assert response.status_code == 400 and "Say why the exception is rejected." in response.text
    response = client.post(action_url(requested, "approve"), {"reason": "Plan is credible."})
    assert response.status_code == 302
    requested.refresh_from_db()
    assert requested.status == ExceptionStatus.APPROVED and requested.decided_by == compliance_user
    page = client.get(detail_url(requested)).text
    assert "Approved: Plan is credible." in page and "carol" in page
    # The key's page shows the exception and its approval chain in the timeline.
    key_page = client.get(reverse("keys:detail", args=[key.pk])).text
    assert detail_url(requested) in key_page
    assert f"Exception #{requested.pk}: transitional" in key_page and "approved: Plan is credible." in key_page


def test_owner_withdraws_in_the_portal(client, owner, approved):
    client.force_login(owner)
    response = client.post(action_url(approved, "withdraw"), {"reason": "Migrated."})
    assert response.status_code == 302
    approved.refresh_from_db()
    assert approved.status == ExceptionStatus.WITHDRAWN


def test_unknown_action_is_404_and_actions_need_post(client, compliance_user, requested):
    client.force_login(compliance_user)
    assert client.post(action_url(requested, "delete"), {}).status_code == 404
    assert client.get(action_url(requested, "approve")).status_code == 405


def test_list_filters_and_pagination(client, compliance_user, django_assert_max_num_queries):
    customer = factories.CustomerFactory(name="Filtered Co")
    mine = factories.KeyExceptionFactory(key=factories.ApiKeyFactory(workflow__customer=customer),
                                         status=ExceptionStatus.APPROVED, end_date=days(-3))
    for _ in range(30):
        factories.KeyExceptionFactory(kind=ExceptionKind.PERMANENT, end_date=None, review_date=days(60))
    client.force_login(compliance_user)
    with django_assert_max_num_queries(12):
        response = client.get(list_url())
    assert response.status_code == 200 and 'rel="next"' in response.text and "cursor=" in response.text
    for query in (f"?customer={customer.pk}", "?overdue=true", "?status=approved", "?kind=transitional"):
        table = client.get(list_url() + query).context["table"]
        assert [row.record.pk for row in table.page.object_list] == [mine.pk], query
    assert len(client.get(list_url() + "?overdue=false").context["table"].page.object_list) == 25


def test_dashboard_register_for_compliance_only(client, compliance_user, owner):
    customer = factories.CustomerFactory(name="Register Co")
    overdue = factories.KeyExceptionFactory(key=factories.ApiKeyFactory(workflow__customer=customer, owner=owner),
                                            status=ExceptionStatus.APPROVED, end_date=days(-5))
    factories.KeyExceptionFactory(kind=ExceptionKind.PERMANENT, end_date=None, review_date=days(60),
                                  requested_at=timezone.now() - datetime.timedelta(days=100))
    factories.KeyExceptionFactory(status=ExceptionStatus.REJECTED)
    client.force_login(compliance_user)
    register = client.get(reverse("dashboard")).context["exception_register"]
    assert register["total"] == 2
    assert [row["count"] for row in register["by_kind"]] == [1, 1]
    assert [row["count"] for row in register["by_age"]] == [1, 0, 1, 0, 0]
    assert register["overdue_count"] == 1 and register["overdue"] == [overdue]
    assert any(row["key__workflow__customer__name"] == "Register Co" for row in register["by_customer"])
    client.force_login(owner)
    response = client.get(reverse("dashboard"))
    assert response.context["exception_register"] is None and "Register of exceptions" not in response.text


# Django admin


def test_admin_lists_exceptions_and_approval_is_refused_to_the_admin(client, admin_user, requested):
    client.force_login(admin_user)
    changelist = reverse("admin:keys_keyexception_changelist")
    assert client.get(changelist).status_code == 200
    assert client.get(reverse("admin:keys_keyexception_change", args=[requested.pk])).status_code == 200
    assert client.get(reverse("admin:keys_keyexception_history", args=[requested.pk])).status_code == 200
    response = client.post(changelist, {"action": "approve_selected", "_selected_action": [requested.pk],
                                        "reason": "ok"}, follow=True)
    messages = [str(m) for m in response.context["messages"]]
    assert any("Only compliance can approve or reject an exception." in m for m in messages), messages
    requested.refresh_from_db()
    assert requested.status == ExceptionStatus.REQUESTED
    response = client.post(changelist, {"action": "withdraw_selected", "_selected_action": [requested.pk],
                                        "reason": "duplicate"}, follow=True)
    requested.refresh_from_db()
    assert requested.status == ExceptionStatus.WITHDRAWN


def test_staff_compliance_approves_and_rejects_in_the_admin(client, compliance_user, requested, owner):
    compliance_user.is_staff = True
    compliance_user.save()
    other = factories.KeyExceptionFactory(key=factories.ApiKeyFactory(owner=owner))
    client.force_login(compliance_user)
    changelist = reverse("admin:keys_keyexception_changelist")
    client.post(changelist, {"action": "approve_selected", "_selected_action": [requested.pk], "reason": "ok"})
    response = client.post(changelist, {"action": "reject_selected", "_selected_action": [other.pk], "reason": ""},
                           follow=True)
    assert any("Say why the exception is rejected." in str(m) for m in response.context["messages"])
    client.post(changelist, {"action": "reject_selected", "_selected_action": [other.pk], "reason": "Use OAuth."})
    requested.refresh_from_db()
    other.refresh_from_db()
    assert requested.status == ExceptionStatus.APPROVED and requested.decided_by == compliance_user
    assert other.status == ExceptionStatus.REJECTED and other.decision_reason == "Use OAuth."


# REST API (read-only)


def test_api_lists_only_visible_exceptions(owner, other_owner, compliance_user, requested, other_key):
    theirs = factories.KeyExceptionFactory(key=other_key)
    body = client_for(owner).get(reverse("keyexception-list")).json()
    assert [row["id"] for row in body["results"]] == [requested.pk]
    row = body["results"][0]
    assert row["status"] == "requested" and row["kind"] == "transitional" and row["owner"] == "alice"
    assert row["compensating_controls"] == ["secret_manager"] and row["due_on"] == days(90).isoformat()
    assert "fingerprint" not in row
    assert client_for(other_owner).get(reverse("keyexception-detail", args=[requested.pk])).status_code == 404
    ids = {r["id"] for r in client_for(compliance_user).get(reverse("keyexception-list")).json()["results"]}
    assert ids == {requested.pk, theirs.pk}


def test_api_filters(compliance_user, approved, other_key):
    factories.KeyExceptionFactory(key=other_key, kind=ExceptionKind.PERMANENT, end_date=None, review_date=days(30))
    KeyException.objects.filter(pk=approved.pk).update(end_date=days(-1))
    client = client_for(compliance_user)
    for query in ("?status=approved", "?kind=transitional", "?overdue=true",
                  f"?customer={approved.key.workflow.customer_id}"):
        body = client.get(reverse("keyexception-list") + query).json()
        assert [r["id"] for r in body["results"]] == [approved.pk], query


def test_api_is_read_only_so_nobody_approves_through_it(owner, compliance_user, requested):
    for user in (owner, compliance_user):
        client = client_for(user)
        assert client.post(reverse("keyexception-list"), {}, format="json").status_code == 405
        detail = reverse("keyexception-detail", args=[requested.pk])
        assert client.patch(detail, {"status": "approved"}, format="json").status_code == 405
        assert client.post(detail + "approve/", {}, format="json").status_code == 404
    requested.refresh_from_db()
    assert requested.status == ExceptionStatus.REQUESTED


@pytest.mark.parametrize("limit", [10_000, 1, 0])
def test_an_owner_lists_the_exceptions_of_exactly_the_keys_they_see(client, owner, other_owner, requested, key,
                                                                    other_key, limit, monkeypatch):
    """Owned, stewarded and granted keys' exceptions, read through an id list while the owner's keys are few and
    through the subquery beyond the limit: the same rows either way."""
    from guardian.shortcuts import assign_perm

    from keys.models import ApiKey

    stewarded = factories.ApiKeyFactory(steward=other_owner)
    granted = factories.ApiKeyFactory()
    assign_perm("keys.view_apikey", other_owner, granted)
    mine = {factories.KeyExceptionFactory(key=k).pk for k in (other_key, stewarded, granted)}
    original = ApiKey.objects.visible_id_list
    monkeypatch.setattr(type(ApiKey.objects), "visible_id_list",
                        lambda self, user, limit=limit: original(user, limit=limit))
    ids = ApiKey.objects.visible_id_list(other_owner)
    assert isinstance(ids, list) == (limit >= 3)
    client.force_login(other_owner)
    table = client.get(list_url()).context["table"]
    assert {row.record.pk for row in table.page.object_list} == mine
    assert requested.pk not in mine
