"""Every export is signed: by the instance's own key (made on first use, outside the database and the
repository) unless the organisation's certificate is configured; PAdES B-B, and B-T with a time-stamp when a
time-stamp authority is configured. The evidence pages show the certificate's fingerprint and offer it."""

import stat
import threading
from pathlib import Path

import pytest
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.conf import settings as django_settings
from django.urls import reverse
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko.sign.validation.status import SignatureCoverageLevel
from pyhanko_certvalidator import ValidationContext

from attestations.management.commands.make_signing_cert import make_signing_certificate
from attestations.models import EvidenceExport
from attestations.services import evidence_signing, exports
from tests import factories
from tests.attestations.evidence_helpers import run_export
from tests.attestations.evidence_tsa import TimeStampAuthority

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media_root")]


@pytest.fixture
def signing_dir(settings, tmp_path):
    settings.EVIDENCE_SIGNING_DIR = tmp_path / "signing"
    return settings.EVIDENCE_SIGNING_DIR


@pytest.fixture
def tsa():
    authority = TimeStampAuthority()
    yield authority
    authority.stop()


def dossier(capture, owner) -> EvidenceExport:
    return run_export(capture, actor=owner, kind="key", key=factories.ApiKeyFactory(owner=owner))


def asn1(pem: bytes) -> asn1_x509.Certificate:
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    return asn1_x509.Certificate.load(der)


def validate(export, trust_pem: bytes, tsa_root=None):
    context = ValidationContext(trust_roots=[asn1(trust_pem)], allow_fetching=False)
    ts_context = ValidationContext(trust_roots=[tsa_root] if tsa_root else [], allow_fetching=False)
    with export.file.open("rb") as f:
        (signature,) = PdfFileReader(f).embedded_signatures
        return validate_pdf_signature(signature, context, ts_validation_context=ts_context)


def test_the_instance_key_is_made_on_first_use_outside_database_and_repository(signing_dir):
    assert not signing_dir.exists()
    first = evidence_signing.signing_certificate()
    bundle = signing_dir / evidence_signing.INSTANCE_BUNDLE
    assert stat.S_IMODE(bundle.stat().st_mode) == 0o600
    assert stat.S_IMODE(signing_dir.stat().st_mode) == 0o700
    assert not first.organisation and "API key portal evidence signing" in first.subject
    assert evidence_signing.signing_certificate().fingerprint == first.fingerprint  # made once, then reused
    assert [p.name for p in signing_dir.iterdir()] == [evidence_signing.INSTANCE_BUNDLE]
    assert len(first.fingerprint) == 95 and first.fingerprint.count(":") == 31


def test_the_default_place_is_in_the_users_data_directory(monkeypatch):
    from portal.settings import user_data_dir

    monkeypatch.setenv("XDG_DATA_HOME", "/var/lib/portal-data")
    assert user_data_dir() == Path("/var/lib/portal-data/keys-portal")
    monkeypatch.delenv("XDG_DATA_HOME")
    assert user_data_dir() == Path.home() / ".local" / "share" / "keys-portal"
    assert Path(django_settings.BASE_DIR) not in user_data_dir().parents


def test_workers_starting_together_make_one_key(signing_dir, monkeypatch):
    """Every worker generates a key at the same moment; one file wins and all of them sign with it."""
    workers = 6
    ready = threading.Barrier(workers)
    real = evidence_signing.new_signing_identity

    def slow_identity(*args, **kwargs):
        identity = real(*args, **kwargs)
        ready.wait(timeout=60)  # everyone has a key of their own before anyone links theirs into place
        return identity

    monkeypatch.setattr(evidence_signing, "new_signing_identity", slow_identity)
    fingerprints, errors = [], []

    def worker():
        try:
            evidence_signing.instance_bundle()
            fingerprints.append(evidence_signing.signing_certificate().fingerprint)
        except Exception as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == [] and len(fingerprints) == workers
    assert len(set(fingerprints)) == 1
    assert [p.name for p in signing_dir.iterdir()] == [evidence_signing.INSTANCE_BUNDLE]  # no temporary file left


def test_an_unwritable_place_fails_the_export_with_the_reason(settings, tmp_path, owner, django_capture_on_commit_callbacks):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    settings.EVIDENCE_SIGNING_DIR = blocker / "signing"
    with django_capture_on_commit_callbacks(execute=True):
        export = exports.request_export(actor=owner, kind="key", key=factories.ApiKeyFactory(owner=owner))
    export.refresh_from_db()
    assert export.status == EvidenceExport.Status.FAILED
    assert "evidence signing key could not be created" in export.error


