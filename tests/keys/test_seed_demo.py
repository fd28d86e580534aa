import datetime
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.utils import timezone

from core import roles
from keys.choices import ContractStatus, KeyStatus, LifecycleAction, WorkflowStatus
from keys.models import ApiKey, ApiKeyUserObjectPermission, Customer, IssuingSystem, LifecycleEvent, OwnerProfile, Workflow

pytestmark = pytest.mark.django_db


def seed(*args):
    out = StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


@pytest.fixture(autouse=True)
def fast_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def debug(settings):
    settings.DEBUG = True
    return settings


@pytest.fixture
def seeded(debug):
    return seed()


def user(username):
    return get_user_model().objects.get(username=username)


def snapshot():
    return {
        "users": list(get_user_model().objects.order_by("pk").values_list("username", "password", "is_active")),
        "customers": Customer.objects.count(),
        "workflows": Workflow.objects.count(),
        "keys": list(ApiKey.objects.order_by("pk").values_list("pk", "status", "owner_id", "fingerprint")),
        "events": LifecycleEvent.objects.count(),
        "key_history": ApiKey.history.count(),
        "profiles": OwnerProfile.history.count(),
    }


def test_contract_users_log_in_with_demo(seeded):
    for username in ("admin", "compliance", "owner1", "owner2"):
        assert user(username).check_password("demo"), username
    admin = user("admin")
    assert admin.is_superuser and admin.is_staff and roles.is_admin(admin)
    assert roles.is_compliance(user("compliance"))
    assert user("owner1").groups.filter(name=roles.OWNER).exists()
    assert "owner1" in seeded and "demo" in seeded


def test_owner1_sees_only_their_own_keys(seeded):
    owner1 = user("owner1")
    visible = ApiKey.objects.visible_to(owner1)
    assert visible.count() >= 5
    assert set(visible) == set(ApiKey.objects.filter(owner=owner1))
    assert not visible.filter(owner=user("owner2")).exists()
    assert ApiKey.objects.filter(owner=user("owner2")).count() >= 5


def test_realistic_states(seeded):
    today = timezone.localdate()
    keys = ApiKey.objects.all()
    assert 35 <= keys.count() <= 45
    assert keys.filter(status=KeyStatus.PENDING).count() == 1
    # Suspended: one by hand, and keys released in a campaign waiting out their grace window; revoked: by
    # hand, and an offboarding campaign's releases.
    for status in (KeyStatus.SUSPENDED, KeyStatus.REVOKED):
        assert 1 <= keys.filter(status=status).count() <= 3, status
    assert keys.live().filter(expires_on__range=(today, today + datetime.timedelta(days=14))).count() >= 2
    assert keys.filter(last_used_at__lt=timezone.now() - datetime.timedelta(days=120)).count() >= 2
    assert keys.filter(last_used_at__isnull=True).exists()
    assert keys.live().filter(next_review_on__lt=today).exists()
    assert keys.filter(rotation_required=True).count() == 1
    assert keys.filter(orphaned=True).exists()
    assert Customer.objects.count() >= 4
    assert Customer.objects.filter(contract_status=ContractStatus.ENDED, contract_end__lt=today).exists()
    assert Customer.objects.filter(contract_status=ContractStatus.ENDING).exists()
    assert Workflow.objects.filter(status=WorkflowStatus.DECOMMISSIONED).exists()
    assert set(Workflow.objects.values_list("environment", flat=True)) == {"production", "staging", "development"}
    webhook = IssuingSystem.objects.get(kind="webhook")
    assert webhook.revoke_url.startswith("http://127.0.0.1:")
    assert IssuingSystem.objects.filter(kind="manual").exists()
    departed = OwnerProfile.objects.get(user__username="owner3")
    assert not departed.is_active and departed.manager is not None


def test_keys_went_through_the_lifecycle(seeded):
    admin = user("admin")
    for key in ApiKey.objects.exclude(status=KeyStatus.PENDING):
        actions = list(key.events.values_list("action", flat=True))
        assert actions[:2] == [LifecycleAction.REGISTER, LifecycleAction.APPROVE]
        assert key.approved_by == admin
        assert ApiKeyUserObjectPermission.objects.filter(
            content_object=key, user=key.owner, permission__codename="view_apikey"
        ).exists()
    assert len(set(ApiKey.objects.values_list("fingerprint", flat=True))) == ApiKey.objects.count()


def test_output_never_shows_key_material(seeded):
    for prefix, fingerprint in ApiKey.objects.values_list("prefix", "fingerprint"):
        assert prefix not in seeded and fingerprint not in seeded


def test_running_twice_changes_nothing(seeded):
    before = snapshot()
    output = seed()
    assert "already present" in output
    assert snapshot() == before


def test_reset_recreates_the_demo_data(seeded):
    old = set(ApiKey.objects.values_list("pk", flat=True))
    seed("--reset")
    assert ApiKey.objects.count() == len(old)
    assert not old & set(ApiKey.objects.values_list("pk", flat=True))
    assert user("owner1").check_password("demo")


def test_prefixes_are_deterministic(debug):
    seed()
    first = sorted(ApiKey.objects.values_list("label", "prefix"))
    seed("--reset")
    assert sorted(ApiKey.objects.values_list("label", "prefix")) == first


def test_refused_without_debug(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DEBUG"):
        seed()
    assert not get_user_model().objects.filter(username="admin").exists()


def test_allow_production_flag(settings):
    settings.DEBUG = False
    seed("--allow-production")
    assert user("owner2").check_password("demo")
