"""Create a self-signed PKCS#12 certificate for signing evidence PDFs (EVIDENCE_SIGNING_PKCS12).

Without one, the instance signs with the key it creates itself; this makes a separate file, e.g. to try
the organisation-certificate set-up; production should use a certificate from the organisation's CA.
"""

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from attestations.services.evidence_signing import new_signing_identity, pkcs12_bundle


def make_signing_certificate(out: Path, *, password: str = "", common_name: str = "API key portal evidence signing",
                             days: int = 825) -> Path:
    """Write a PKCS#12 bundle (key + self-signed certificate) to ``out`` and the certificate as PEM beside it."""
    key, certificate = new_signing_identity(common_name, days=days, organisation="API key portal (self-signed demo)")
    out.parent.mkdir(parents=True, exist_ok=True)
    with os.fdopen(os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:  # never readable by others
        f.write(pkcs12_bundle(key, certificate, password))
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