def test_every_export_is_signed_by_the_instance_certificate(signing_dir, owner, django_capture_on_commit_callbacks):
    export = dossier(django_capture_on_commit_callbacks, owner)
    assert export.signed
    status = validate(export, evidence_signing.signing_certificate().pem)
    assert status.intact and status.valid and status.trusted, status.pretty_print_details()
    assert status.coverage == SignatureCoverageLevel.ENTIRE_FILE and status.docmdp_ok
    assert status.timestamp_validity is None  # B-B: no time-stamp authority configured
    assert evidence_signing.fingerprint(x509.load_der_x509_certificate(status.signing_cert.dump())) == \
        evidence_signing.signing_certificate().fingerprint


def test_the_organisations_certificate_signs_instead(settings, signing_dir, tmp_path, owner,
                                                     django_capture_on_commit_callbacks):
    settings.EVIDENCE_SIGNING_PASSWORD = "org-pass"
    settings.EVIDENCE_SIGNING_PKCS12 = str(make_signing_certificate(tmp_path / "org.p12", password="org-pass",
                                                                    common_name="Acme evidence signing"))
    export = dossier(django_capture_on_commit_callbacks, owner)
    organisation_pem = (tmp_path / "org.pem").read_bytes()
    status = validate(export, organisation_pem)
    assert status.intact and status.valid and status.trusted and status.coverage == SignatureCoverageLevel.ENTIRE_FILE
    certificate = evidence_signing.signing_certificate()
    assert certificate.organisation and certificate.pem == organisation_pem
    assert not signing_dir.exists()  # no instance key is made when the organisation's certificate signs


def test_time_stamped_when_a_time_stamp_authority_is_configured(settings, signing_dir, tsa, owner,
                                                                 django_capture_on_commit_callbacks):
    settings.EVIDENCE_TSA_URL = tsa.url
    export = dossier(django_capture_on_commit_callbacks, owner)
    assert tsa.requests == 2  # pyHanko asks once to size the signature's placeholder, then once to sign
    status = validate(export, evidence_signing.signing_certificate().pem, tsa_root=tsa.ca_asn1)
    assert status.intact and status.valid and status.trusted and status.coverage == SignatureCoverageLevel.ENTIRE_FILE
    stamp = status.timestamp_validity
    assert stamp is not None and stamp.intact and stamp.valid and stamp.trusted, status.pretty_print_details()
    assert stamp.signing_cert.subject.native["common_name"] == "Test TSA"


def test_an_unreachable_time_stamp_authority_fails_the_export(settings, signing_dir, tsa, owner,
                                                               django_capture_on_commit_callbacks):
    settings.EVIDENCE_TSA_URL = tsa.url
    tsa.stop()
    with django_capture_on_commit_callbacks(execute=True):
        export = exports.request_export(actor=owner, kind="key", key=factories.ApiKeyFactory(owner=owner))
    export.refresh_from_db()
    assert export.status == EvidenceExport.Status.FAILED and "time-stamp authority" in export.error
    assert not export.file


@pytest.mark.parametrize("role", ["owner", "compliance"])
def test_evidence_pages_show_the_fingerprint_and_offer_the_certificate(role, signing_dir, client, owner, compliance_user,
                                                                        django_capture_on_commit_callbacks):
    export = dossier(django_capture_on_commit_callbacks, owner)
    certificate = evidence_signing.signing_certificate()
    client.force_login(owner if role == "owner" else compliance_user)
    for url in (reverse("attestations:exports"), reverse("attestations:export", args=[export.pk])):
        page = client.get(url).content.decode()
        assert certificate.fingerprint in page and reverse("attestations:export-certificate") in page, url
    response = client.get(reverse("attestations:export-certificate"))
    assert response.status_code == 200 and response["Content-Type"] == "application/x-pem-file"
    assert response["Content-Disposition"] == 'attachment; filename="evidence-signing.pem"'
    assert response.content == certificate.pem and response["X-Certificate-SHA256"] == certificate.fingerprint


def test_the_certificate_is_for_signed_in_users_only(client, signing_dir):
    response = client.get(reverse("attestations:export-certificate"))
    assert response.status_code == 302 and response.url.startswith(reverse("login"))
    assert not signing_dir.exists()


def test_the_certificate_command_prints_the_fingerprint_and_writes_the_pem(signing_dir, tmp_path):
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("evidence_certificate", "--pem", str(tmp_path / "evidence-signing.pem"), stdout=out)
    certificate = evidence_signing.signing_certificate()
    assert f"SHA-256 fingerprint: {certificate.fingerprint}" in out.getvalue()
    assert "self-signed certificate (EVIDENCE_SIGNING_DIR)" in out.getvalue()
    assert (tmp_path / "evidence-signing.pem").read_bytes() == certificate.pem
    stdout = StringIO()
    call_command("evidence_certificate", "--pem", "-", stdout=stdout)
    assert stdout.getvalue().encode() == certificate.pem
