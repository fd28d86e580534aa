"""Create a self-signed certificate for signing evidence PDFs (demos and tests; use a real CA in production)."""

import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


def make_signing_certificate(out: Path, *, password: str = "", common_name: str = "API key portal evidence signing",
                             days: int = 825) -> Path:
    """Write a PKCS#12 bundle (key + self-signed certificate) to ``out`` and the certificate as PEM beside it."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "API key portal (self-signed demo)"),
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
    encryption = (serialization.BestAvailableEncryption(password.encode()) if password
                  else serialization.NoEncryption())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(pkcs12.serialize_key_and_certificates(b"evidence-signing", key, certificate, None, encryption))
    out.chmod(0o600)
    out.with_suffix(".pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return out


class Command(BaseCommand):
    help = "Create a self-signed PKCS#12 certificate for signing evidence PDFs (for demos; auditors must trust it explicitly)."

    def add_arguments(self, parser):
        parser.add_argument("--out", default=str(Path.home() / ".keys-portal" / "evidence-signing.p12"),
                            help="Where to write the PKCS#12 file (the certificate is also written as .pem beside it).")
        parser.add_argument("--days", type=int, default=825, help="Validity in days (default 825).")
        parser.add_argument("--force", action="store_true", help="Overwrite an existing file.")

    def handle(self, *args, out: str, days: int, force: bool, **options):
        path = Path(out)
        if path.exists() and not force:
            raise CommandError(f"{path} exists; pass --force to replace it.")
        # The password comes from the environment, never from the command line (it would land in shell history).
        password = settings.EVIDENCE_SIGNING_PASSWORD
        make_signing_certificate(path, password=password, days=days)
        self.stdout.write(f"Wrote {path} and the certificate {path.with_suffix('.pem')}.")
        self.stdout.write(f"Sign exports with: EVIDENCE_SIGNING_PKCS12={path}"
                          + (" (and the same EVIDENCE_SIGNING_PASSWORD)" if password else ""))
