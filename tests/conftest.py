import os

import pytest

from . import factories

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def media_root(settings, tmp_path):
    """Stored files (evidence exports) go to a folder of the test's own; evidence is not signed."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.EVIDENCE_SIGNING_PKCS12 = ""
    settings.EVIDENCE_SIGNING_PASSWORD = ""


@pytest.fixture
def owner(db):
    return factories.OwnerFactory(username="alice")


@pytest.fixture
def other_owner(db):
    return factories.OwnerFactory(username="bob")


@pytest.fixture
def compliance_user(db):
    return factories.ComplianceFactory(username="carol")


@pytest.fixture
def admin_user(db):
    return factories.AdminFactory(username="dave")


@pytest.fixture
def key(db, owner):
    return factories.ApiKeyFactory(owner=owner)


@pytest.fixture
def other_key(db, other_owner):
    return factories.ApiKeyFactory(owner=other_owner)
