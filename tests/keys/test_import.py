import csv
import io
from pathlib import Path

import pytest
from django.conf import settings
from django.core import serializers
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from keys.choices import KeyStatus, LifecycleAction, WorkflowStatus
from keys.fingerprints import fingerprint_secret
from keys.models import ApiKey, ApiKeyUserObjectPermission, LifecycleEvent
from keys.services.importer import COLUMNS, KeyImportError, import_keys
from tests import factories

pytestmark = pytest.mark.django_db

SAMPLE = Path(settings.BASE_DIR) / "static" / "samples" / "keys-import-template.csv"
HEADER = [c for c in COLUMNS if c != "fingerprint"]


@pytest.fixture
def world(owner, other_owner, admin_user):
    customer = factories.CustomerFactory(external_id="CUST-0001", name="Acme")
    factories.WorkflowFactory(customer=customer, name="Screening export")
    factories.WorkflowFactory(customer=customer, name="Legacy sync", status=WorkflowStatus.DECOMMISSIONED)
    factories.IssuingSystemFactory(name="Gateway")
    return customer


def row(**overrides):
    values = {
        "label": "Screening export key",
        "customer": "CUST-0001",
        "workflow": "Screening export",
        "issuing_system": "Gateway",
        "owner": "alice",
        "steward": "",
        "prefix": "sk_live_",
        "secret": factories.make_secret("sk_live_"),
        "scopes": "read:cases;read:alerts",
        "risk_tier": "high",
        "issued_on": "2025-01-15",
        "expires_on": "2027-01-15",
        "next_review_on": "2025-07-15",
        "last_used_at": "2025-06-30T08:15:00Z",
        "status": "",
        "approval_reference": "CHG-1042",
    }
    values.update(overrides)
    return values


def to_csv(rows, header=None):
    header = header or list(rows[0])
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def nothing_written():
    return (
        not ApiKey.objects.exists()
        and not ApiKey.history.exists()
        and not LifecycleEvent.objects.exists()
        and not ApiKeyUserObjectPermission.objects.exists()
    )


def refusal(text, actor, **kwargs):
    with pytest.raises(KeyImportError) as err:
        import_keys(text, actor=actor, reason="test import", **kwargs)
    assert nothing_written()
    return err.value.rows


def test_thousand_rows_with_three_bad_rows_write_nothing_and_report_exactly_those(
    world, admin_user, django_assert_max_num_queries
):
    rows = [row(label=f"Key {i}") for i in range(1000)]
    rows[99]["workflow"] = "No such workflow"
    rows[500]["expires_on"] = "2027-13-45"
    rows[876]["secret"] = rows[10]["secret"]
    text = to_csv(rows)

    with django_assert_max_num_queries(10):
        problems = refusal(text, admin_user)

    assert [(p.line, p.field) for p in problems] == [(101, "workflow"), (502, "expires_on"), (878, "secret")]
    assert problems[0].message == "Unknown workflow 'No such workflow' for customer 'CUST-0001'."
    assert "line 12" in problems[2].message


def test_good_file_imports_with_history_events_and_owner_permissions(world, admin_user, owner, other_owner):
    fingerprint = fingerprint_secret(factories.make_secret())
    rows = [
        row(label="Active key", steward="bob"),
        row(label="Pending key", status="pending", approval_reference="", scopes="read:cases write:cases"),
        row(label="By fingerprint", secret="", fingerprint=fingerprint.upper(), prefix="sk_live_ab12",
            approval_reference="", owner="bob", issued_on="", expires_on="", next_review_on=""),
    ]
    result = import_keys(to_csv(rows, header=COLUMNS), actor=admin_user, reason="Gateway inventory, OPS-42")

    assert result.count == 3
    labels = ("Active key", "Pending key", "By fingerprint")
    active, pending, by_fingerprint = (ApiKey.objects.get(label=label) for label in labels)
    assert active.status == KeyStatus.ACTIVE and active.approved_by == admin_user and active.approved_at
    assert active.approval_reference == "CHG-1042" and active.steward == other_owner
    assert active.scopes == ["read:alerts", "read:cases"]
    assert str(active.expires_on) == "2027-01-15" and active.last_used_at.isoformat() == "2025-06-30T08:15:00+00:00"
    assert pending.status == KeyStatus.PENDING and pending.approved_by is None and pending.approval_reference == ""
    assert pending.scopes == ["read:cases", "write:cases"]
    assert by_fingerprint.fingerprint == fingerprint and by_fingerprint.prefix == "sk_live_ab12"
    assert by_fingerprint.approval_reference == "inventory import"
    assert by_fingerprint.issued_on == by_fingerprint.created_at.date()

    for key in (active, pending, by_fingerprint):
        record = key.history.get()
        assert record.history_user == admin_user and record.history_type == "+"
        assert record.history_change_reason == "Gateway inventory, OPS-42"
        event = key.events.get()
        assert event.action == LifecycleAction.IMPORT and event.actor == admin_user
        assert event.to_status == key.status and event.reason == "Gateway inventory, OPS-42"
        assert key.owner.has_perm("keys.view_apikey", key)
    assert active.events.get().details["line"] == 2
    assert not other_owner.has_perm("keys.view_apikey", active)


