"""Bad input: HTML in text fields is shown escaped (pages) or returned as data (API); formula cells are
neutralised in CSV; out-of-range dates and unknown references are per-field errors that write nothing."""

import csv
import datetime

import pytest
from django.conf import settings
from django.urls import reverse
from rest_framework.test import APIClient

from attestations.choices import DefaultAction
from attestations.services import campaigns, decisions
from keys.models import ApiKey
from tests import factories

pytestmark = pytest.mark.django_db

SCRIPT = "<script>alert(1)</script>"
IMG = '<img src=x onerror="alert(2)">'
FORMULA_STARTS = ("=", "+", "-", "@")


@pytest.fixture
def hostile(owner, compliance_user):
    key = factories.ApiKeyFactory(
        owner=owner, label=f"Export {SCRIPT}", workflow__customer__name=f"Acme {IMG}",
        workflow__purpose=f"Purpose {SCRIPT}",
    )
    campaign = campaigns.create_campaign(actor=compliance_user, name=f"Q4 {SCRIPT}",
                                         default_action=DefaultAction.KEEP_AND_FLAG)
    campaigns.launch_campaign(campaign, actor=compliance_user)
    item = campaign.items.get(key=key)
    decisions.record_decision(item, actor=owner, decision="confirm", justification=f"Still needed {SCRIPT} {IMG}",
                              affirm=True)
    return {"key": key, "campaign": campaign, "item": item}


def assert_escaped(response):
    html = response.content.decode()
    assert response.status_code == 200
    assert SCRIPT not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


@pytest.mark.parametrize("page", ["key-list", "key-detail", "inbox", "item", "campaign"])
def test_html_in_text_fields_is_rendered_escaped(client, owner, compliance_user, hostile, page):
    user = compliance_user if page == "campaign" else owner
    client.force_login(user)
    url = {
        "key-list": reverse("keys:list"),
        "key-detail": reverse("keys:detail", args=[hostile["key"].pk]),
        "inbox": reverse("attestations:inbox") + "?status=confirmed",
        "item": reverse("attestations:item", args=[hostile["item"].pk]),
        "campaign": reverse("attestations:campaign", args=[hostile["campaign"].pk]),
    }[page]
    assert_escaped(client.get(url))


def test_api_returns_html_as_plain_data(owner, hostile):
    client = APIClient()
    client.force_login(owner)
    response = client.get(reverse("apikey-detail", args=[hostile["key"].pk]))
    assert response["Content-Type"] == "application/json"
    assert response.json()["label"] == f"Export {SCRIPT}"
    item = client.get(reverse("attestation-detail", args=[hostile["item"].pk])).json()
    assert SCRIPT in str(item)


def test_import_template_has_no_formula_cells():
    path = settings.BASE_DIR / "static" / "samples" / "keys-import-template.csv"
    with open(path, newline="", encoding="utf-8") as handle:
        cells = [cell for row in csv.reader(handle) for cell in row]
    assert cells and not [cell for cell in cells if cell.startswith(FORMULA_STARTS)]


def test_evidence_csv_neutralises_formula_cells():
    evidence = pytest.importorskip("attestations.services.evidence")
    text = evidence.to_csv(["a", "b", "c", "d", "e"], [
        {"a": "=HYPERLINK(\"http://x\")", "b": "+1", "c": "-2+3", "d": "@SUM(A1)", "e": "plain"},
    ])
    row = list(csv.reader(text.splitlines()))[1]
    assert row == ["'=HYPERLINK(\"http://x\")", "'+1", "'-2+3", "'@SUM(A1)", "plain"]


def register_form(key_owner, workflow, issuing_system, /, **overrides):
    data = {
        "workflow": workflow.pk, "issuing_system": issuing_system.pk, "label": "Screening export",
        "owner": key_owner.username, "secret": "sk_live_escapeTestFakeSecret000", "prefix": "sk_live_esc",
        "scopes": "read:cases", "risk_tier": "medium",
        "expires_on": (datetime.date.today() + datetime.timedelta(days=90)).isoformat(),
    }
    data.update(overrides)
    return data


