"""Evidence exports on S3-compatible object storage (``EXPORT_STORAGE=s3``), against moto's server on 127.0.0.1.

The storage is configured as ``portal/settings.py`` builds it from the environment. Each report kind is rendered
(a campaign report in chunks, whose parts go through the bucket too), downloaded through the portal and the API
with the usual permission checks and access records, verified offline, and finally deleted by the retention job
from the bucket; nothing is written under MEDIA_ROOT, and a download opens no temporary file.
"""

import contextlib
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import boto3
import pytest
from django.core.files.storage import storages
from django.urls import reverse
from django.utils import timezone
from moto.server import ThreadedMotoServer

from attestations.models import EvidenceExport
from attestations.services import evidence, evidence_signing, exports
from core.models import AccessAction, AccessRecord
from evidence_verifier import cli as verifier
from tests import factories
from tests.attestations.evidence_helpers import decided_campaign, run_export

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
REGION = "eu-west-1"


@pytest.fixture(scope="module")
def s3_endpoint():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def storage_settings(environment: dict) -> dict:
    """``STORAGES["exports"]`` as the settings module builds it from ``environment`` (in a fresh interpreter)."""
    result = subprocess.run(
        [sys.executable, "-c", "import json, portal.settings as s; print(json.dumps(s.STORAGES['exports']))"],
        cwd=ROOT, env={**os.environ, **environment}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def s3_storage_settings(s3_endpoint):
    return storage_settings({"EXPORT_STORAGE": "s3", "AWS_STORAGE_BUCKET_NAME": "evidence",
                             "AWS_S3_ENDPOINT_URL": s3_endpoint, "AWS_S3_REGION_NAME": REGION,
                             "AWS_LOCATION": "keys-portal"})


@pytest.fixture
def bucket(settings, monkeypatch, tmp_path, s3_endpoint, s3_storage_settings):
    """A new bucket as the exports storage; MEDIA_ROOT an empty folder that must stay empty."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    name = f"evidence-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name=REGION)
    client.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
    configured = json.loads(json.dumps(s3_storage_settings))
    configured["OPTIONS"]["bucket_name"] = name
    settings.STORAGES = {**settings.STORAGES, "exports": configured}
    # The field's storage was chosen when the model was imported; the test switches it with the settings.
    monkeypatch.setattr(EvidenceExport._meta.get_field("file"), "storage", storages["exports"])
    media = tmp_path / "media"
    media.mkdir()
    settings.MEDIA_ROOT = media
    yield Bucket(client, name, media)
    assert list(media.rglob("*")) == [], "a file was written under MEDIA_ROOT"


class Bucket:
    def __init__(self, client, name, media):
        self.client, self.name, self.media = client, name, media

    def keys(self) -> list[str]:
        listed = self.client.list_objects_v2(Bucket=self.name)
        return sorted(item["Key"] for item in listed.get("Contents", []))

    def read(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.name, Key=key)["Body"].read()


def test_the_settings_switch_selects_the_s3_backend(s3_storage_settings):
    assert s3_storage_settings["BACKEND"] == "storages.backends.s3.S3Storage"
    options = s3_storage_settings["OPTIONS"]
    assert options["bucket_name"] == "evidence" and options["region_name"] == REGION
    assert options["location"] == "keys-portal" and options["default_acl"] is None
    assert options["max_memory_size"] == 0  # reads never spill to a temporary file on local disk
    assert storage_settings({})["BACKEND"] == "django.core.files.storage.FileSystemStorage"


@pytest.mark.parametrize("environment, message", [
    ({"EXPORT_STORAGE": "s3"}, "EXPORT_STORAGE=s3 needs AWS_STORAGE_BUCKET_NAME"),
    ({"EXPORT_STORAGE": "nfs"}, "EXPORT_STORAGE is 'local' or 's3'"),
])
def test_a_bad_storage_setting_stops_the_start(environment, message):
    result = subprocess.run([sys.executable, "-c", "import portal.settings"], cwd=ROOT,
                            env={**os.environ, **environment}, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and message in result.stderr


@contextlib.contextmanager
def no_temporary_files():
    """Fails any temporary file opened meanwhile (a spooled file rolling over to disk included): a download
    streams from the storage through memory."""
    def refuse(*args, **kwargs):
        raise AssertionError("a temporary file was opened on local disk")

    with pytest.MonkeyPatch.context() as patch:
        for name in ("mkstemp", "mkdtemp", "TemporaryFile", "NamedTemporaryFile"):
            patch.setattr(tempfile, name, refuse)
        yield


def download(client, url: str) -> tuple[bytes, object]:
    with no_temporary_files():
        response = client.get(url)
        assert response.status_code == 200, response.content[:200]
        assert response.streaming
        content = b"".join(response.streaming_content)
    return content, response


def verified(content: bytes, tmp_path: Path) -> str:
    """``verify-evidence`` over the downloaded file, with the instance's certificate as the trusted signer."""
    report, pem = tmp_path / "downloaded.pdf", tmp_path / "signer.pem"
    report.write_bytes(content)
    pem.write_bytes(evidence_signing.signing_certificate().pem)
    out = io.StringIO()
    status = verifier.main([str(report), "--cert", str(pem)], out=out)
    assert status == 0, out.getvalue()
    assert "FAIL" not in out.getvalue()
    return out.getvalue()


def check_downloads(export, bucket, reader, stranger, tmp_path, client):
    """The portal and the API serve the stored object, record the download, and hide it from a stranger."""
    stored = bucket.read(f"keys-portal/{export.file.name}")
    assert hashlib.sha256(stored).hexdigest() == export.sha256 and len(stored) == export.size
    client.force_login(reader)
    before = AccessRecord.objects.filter(user=reader, action=AccessAction.EXPORT_DOWNLOADED).count()
    portal, response = download(client, reverse("attestations:export-download", args=[export.pk]))
    assert portal == stored and response["X-Export-SHA256"] == export.sha256
    assert response["Content-Type"] == "application/pdf" and int(response["Content-Length"]) == len(stored)
    api, response = download(client, reverse("export-download", args=[export.pk]))
    assert api == stored and response["X-Export-SHA256"] == export.sha256
    records = AccessRecord.objects.filter(user=reader, action=AccessAction.EXPORT_DOWNLOADED)
    assert records.count() == before + 2
    assert all(f"sha256:{export.sha256}" in target for target in records.values_list("target", flat=True))
    client.force_login(stranger)
    assert client.get(reverse("attestations:export-download", args=[export.pk])).status_code == 404
    assert client.get(reverse("export-download", args=[export.pk])).status_code == 404
    return verified(portal, tmp_path)


def test_a_campaign_report_renders_downloads_and_verifies_through_the_bucket(
        bucket, compliance_user, owner, other_owner, monkeypatch, tmp_path, client, django_capture_on_commit_callbacks):
    campaign = decided_campaign(compliance_user, owner, other_owner, keys_per_owner=4)[0]
    monkeypatch.setattr(evidence, "CHUNK_SIZE", 3)
    written = []
    real_save = storages["exports"].save
    monkeypatch.setattr(storages["exports"], "save", lambda name, *a, **kw: written.append(name) or real_save(name, *a, **kw))
    export = run_export(django_capture_on_commit_callbacks, actor=compliance_user, kind="campaign", campaign=campaign)
    assert export.chunks_total == 4
    # The plan and each chunk went through the bucket, and were deleted once the report was assembled.
    assert {f"exports/parts/{export.pk}/chunk-{i:05d}.pdf" for i in range(4)} <= set(written)
    assert f"exports/parts/{export.pk}/plan.json" in written
    assert bucket.keys() == [f"keys-portal/{export.file.name}"]
    report = check_downloads(export, bucket, compliance_user, owner, tmp_path, client)
    assert f"OK    totals of campaign-{campaign.pk}-items.csv: 8 rows" in report
    assert "OK    signer: the certificate given" in report


@pytest.mark.parametrize("kind", ["key", "customer"])
def test_a_dossier_and_a_customer_report_through_the_bucket(
        kind, bucket, compliance_user, owner, other_owner, monkeypatch, tmp_path, client,
        django_capture_on_commit_callbacks):
    if kind == "key":
        key = factories.ApiKeyFactory(owner=owner)
        export = run_export(django_capture_on_commit_callbacks, actor=owner, kind="key", key=key)
        reader, rows_file = owner, f"key-{key.pk}-events.csv"
    else:
        customer = factories.CustomerFactory()
        for _ in range(3):
            factories.ApiKeyFactory(owner=owner, workflow__customer=customer)
        export = run_export(django_capture_on_commit_callbacks, actor=compliance_user, kind="customer",
                            customer=customer, period_end=timezone.localdate())
        reader, rows_file = compliance_user, f"customer-{customer.pk}-keys.csv"
    assert bucket.keys() == [f"keys-portal/{export.file.name}"]
    report = check_downloads(export, bucket, reader, other_owner, tmp_path, client)
    assert f"OK    attachment {rows_file}: SHA-256" in report


def test_retention_deletes_the_object_from_the_bucket(bucket, owner, settings, django_capture_on_commit_callbacks,
                                                      client):
    key = factories.ApiKeyFactory(owner=owner)
    export = run_export(django_capture_on_commit_callbacks, actor=owner, kind="key", key=key)
    kept = run_export(django_capture_on_commit_callbacks, actor=owner, kind="key", key=key)
    EvidenceExport.objects.filter(pk=export.pk).update(finished_at=timezone.now() - timezone.timedelta(days=30))
    settings.EVIDENCE_EXPORT_RETENTION_DAYS = 10
    assert exports.purge_expired_exports() == 1
    export.refresh_from_db()
    assert export.file_purged_at and not export.file
    assert bucket.keys() == [f"keys-portal/{kept.file.name}"]
    client.force_login(owner)
    assert client.get(reverse("attestations:export-download", args=[export.pk])).status_code == 404
    assert client.get(reverse("export-download", args=[export.pk])).status_code == 404


def test_health_checks_the_bucket(bucket, client):
    response = client.get("/health/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200 and response.json()["checks"]["storage"] == "OK"
    assert bucket.keys() == []  # its test file written, read back and deleted


def test_health_reports_a_missing_bucket(bucket, client):
    bucket.client.delete_bucket(Bucket=bucket.name)
    response = client.get("/health/", HTTP_ACCEPT="application/json")
    assert response.status_code == 500 and response.json()["checks"]["storage"] != "OK"