def test_secret_is_never_stored_or_echoed(world, admin_user):
    secrets = [factories.make_secret("sk_live_") for _ in range(3)]
    import_keys(to_csv([row(secret=s) for s in secrets]), actor=admin_user, reason="import")
    dump = serializers.serialize(
        "json", [*ApiKey.objects.all(), *ApiKey.history.all(), *LifecycleEvent.objects.all()]
    )
    assert ApiKey.objects.count() == 3
    for secret in secrets:
        assert secret not in dump
        assert secret[8:] not in dump


def test_secret_is_never_echoed_in_errors(world, admin_user):
    leaked = factories.make_secret("sk_live_")
    bad = [
        row(secret=leaked, owner="nobody"),  # an error on a row with a secret
        row(secret=leaked),  # the same secret twice
        row(secret=" " + leaked),  # a malformed secret
        row(label="x", owner=leaked),  # a secret pasted into the wrong column
        row(secret=leaked, prefix="sk_other_"),  # a prefix that is not the secret's start
    ]
    problems = refusal(to_csv(bad), admin_user)
    assert {p.line for p in problems} == {2, 3, 4, 5, 6}
    with pytest.raises(KeyImportError) as err:
        import_keys(to_csv(bad), actor=admin_user, reason="import")
    assert leaked not in str(err.value) and leaked[8:] not in str(err.value)
    assert all(leaked not in str(p) for p in problems)
    assert "[redacted]" in str(err.value)


def test_fingerprint_already_registered_is_refused(world, admin_user):
    secret = factories.make_secret("sk_live_")
    factories.ApiKeyFactory(fingerprint=fingerprint_secret(secret))
    with pytest.raises(KeyImportError) as err:
        import_keys(to_csv([row(), row(secret=secret)]), actor=admin_user, reason="import")
    assert [(p.line, p.field, p.message) for p in err.value.rows] == [
        (3, "secret", "A key with this fingerprint is already registered.")
    ]
    assert ApiKey.objects.count() == 1


@pytest.mark.parametrize(
    "overrides, field, message",
    [
        ({"customer": "CUST-9999"}, "customer", "Unknown customer 'CUST-9999'."),
        ({"workflow": "Legacy sync"}, "workflow", "Workflow 'Legacy sync' is decommissioned"),
        ({"issuing_system": "Vault"}, "issuing_system", "Unknown issuing system 'Vault'."),
        ({"owner": "zed"}, "owner", "Unknown user 'zed'."),
        ({"steward": "zed"}, "steward", "Unknown user 'zed'."),
        ({"owner": "dave"}, "owner", "You own this key and cannot approve it"),
        ({"label": " "}, "label", "A value is required."),
        ({"risk_tier": "extreme"}, "risk_tier", "Unknown risk tier 'extreme'"),
        ({"status": "revoked"}, "status", "Status 'revoked' cannot be imported"),
        ({"issued_on": "15/01/2025"}, "issued_on", "'15/01/2025' is not a date; use YYYY-MM-DD."),
        ({"expires_on": "2024-12-31"}, "expires_on", "The expiry date must be after the issue date."),
        ({"last_used_at": "yesterday"}, "last_used_at", "'yesterday' is not a date and time"),
        ({"status": "pending"}, "approval_reference", "A pending key is not approved yet"),
        ({"secret": ""}, "secret", "Give the secret"),
        ({"secret": "short"}, "secret", "A secret is at least 16 characters"),
    ],
)
def test_each_row_problem_is_reported_with_its_column(world, admin_user, overrides, field, message):
    problems = refusal(to_csv([row(), row(**overrides)]), admin_user)
    assert [(p.line, p.field) for p in problems] == [(3, field)]
    assert problems[0].message.startswith(message)


def test_departed_owner_is_refused(world, admin_user, owner):
    factories.OwnerProfileFactory(user=owner, is_active=False)
    problems = refusal(to_csv([row()]), admin_user)
    assert [(p.line, p.field) for p in problems] == [(2, "owner")]


