"""REST evidence exports: permission matrix, 202 on request, status and permission-checked download."""

import pytest
from django.urls import reverse

from attestations.api.urls import exports_router
from attestations.models import EvidenceExport
from tests.attestations.export_world import export_world, owner_dossier_export

from . import client_for, permission_matrix_tests

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media_root")]


@pytest.fixture
def world(owner, other_owner, compliance_user, admin_user, auditor_user, key, other_key):
    return export_world(owner, other_owner, compliance_user, admin_user, key, other_key) | {"auditor": auditor_user}


# url name -> method -> role -> status, with an empty body (an allowed POST reaches validation: 400).
MATRIX = {
    "export-list": {
        "get": {"anon": 403, "owner": 200, "other": 200, "compliance": 200, "admin": 200, "auditor": 200},
        "post": {"anon": 403, "owner": 400, "other": 400, "compliance": 400, "admin": 400, "auditor": 403},
    },
    "export-detail": {"get": {"anon": 403, "owner": 200, "other": 404, "compliance": 200, "admin": 200, "auditor": 200}},
    "export-download": {"get": {"anon": 403, "owner": 200, "other": 404, "compliance": 200, "admin": 200, "auditor": 200}},
}


def matrix_url(name, world):
    return reverse(name) if name.endswith("-list") else reverse(name, args=[owner_dossier_export(world).pk])


test_matrix_covers_every_route, test_permission_matrix = permission_matrix_tests(exports_router, MATRIX, matrix_url)


def test_compliance_requests_a_campaign_report(world, django_capture_on_commit_callbacks):
    client = client_for(world["compliance"])
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("export-list"), {"kind": "campaign", "campaign": world["campaign"].pk},
                               format="json")
    assert response.status_code == 202, response.content
    assert response.data["kind"] == "campaign" and response.data["requested_by"] == "carol"
    detail = client.get(reverse("export-detail", args=[response.data["id"]]))
    assert detail.data["status"] == "done" and len(detail.data["sha256"]) == 64 and detail.data["page_count"] >= 3
    assert detail.data["chain_ok"] is True and detail.data["download_url"].endswith("/download/")
    download = client.get(detail.data["download_url"], HTTP_ACCEPT="application/pdf")
    assert download.status_code == 200 and b"".join(download.streaming_content).startswith(b"%PDF")


def test_owner_may_not_request_a_campaign_report(world):
    response = client_for(world["owner"]).post(
        reverse("export-list"), {"kind": "campaign", "campaign": world["campaign"].pk}, format="json")
    assert response.status_code == 403
    assert not EvidenceExport.objects.exists()


def test_owner_may_not_request_another_owners_dossier(world):
    response = client_for(world["owner"]).post(
        reverse("export-list"), {"kind": "key", "key": world["other_key"].pk}, format="json")
    assert response.status_code == 400 and "key" in response.data
    assert not EvidenceExport.objects.exists()


def test_owner_requests_their_own_dossier(world, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(world["owner"]).post(
            reverse("export-list"), {"kind": "key", "key": world["key"].pk}, format="json")
    assert response.status_code == 202
    assert EvidenceExport.objects.get().status == EvidenceExport.Status.DONE


def test_list_shows_only_permitted_exports(world):
    mine = owner_dossier_export(world)
    EvidenceExport.objects.create(kind="campaign", campaign=world["campaign"], requested_by=world["compliance"])
    ids = [e["id"] for e in client_for(world["other"]).get(reverse("export-list")).data["results"]]
    assert ids == []
    ids = [e["id"] for e in client_for(world["owner"]).get(reverse("export-list")).data["results"]]
    assert ids == [mine.pk]
    assert len(client_for(world["compliance"]).get(reverse("export-list")).data["results"]) == 2


def test_mixed_subjects_are_refused(world):
    response = client_for(world["compliance"]).post(
        reverse("export-list"), {"kind": "campaign", "campaign": world["campaign"].pk, "key": world["key"].pk},
        format="json")
    assert response.status_code == 400 and "key" in response.data


SAMPLE_SIZE_MESSAGE = ("Give the sample size as a whole number of items from 1 to 1,000, or leave it empty for 25, 40 "
                       "or 60 by the number of confirmed decisions. To print every item, choose \"print every item\" "
                       "instead.")


@pytest.mark.parametrize("sample_size", [0, -1, 1001, "many", 12.5, 10**30, True])
def test_a_bad_sample_size_is_refused_with_a_field_message(world, sample_size):
    response = client_for(world["compliance"]).post(
        reverse("export-list"), {"kind": "campaign", "campaign": world["campaign"].pk, "sample_size": sample_size},
        format="json")
    assert response.status_code == 400, response.content
    assert response.data["sample_size"] == [SAMPLE_SIZE_MESSAGE]
    assert not EvidenceExport.objects.exists()


def test_sampling_options_are_refused_for_a_dossier(world):
    response = client_for(world["compliance"]).post(
        reverse("export-list"), {"kind": "key", "key": world["key"].pk, "sample_size": 10, "print_all_items": True},
        format="json")
    assert response.status_code == 400
    assert response.data["sample_size"] == ["Only a campaign report draws a sample: leave the sample size empty."]
    assert response.data["print_all_items"] == [
        "Only a campaign report has items to print: leave \"print every item\" off."]
    response = client_for(world["compliance"]).post(
        reverse("export-list"), {"kind": "campaign", "campaign": world["campaign"].pk, "print_all_items": "perhaps"},
        format="json")
    assert response.status_code == 400 and "print_all_items" in response.data


def test_campaign_report_options_are_stored_in_the_parameters(world, django_capture_on_commit_callbacks):
    client = client_for(world["compliance"])
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("export-list"), {"kind": "campaign", "campaign": world["campaign"].pk,
                                                        "sample_size": 7, "print_all_items": True}, format="json")
    assert response.status_code == 202, response.content
    parameters = response.data["parameters"]
    assert parameters["sample_size"] == 7 and parameters["print_all_items"] is True
    assert len(parameters["sample_seed"]) == 16
    detail = client.get(reverse("export-detail", args=[response.data["id"]]))
    assert detail.data["status"] == "done" and detail.data["parameters"] == parameters
