import os

import pytest

from . import factories

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(scope="session")
def evidence_signing_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("evidence-signing")


@pytest.fixture(autouse=True)
def evidence_signing(settings, evidence_signing_dir):
    """Exports are signed with an instance key made once per test session, never in the user's data
    directory; no organisation certificate, no time-stamp authority."""
    settings.EVIDENCE_SIGNING_DIR = evidence_signing_dir
    settings.EVIDENCE_SIGNING_PKCS12 = ""
    settings.EVIDENCE_SIGNING_PASSWORD = ""
    settings.EVIDENCE_TSA_URL = ""


@pytest.fixture
def media_root(settings, tmp_path):
    """Stored files (evidence exports) go to a folder of the test's own."""
    settings.MEDIA_ROOT = tmp_path / "media"


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
def auditor_user(db, compliance_user):
    """An external auditor with a current grant (compliance's, for 30 days)."""
    auditor = factories.AuditorFactory(username="audrey", first_name="Audrey", last_name="Lind")
    factories.grant_access(auditor, by=compliance_user)
    return auditor


@pytest.fixture
def key(db, owner):
    return factories.ApiKeyFactory(owner=owner)


@pytest.fixture
def other_key(db, other_owner):
    return factories.ApiKeyFactory(owner=other_owner)