def test_secret_and_fingerprint_together_are_refused(world, admin_user):
    text = to_csv([row(fingerprint=fingerprint_secret(factories.make_secret()))], header=COLUMNS)
    problems = refusal(text, admin_user)
    assert [(p.line, p.field) for p in problems] == [(2, "secret")]


def test_utf8_bom_and_blank_lines_are_tolerated(world, admin_user):
    text = to_csv([row(label="Zürich key"), row()]).replace("\n", "\n\n", 1)
    result = import_keys("\ufeff".encode() + text.encode(), actor=admin_user, reason="import")
    assert result.count == 2 and ApiKey.objects.filter(label="Zürich key").exists()
    assert sorted(ApiKey.objects.values_list("events__details__line", flat=True)) == [3, 4]


def test_other_encodings_are_refused(world, admin_user):
    data = to_csv([row(label="Zürich key")]).encode("latin-1")
    problems = refusal(data, admin_user)
    assert [(p.line, p.field) for p in problems] == [(None, "encoding")]
    assert "not UTF-8" in problems[0].message and "line 2" in problems[0].message


@pytest.mark.parametrize("data", [b"", b"\xef\xbb\xbf", b" \n\n"])
def test_empty_files_are_refused(world, admin_user, data):
    problems = refusal(data, admin_user)
    assert [str(p) for p in problems] == ["file: file: The file is empty."]


def test_header_without_rows_is_refused(world, admin_user):
    problems = refusal(",".join(HEADER) + "\n", admin_user)
    assert problems[0].message == "The file has a header but no rows."


def test_oversized_files_are_refused_before_parsing(world, admin_user, settings):
    settings.IMPORT_MAX_BYTES = 1000
    text = to_csv([row() for _ in range(10)])
    problems = refusal(io.BytesIO(text.encode()), admin_user)
    assert "larger than the limit of 1,000 bytes" in problems[0].message


@pytest.mark.parametrize(
    "header, expected",
    [
        (HEADER + ["colour"], "unknown column(s): 'colour'"),
        ([c for c in HEADER if c != "workflow"], "missing column(s): workflow"),
        ([c for c in HEADER if c != "secret"], "a 'secret' or a 'fingerprint' column is required"),
        (HEADER + ["label"], "repeated column(s): label"),
    ],
)
def test_header_problems_are_explained(world, admin_user, header, expected):
    text = ",".join(header) + "\n" + ",".join("x" for _ in header) + "\n"
    problems = refusal(text, admin_user)
    assert [(p.line, p.field) for p in problems] == [(1, "header")]
    assert expected in problems[0].message and "Expected columns: label, customer" in problems[0].message


def test_header_is_case_and_space_insensitive_and_short_rows_are_padded(world, admin_user):
    text = to_csv([row(approval_reference="")])
    header, body = text.split("\n", 1)
    header = ", ".join(name.upper() for name in header.split(","))
    body = body.rstrip("\n").rstrip(",") + "\n"  # trailing empty cell dropped, as spreadsheets do
    assert import_keys(header + "\n" + body, actor=admin_user, reason="import").count == 1


def test_row_with_too_many_values_is_reported(world, admin_user):
    text = to_csv([row(), row()]).rstrip("\n") + ",extra\n"
    problems = refusal(text, admin_user)
    assert [(p.line, p.field) for p in problems] == [(3, "row")]


def test_sample_template_imports(world, admin_user):
    factories.OwnerFactory(username="owner1")
    factories.OwnerFactory(username="owner2")
    with SAMPLE.open("rb") as handle:
        assert import_keys(handle, actor=admin_user, reason="sample").count == 1


def test_command_imports_and_reports_count(world, admin_user, tmp_path, capsys):
    path = tmp_path / "keys.csv"
    path.write_text(to_csv([row(), row()]))
    call_command("import_keys", str(path), "--actor", "dave", "--reason", "From the CLI")
    assert capsys.readouterr().out.strip() == "Imported 2 keys."
    key = ApiKey.objects.first()
    assert key.history.get().history_user == admin_user
    assert key.events.get().reason == "From the CLI"


def test_command_defaults_to_the_system_user(world, tmp_path):
    path = tmp_path / "keys.csv"
    path.write_text(to_csv([row()]))
    call_command("import_keys", str(path))
    assert ApiKey.objects.get().approved_by.username == settings.SYSTEM_USERNAME


def test_command_prints_every_bad_row_and_exits_non_zero(world, tmp_path, capsys):
    secret = factories.make_secret("sk_live_")
    path = tmp_path / "keys.csv"
    path.write_text(to_csv([row(), row(workflow="X", secret=secret), row(risk_tier="")]))
    # manage.py turns CommandError into sys.exit(returncode); run_from_argv would also close the
    # test database connection, so the command is called directly.
    with pytest.raises(CommandError) as refused:
        call_command("import_keys", str(path))
    assert refused.value.returncode == 1
    err = capsys.readouterr().err
    assert "line 3: workflow: Unknown workflow 'X' for customer 'CUST-0001'." in err
    assert "line 4: risk_tier: A value is required." in err
    assert str(refused.value) == "2 problem(s) found; nothing was imported."
    assert secret not in err
    assert nothing_written()


