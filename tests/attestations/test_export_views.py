"""Evidence export pages: permission matrix, requesting, progress polling and download."""

import re

import pytest
from django.urls import reverse

from attestations.models import EvidenceExport
from tests import factories
from tests.attestations.export_world import PDF_STUB, campaign_export, export_world, owner_dossier_export

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media_root")]

LOGIN = "login"
ROLES = ("anon", "owner", "other", "compliance", "admin")


def row(anon, owner, other, compliance, admin):
    return {"anon": anon, "owner": owner, "other": other, "compliance": compliance, "admin": admin}


# url name -> {"args": objects of the world, method: expected per role}; the same shape as
# tests/security/test_permission_matrix.PAGES, so that matrix can take these entries as they are.
PAGES = {
    "attestations:exports": {"get": row(LOGIN, 200, 200, 200, 200)},
    "attestations:export-create": {"get": row(LOGIN, 200, 200, 200, 200), "post": row(LOGIN, 400, 400, 400, 400)},
    "attestations:export": {"args": ("export",), "get": row(LOGIN, 200, 404, 200, 200)},
    "attestations:export-progress": {"args": ("export",), "get": row(LOGIN, 200, 404, 200, 200)},
    "attestations:export-download": {"args": ("export",), "get": row(LOGIN, 200, 404, 200, 200)},
    "attestations:export-certificate": {"get": row(LOGIN, 200, 200, 200, 200)},
}


def matrix_url(name, world):
    args = PAGES[name].get("args", ())
    return reverse(name, args=[owner_dossier_export(world).pk for _ in args])


@pytest.fixture
def world(owner, other_owner, compliance_user, admin_user, key, other_key):
    return export_world(owner, other_owner, compliance_user, admin_user, key, other_key)


def client_for(client, user):
    if user is not None:
        client.force_login(user)
    return client


def test_matrix_covers_every_export_page():
    from attestations import urls

    served = {f"attestations:{p.name}" for p in urls.urlpatterns if p.name and p.name.startswith("export")}
    assert served == set(PAGES)


@pytest.mark.parametrize(("name", "method"), [(n, m) for n, spec in PAGES.items() for m in spec if m != "args"])
def test_page_permissions(world, name, method, client_factory):
    url = matrix_url(name, world)
    for role in ROLES:
        response = getattr(client_for(client_factory(), world[role]), method)(url)
        expected = PAGES[name][method][role]
        label = f"{role} {method.upper()} {url}"
        if expected == LOGIN:
            assert response.status_code == 302 and response.url.startswith(reverse("login")), label
        else:
            assert response.status_code == expected, f"{label}: {response.status_code}"
        if response.status_code == 200 and response["Content-Type"].startswith("text/html"):
            html = response.content.decode()
            assert not re.search(r"<script\b(?![^>]*\bsrc=)|\sstyle=|\shx-on", html), label


@pytest.fixture
def client_factory():
    from django.test import Client

    return Client


def test_owner_sees_only_their_keys_dossiers(world, client):
    mine = owner_dossier_export(world)
    other = campaign_export(world)
    client.force_login(world["owner"])
    page = client.get(reverse("attestations:exports")).content.decode()
    assert f"Key dossier #{mine.pk}" in page and f"#{other.pk}" not in page
    assert client.get(reverse("attestations:export", args=[other.pk])).status_code == 404
    client.force_login(world["other"])
    assert client.get(reverse("attestations:export-download", args=[mine.pk])).status_code == 404


def test_owner_cannot_request_a_campaign_report(world, client):
    client.force_login(world["owner"])
    response = client.post(reverse("attestations:export-create"), {"kind": "campaign", "campaign": world["campaign"].pk})
    assert response.status_code == 403
    assert not EvidenceExport.objects.exists()


def test_owner_cannot_request_another_owners_dossier(world, client):
    client.force_login(world["owner"])
    response = client.post(reverse("attestations:export-create"), {"kind": "key", "key": world["other_key"].pk})
    assert response.status_code == 400
    assert not EvidenceExport.objects.exists()


def test_compliance_requests_a_campaign_report_and_downloads_it(world, client, django_capture_on_commit_callbacks):
    client.force_login(world["compliance"])
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("attestations:export-create"),
                               {"kind": "campaign", "campaign": world["campaign"].pk})
    export = EvidenceExport.objects.get()
    assert response.status_code == 302 and response.url == reverse("attestations:export", args=[export.pk])
    export.refresh_from_db()
    assert export.status == EvidenceExport.Status.DONE and export.requested_by == world["compliance"]
    detail = client.get(response.url).content.decode()
    assert export.sha256 in detail and "Download PDF" in detail
    download = client.get(reverse("attestations:export-download", args=[export.pk]))
    assert download.status_code == 200 and download["Content-Type"] == "application/pdf"
    assert b"".join(download.streaming_content).startswith(b"%PDF")
    assert download["X-Export-SHA256"] == export.sha256


