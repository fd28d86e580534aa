"""The key that signs evidence exports, and the signature itself (PAdES with pyHanko).

Every export is signed. The organisation's certificate (``EVIDENCE_SIGNING_PKCS12`` and its password)
signs when it is configured; otherwise the instance signs with a key and self-signed certificate it
creates on first use in ``EVIDENCE_SIGNING_DIR``, outside the database and the repository. Auditors
trust that certificate by its SHA-256 fingerprint, which the evidence pages and ``verify-evidence`` show.
With ``EVIDENCE_TSA_URL`` each signature also carries an RFC 3161 time-stamp (PAdES B-T).
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from django.conf import settings

INSTANCE_BUNDLE = "instance-signing.p12"
INSTANCE_COMMON_NAME = "API key portal evidence signing"
INSTANCE_DAYS = 3650
SIGNATURE_FIELD = "EvidenceSignature"


class SigningError(RuntimeError):
    """The signing key cannot be read or created, or the time-stamp authority did not answer."""


@dataclass(frozen=True)
class SigningCertificate:
    certificate: x509.Certificate
    organisation: bool  # the organisation's own certificate rather than the instance's self-signed one

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the certificate (DER), written as ``openssl x509 -fingerprint -sha256`` does."""
        return fingerprint(self.certificate)

    @property
    def subject(self) -> str:
        return self.certificate.subject.rfc4514_string()

    @property
    def not_after(self) -> datetime.datetime:
        return self.certificate.not_valid_after_utc


def fingerprint(certificate: x509.Certificate) -> str:
    digest = hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def new_signing_identity(common_name: str = INSTANCE_COMMON_NAME, *, days: int = INSTANCE_DAYS,
                         organisation: str = "API key portal (self-signed)"):
    """A fresh RSA key and a self-signed certificate for signing documents (non-repudiation)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    name = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
    ])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=True, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, certificate


def pkcs12_bundle(key, certificate: x509.Certificate, password: str = "") -> bytes:
    encryption = (serialization.BestAvailableEncryption(password.encode()) if password
                  else serialization.NoEncryption())
    return pkcs12.serialize_key_and_certificates(b"evidence-signing", key, certificate, None, encryption)


# The instance's own key --------------------------------------------------------------------------

def instance_bundle() -> Path:
    """The instance's PKCS#12 file (key and certificate), created on first use.

    Safe when several workers start at once: each writes a complete file under a temporary name
    (mode 0600) and links it into place; a link that finds the file there already loses, and every
    worker then uses the one file that won.
    """
    directory = Path(settings.EVIDENCE_SIGNING_DIR)
    bundle = directory / INSTANCE_BUNDLE
    if bundle.exists():
        return bundle
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        key, certificate = new_signing_identity(_instance_common_name())
        handle, temporary = tempfile.mkstemp(dir=directory, prefix=".instance-signing-", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as f:
                f.write(pkcs12_bundle(key, certificate))
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(temporary, bundle)
            except FileExistsError:
                pass
        finally:
            os.unlink(temporary)
    except OSError as error:
        raise SigningError(f"The evidence signing key could not be created in {directory}: {error.strerror}") from None
    return bundle


def _instance_common_name() -> str:
    return f"{INSTANCE_COMMON_NAME} ({settings.SITE_URL.split('://', 1)[-1]})"


def _configured_bundle() -> tuple[Path, str | None, bool]:
    if settings.EVIDENCE_SIGNING_PKCS12:
        password = settings.EVIDENCE_SIGNING_PASSWORD or None
        return Path(settings.EVIDENCE_SIGNING_PKCS12), password, True
    return instance_bundle(), None, False


def signing_certificate() -> SigningCertificate:
    """The certificate that signs exports now: the organisation's if configured, else the instance's."""
    path, password, organisation = _configured_bundle()
    try:
        stat = path.stat()
        certificate = _bundle_certificate(str(path), stat.st_mtime_ns, stat.st_size, password)
    except (OSError, ValueError) as error:
        raise SigningError(f"The evidence signing certificate {path} could not be read: {error}") from None
    if certificate is None:
        raise SigningError(f"The evidence signing file {path} holds no certificate.")
    return SigningCertificate(certificate, organisation)


@functools.lru_cache(maxsize=4)
def _bundle_certificate(path: str, mtime_ns: int, size: int, password: str | None) -> x509.Certificate | None:
    """The certificate of a PKCS#12 file, read once per version of the file: opening the bundle takes a third of a
    second (its key derivation), and the export list shows the certificate on every request."""
    _, certificate, _ = pkcs12.load_key_and_certificates(Path(path).read_bytes(),
                                                         password.encode() if password else None)
    return certificate


# Signing -----------------------------------------------------------------------------------------

def sign(pdf: bytes) -> bytes:
    """A PAdES signature over the whole file (B-B; B-T with a time-stamp when a TSA is configured)."""
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import fields, signers
    from pyhanko.sign.timestamps import HTTPTimeStamper, TimestampRequestError

    path, password, _ = _configured_bundle()
    signer = signers.SimpleSigner.load_pkcs12(str(path), passphrase=password.encode() if password else None)
    if signer is None:
        raise SigningError("The evidence signing certificate could not be loaded (path or password wrong).")
    timestamper = HTTPTimeStamper(settings.EVIDENCE_TSA_URL, timeout=30) if settings.EVIDENCE_TSA_URL else None
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf), strict=False)
    metadata = signers.PdfSignatureMetadata(
        field_name=SIGNATURE_FIELD, md_algorithm="sha256", subfilter=fields.SigSeedSubFilter.PADES,
        reason="Audit evidence export", location=settings.SITE_URL,
    )
    try:
        out = signers.sign_pdf(writer, metadata, signer=signer, timestamper=timestamper)
    except TimestampRequestError as error:
        raise SigningError(f"The time-stamp authority did not answer: {error}") from None
    return out.getvalue()


def time_stamped() -> bool:
    return bool(settings.EVIDENCE_TSA_URL)