def test_command_refuses_unknown_actor_and_missing_file(world, tmp_path):
    with pytest.raises(CommandError, match="Unknown user 'ghost'"):
        call_command("import_keys", str(tmp_path / "keys.csv"), "--actor", "ghost")
    with pytest.raises(CommandError, match="Cannot read"):
        call_command("import_keys", str(tmp_path / "missing.csv"))


def upload(text, name="keys.csv"):
    handle = io.BytesIO(text.encode())
    handle.name = name
    return {"file": handle, "reason": "Gateway inventory"}


def test_upload_page_for_admin(world, client, admin_user):
    client.force_login(admin_user)
    response = client.get(reverse("keys:import"))
    assert response.status_code == 200
    assert b"samples/keys-import-template.csv" in response.content
    assert b'enctype="multipart/form-data"' in response.content


def test_upload_imports_and_redirects_to_the_list(world, client, admin_user):
    client.force_login(admin_user)
    response = client.post(reverse("keys:import"), upload(to_csv([row(), row()])), follow=True)
    assert response.redirect_chain == [(reverse("keys:list"), 302)]
    assert "Imported 2 keys." in [str(m) for m in response.context["messages"]]
    assert ApiKey.objects.count() == 2
    assert ApiKey.history.filter(history_user=admin_user).count() == 2


def test_upload_with_bad_rows_lists_them_and_writes_nothing(world, client, admin_user):
    secret = factories.make_secret("sk_live_")
    client.force_login(admin_user)
    text = to_csv([row(), row(workflow="Nope", secret=secret), row(expires_on="soon")])
    response = client.post(reverse("keys:import"), upload(text))
    assert response.status_code == 400
    assert [(p.line, p.field) for p in response.context["problems"]] == [(3, "workflow"), (4, "expires_on")]
    content = response.content.decode()
    assert "Unknown workflow &#x27;Nope&#x27; for customer &#x27;CUST-0001&#x27;." in content
    assert "Nothing was imported: 2 problems found." in content
    assert secret not in content
    assert nothing_written()


def test_upload_refuses_oversized_file(world, client, admin_user, settings):
    settings.IMPORT_MAX_BYTES = 2000
    client.force_login(admin_user)
    response = client.post(reverse("keys:import"), upload(to_csv([row() for _ in range(40)])))
    assert response.status_code == 400
    assert "larger than the limit of 2,000 bytes" in response.content.decode()
    assert nothing_written()


def test_upload_requires_a_file_and_a_reason(world, client, admin_user):
    client.force_login(admin_user)
    response = client.post(reverse("keys:import"), {"reason": ""})
    assert response.status_code == 400
    assert set(response.context["form"].errors) == {"file", "reason"}


@pytest.mark.parametrize("user_fixture", ["owner", "compliance_user"])
def test_upload_page_is_forbidden_to_non_admins(world, client, request, user_fixture):
    client.force_login(request.getfixturevalue(user_fixture))
    assert client.get(reverse("keys:import")).status_code == 403
    assert client.post(reverse("keys:import"), upload(to_csv([row()]))).status_code == 403
    assert nothing_written()


def test_upload_page_sends_anonymous_users_to_login(world, client):
    response = client.get(reverse("keys:import"))
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))
    response = client.post(reverse("keys:import"), upload(to_csv([row()])))
    assert response.status_code == 302 and nothing_written()


def test_upload_checks_csrf(world, admin_user):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    response = client.post(reverse("keys:import"), upload(to_csv([row()])))
    assert response.status_code == 403 and nothing_written()


def test_sample_template_lists_every_column():
    with SAMPLE.open(newline="") as handle:
        header = next(csv.reader(handle))
    assert header == list(COLUMNS)


def test_upload_never_touches_disk(world, client, admin_user, settings, monkeypatch):
    from django.core.files import uploadedfile

    def refuse(*args, **kwargs):
        raise AssertionError("an inventory upload was written to a temporary file")

    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 10  # Django's default handlers would spool this to disk
    monkeypatch.setattr(uploadedfile.TemporaryUploadedFile, "__init__", refuse)
    client.force_login(admin_user)
    response = client.post(reverse("keys:import"), upload(to_csv([row(), row()])))
    assert response.status_code == 302 and ApiKey.objects.count() == 2