@pytest.mark.parametrize(("overrides", "field"), [
    ({"expires_on": "2026-13-45"}, "expires_on"),
    ({"expires_on": "99999-01-01"}, "expires_on"),
    ({"issued_on": "0000-01-01"}, "issued_on"),
    ({"workflow": "999999"}, "workflow"),
    ({"issuing_system": "999999"}, "issuing_system"),
    ({"owner": "nobody-of-that-name"}, "owner"),
])
def test_register_form_refuses_bad_input_per_field_and_writes_nothing(client, admin_user, owner, overrides, field):
    workflow, system = factories.WorkflowFactory(), factories.IssuingSystemFactory()
    client.force_login(admin_user)
    response = client.post(reverse("keys:register"), register_form(owner, workflow, system, **overrides))
    assert response.status_code == 400
    assert field in response.context["form"].errors
    assert not ApiKey.objects.exists()


@pytest.mark.parametrize(("overrides", "field"), [
    ({"expires_on": "2026-02-30"}, "expires_on"),
    ({"workflow": 999999}, "workflow"),
    ({"owner": "nobody-of-that-name"}, "owner"),
    ({"label": ""}, "label"),
])
def test_api_refuses_bad_input_per_field_and_writes_nothing(admin_user, owner, overrides, field):
    workflow = factories.WorkflowFactory()
    factories.IssuingSystemFactory()
    client = APIClient()
    client.force_login(admin_user)
    payload = {"label": "Screening export", "workflow": workflow.pk, "owner": owner.username,
               "prefix": "sk_live_api", "secret": "sk_live_apiEscapeFakeSecret0000", "scopes": ["read:cases"]}
    payload.update(overrides)
    response = client.post(reverse("apikey-list"), payload, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert not ApiKey.objects.exists()


# Evidence PDFs: hostile text is printed as text, and every CSV attached inside is spreadsheet-safe ---

FORMULA = '=HYPERLINK("http://evil.test","x")'


@pytest.fixture
def hostile_evidence(hostile, owner, compliance_user, admin_user, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.EVIDENCE_SIGNING_PKCS12 = ""
    from keys.choices import RevocationReason
    from keys.services import lifecycle

    other = factories.ApiKeyFactory(owner=owner, workflow=hostile["key"].workflow, label=f"@SUM(A1) {IMG}")
    lifecycle.suspend_key(other, actor=admin_user, reason=f"{FORMULA} {SCRIPT}")
    lifecycle.revoke_key(other, actor=admin_user, reason_code=RevocationReason.MANUAL, reason=f"+1 {SCRIPT}")
    return {**hostile, "other": other}


def _exports(hostile_evidence, compliance_user, capture):
    from tests.attestations.evidence_helpers import run_export

    return {
        "key": run_export(capture, actor=compliance_user, kind="key", key=hostile_evidence["other"]),
        "campaign": run_export(capture, actor=compliance_user, kind="campaign", campaign=hostile_evidence["campaign"]),
        "customer": run_export(capture, actor=compliance_user, kind="customer",
                               customer=hostile_evidence["key"].workflow.customer),
    }


def test_evidence_pdfs_print_html_as_text_and_attach_only_neutralised_csv(
        hostile_evidence, compliance_user, django_capture_on_commit_callbacks):
    from tests.attestations.evidence_helpers import reader, text

    for kind, export in _exports(hostile_evidence, compliance_user, django_capture_on_commit_callbacks).items():
        pdf = reader(export)
        body = " ".join(text(pdf).split())
        # WeasyPrint would drop a <script> element it was given as markup: seeing the tag means it was escaped.
        assert "<script>alert(1)</script>" in body, kind
        csv_names = [name for name in pdf.attachments if name.endswith(".csv")]
        assert csv_names, f"{kind}: no CSV attached"
        cells = [cell for name in csv_names for data in pdf.attachments[name]
                 for row in csv.reader(data.decode("utf-8").splitlines()) for cell in row]
        risky = [cell for cell in cells if cell.startswith((*FORMULA_STARTS, "\t", "\r"))]
        assert not risky, f"{kind}: formula cells in the attached CSV: {risky[:5]}"
        if kind != "campaign":  # the suspended and revoked key is not in the campaign
            assert any(cell.startswith(("'=", "'+", "'@")) for cell in cells), kind
