"""Show the certificate that signs evidence exports (made on first use when it is the instance's own).

An administrator reads its SHA-256 fingerprint to an auditor through a second channel, and can write the
certificate as PEM for them (the evidence pages offer the same file to signed-in users).
"""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from attestations.services import evidence_signing


class Command(BaseCommand):
    help = "Show the certificate that signs evidence exports and its SHA-256 fingerprint; --pem writes it."

    def add_arguments(self, parser):
        parser.add_argument("--pem", metavar="FILE", help="Also write the certificate as PEM to FILE ('-' for stdout).")

    def handle(self, *args, pem: str | None, **options):
        try:
            certificate = evidence_signing.signing_certificate()
        except evidence_signing.SigningError as error:
            raise CommandError(str(error))
        if pem == "-":
            self.stdout.write(certificate.pem.decode(), ending="")
            return
        source = ("the organisation's certificate (EVIDENCE_SIGNING_PKCS12)" if certificate.organisation
                  else "this installation's own self-signed certificate (EVIDENCE_SIGNING_DIR)")
        self.stdout.write(f"Evidence exports are signed with {source}.")
        self.stdout.write(f"Subject:             {certificate.subject}")
        self.stdout.write(f"SHA-256 fingerprint: {certificate.fingerprint}")
        self.stdout.write(f"Valid until:         {certificate.not_after:%Y-%m-%d %H:%M} UTC")
        if pem:
            Path(pem).write_bytes(certificate.pem)
            self.stdout.write(f"Wrote the certificate to {pem}.")
