"""The report's signature, checked with pyHanko: intact, valid, covering the whole file, and by whom.

Nothing is fetched from the network: trust comes only from the certificates the auditor passes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime

from asn1crypto import pem
from asn1crypto import x509 as asn1_x509


@dataclass
class SignatureCheck:
    problems: list[str] = field(default_factory=list)
    signed: bool = False
    signer_subject: str = ""
    signer_fingerprint: str = ""
    signed_at: datetime | None = None
    trusted: bool | None = None  # None: no certificate was given to trust
    timestamp: datetime | None = None
    timestamp_authority: str = ""
    timestamp_trusted: bool | None = None


def fingerprint(certificate: asn1_x509.Certificate) -> str:
    """SHA-256 of the certificate (DER), written as ``openssl x509 -fingerprint -sha256`` does."""
    digest = hashlib.sha256(certificate.dump()).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def load_certificate(data: bytes) -> asn1_x509.Certificate:
    """A certificate from PEM or DER bytes."""
    if pem.detect(data):
        _, _, data = pem.unarmor(data)
    return asn1_x509.Certificate.load(data)


def check_signature(path: str, trusted: asn1_x509.Certificate | None = None,
                    tsa_root: asn1_x509.Certificate | None = None) -> SignatureCheck:
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko.sign.validation.status import SignatureCoverageLevel
    from pyhanko_certvalidator import ValidationContext

    check = SignatureCheck()
    try:
        with open(path, "rb") as f:
            signatures = PdfFileReader(f, strict=False).embedded_signatures
            if not signatures:
                check.problems.append("signature: the file is not signed")
                return check
            check.signed = True
            last = signatures[-1]
            signer = last.signer_cert
            check.signer_subject = signer.subject.human_friendly
            check.signer_fingerprint = fingerprint(signer)
            context = ValidationContext(trust_roots=[trusted] if trusted else [], allow_fetching=False)
            ts_context = ValidationContext(trust_roots=[tsa_root] if tsa_root else [], allow_fetching=False)
            for index, embedded in enumerate(signatures, start=1):
                status = validate_pdf_signature(embedded, context, ts_validation_context=ts_context)
                name = "signature" if len(signatures) == 1 else f"signature {index} of {len(signatures)}"
                if not status.intact:
                    check.problems.append(f"{name}: the signed bytes were changed after signing (digest mismatch)")
                elif not status.valid:
                    check.problems.append(f"{name}: the signature value does not verify with the signer's certificate")
                if embedded is last:
                    _last_signature(check, status, trusted, tsa_root, SignatureCoverageLevel)
    except Exception as error:  # a damaged file: say so rather than crash
        check.problems.append(f"signature: cannot be read ({type(error).__name__}: {error})")
    return check


def _last_signature(check: SignatureCheck, status, trusted, tsa_root, coverage_level) -> None:
    if status.coverage != coverage_level.ENTIRE_FILE:
        check.problems.append("signature: does not cover the whole file (something was added or changed after signing)")
    check.signed_at = status.signer_reported_dt
    if trusted is not None:
        check.trusted = False
        if fingerprint(status.signing_cert) != fingerprint(trusted):
            check.problems.append(f"signer: the report was signed by certificate {check.signer_fingerprint}, "
                                  f"not by the certificate given ({fingerprint(trusted)})")
        elif status.intact and status.valid and not status.trusted:
            reason = status.trust_problem_indic.name.lower().replace("_", " ") if status.trust_problem_indic else "?"
            check.problems.append(f"signer: the certificate given does not validate ({reason})")
        else:
            check.trusted = bool(status.trusted)
    timestamp = status.timestamp_validity
    if timestamp is not None:
        check.timestamp = timestamp.timestamp
        check.timestamp_authority = timestamp.signing_cert.subject.human_friendly
        if not (timestamp.intact and timestamp.valid):
            check.problems.append("time-stamp: the time-stamp token does not verify")
        if tsa_root is not None:
            check.timestamp_trusted = bool(timestamp.trusted)
            if not timestamp.trusted:
                check.problems.append("time-stamp: the time-stamp authority is not the one given (--tsa-cert)")
