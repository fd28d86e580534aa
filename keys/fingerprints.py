"""Fingerprints of API key secrets: HMAC-SHA256 under a server-side pepper.

The secret passes through these functions and is dropped; only the hex digest is kept, so a leaked
secret can later be matched to its key without the portal ever holding the secret.
"""

import hashlib
import hmac
import re

from django.conf import settings

FINGERPRINT_RE = re.compile(r"^[0-9a-f]{64}$")
MAX_PREFIX_LENGTH = 16
MIN_SECRET_LENGTH = 16


def current_pepper_version() -> int:
    return settings.KEY_FINGERPRINT_PEPPER_VERSION


def peppers() -> dict[int, str]:
    return {**settings.KEY_FINGERPRINT_OLD_PEPPERS, current_pepper_version(): settings.KEY_FINGERPRINT_PEPPER}


def identity_refusal(*, has_secret: bool, has_fingerprint: bool, missing: str) -> str | None:
    """A key is identified by its secret or by the secret's fingerprint: exactly one of them (``missing``
    says what to give when neither is)."""
    if has_secret and has_fingerprint:
        return "Give either the secret or its fingerprint, not both."
    return missing if not has_secret and not has_fingerprint else None


def fingerprint_secret(secret: str, version: int | None = None) -> str:
    version = current_pepper_version() if version is None else version
    pepper = peppers()[version]
    return hmac.new(pepper.encode(), secret.encode(), hashlib.sha256).hexdigest()


def candidate_fingerprints(secret: str) -> list[str]:
    """The secret's fingerprint under every pepper still known, newest first (for matching leaks)."""
    return [fingerprint_secret(secret, version) for version in sorted(peppers(), reverse=True)]


def normalise_fingerprint(value: str) -> str | None:
    value = (value or "").strip().lower()
    return value if FINGERPRINT_RE.match(value) else None


def default_prefix(secret: str) -> str:
    """A display prefix that gives away at most a quarter of the secret."""
    return secret[: min(12, len(secret) // 4)]