def test_progress_partial_polls_until_done(world, client):
    export = campaign_export(world)
    client.force_login(world["compliance"])
    url = reverse("attestations:export-progress", args=[export.pk])
    html = client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert 'hx-trigger="every 2s"' in html and f'hx-get="{url}"' in html and "Queued" in html
    EvidenceExport.objects.filter(pk=export.pk).update(status=EvidenceExport.Status.RENDERING, progress=40,
                                                       progress_note="Rendered 2 of 5 chunk(s) of items")
    html = client.get(url).content.decode()
    assert "40%" in html and "Rendered 2 of 5" in html and "every 2s" in html
    EvidenceExport.objects.filter(pk=export.pk).update(status=EvidenceExport.Status.DONE, progress=100)
    html = client.get(url).content.decode()
    assert "every 2s" not in html and "Download PDF" in html


def test_download_of_unfinished_export_is_404(world, client):
    export = campaign_export(world)
    client.force_login(world["compliance"])
    assert client.get(reverse("attestations:export-download", args=[export.pk])).status_code == 404


def test_request_buttons_on_campaign_and_key_pages(world, client):
    client.force_login(world["compliance"])
    page = client.get(reverse("attestations:campaign", args=[world["campaign"].pk])).content.decode()
    assert "Request campaign report" in page
    client.force_login(world["owner"])
    assert "Request dossier" in client.get(reverse("keys:detail", args=[world["key"].pk])).content.decode()
    steward_only = factories.ApiKeyFactory(owner=world["other"], steward=world["owner"])
    assert "Request dossier" not in client.get(reverse("keys:detail", args=[steward_only.pk])).content.decode()


def test_compliance_dashboard_overview(world, client):
    owner_dossier_export(world)
    client.force_login(world["compliance"])
    html = client.get(reverse("dashboard")).content.decode()
    for heading in ("Campaigns", "Revocations pending confirmation", "Exceptions by status", "Recent evidence exports"):
        assert heading in html
    assert "bar-chart" in html and "Key dossier #" in html
    client.force_login(world["owner"])
    assert "Recent evidence exports" not in client.get(reverse("dashboard")).content.decode()


def test_stub_is_a_pdf():
    assert PDF_STUB.startswith(b"%PDF")


@pytest.mark.parametrize("sample_size", ["0", "-3", "1001", "12.5", "many", "99999999999999999999999"])
def test_a_bad_sample_size_is_refused_beside_the_field(world, client, sample_size):
    client.force_login(world["compliance"])
    response = client.post(reverse("attestations:export-create"),
                           {"kind": "campaign", "campaign": world["campaign"].pk, "sample_size": sample_size})
    assert response.status_code == 400
    assert response.context["form"].errors["sample_size"] == [
        "Give the sample size as a whole number of items from 1 to 1,000, or leave it empty for 25, 40 or 60 by the "
        "number of confirmed decisions. To print every item, choose \"print every item\" instead."]
    assert not EvidenceExport.objects.exists()


def test_sampling_options_belong_to_a_campaign_report(world, client):
    client.force_login(world["compliance"])
    response = client.post(reverse("attestations:export-create"),
                           {"kind": "key", "key": world["key"].pk, "sample_size": "10", "print_all_items": "on"})
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert errors["sample_size"] == ["Only a campaign report draws a sample: leave the sample size empty."]
    assert errors["print_all_items"] == ["Only a campaign report has items to print: leave \"print every item\" off."]
    assert not EvidenceExport.objects.exists()


def test_owner_form_has_no_sampling_options(world, client):
    client.force_login(world["owner"])
    form = client.get(reverse("attestations:export-create")).context["form"]
    assert "sample_size" not in form.fields and "print_all_items" not in form.fields


def test_campaign_report_options_are_stored_and_shown(world, client, django_capture_on_commit_callbacks):
    client.force_login(world["compliance"])
    page = client.get(reverse("attestations:export-create")).content.decode()
    assert 'name="sample_size"' in page and 'name="print_all_items"' in page and "Print every item" in page
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("attestations:export-create"), {
            "kind": "campaign", "campaign": world["campaign"].pk, "sample_size": "12", "print_all_items": "on"})
    export = EvidenceExport.objects.get()
    assert response.status_code == 302
    seed = export.parameters["sample_seed"]
    assert export.parameters["sample_size"] == 12 and export.parameters["print_all_items"] is True
    detail = client.get(response.url).content.decode()
    assert "every item; every item attached as CSV and JSON" in detail and seed in detail
    EvidenceExport.objects.all().delete()
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("attestations:export-create"), {"kind": "campaign", "campaign": world["campaign"].pk})
    export = EvidenceExport.objects.get()
    assert "sample_size" not in export.parameters and export.parameters["print_all_items"] is False
    detail = client.get(reverse("attestations:export", args=[export.pk])).content.decode()
    assert "a sample of 25, 40 or 60 (by the number of confirmed decisions)" in detail
    assert export.parameters["sample_seed"] in detail
