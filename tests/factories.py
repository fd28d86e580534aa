import datetime
import itertools

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone

from core import roles
from keys.choices import (
    BlastRadius,
    CompensatingControl,
    Environment,
    ExceptionKind,
    ExceptionStatus,
    IssuingSystemKind,
    KeyStatus,
    MigrationTarget,
    Replaceability,
    RiskTier,
)
from keys.fingerprints import fingerprint_secret
from keys.models import ApiKey, Customer, IssuingSystem, KeyException, OwnerProfile, Workflow

_secret_counter = itertools.count(1)


def make_secret(prefix: str = "sk_test_") -> str:
    """A fresh fake secret for tests; never a real credential."""
    return f"{prefix}{next(_secret_counter):06d}fakeSecretValue0000"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.test")
    password = factory.PostGenerationMethodCall("set_password", "demo")

    role = factory.PostGeneration(lambda user, create, extracted, **kw: _join(user, create, extracted))


def _join(user, create, role_name, default=None):
    role_name = role_name or default
    if create and role_name:
        user.groups.add(Group.objects.get(name=role_name))
        if role_name == roles.ADMIN:
            user.is_staff = True
    if create:
        user.save()


class OwnerFactory(UserFactory):
    role = factory.PostGeneration(lambda user, create, extracted, **kw: _join(user, create, extracted, roles.OWNER))


class ComplianceFactory(UserFactory):
    role = factory.PostGeneration(
        lambda user, create, extracted, **kw: _join(user, create, extracted, roles.COMPLIANCE)
    )


class AdminFactory(UserFactory):
    role = factory.PostGeneration(lambda user, create, extracted, **kw: _join(user, create, extracted, roles.ADMIN))


class AuditorFactory(UserFactory):
    """An auditor's account, without a grant (``grant_access`` gives one)."""

    role = factory.PostGeneration(lambda user, create, extracted, **kw: _join(user, create, extracted, roles.AUDITOR))


def grant_access(auditor, *, by, days: int = 30, engagement: str = "ISO 27001 surveillance audit"):
    """A current grant for ``auditor`` (an auditor account), given by ``by`` (compliance) through the service."""
    from core.auditors.services import grant_auditor_access

    return grant_auditor_access(by, auditor=auditor, engagement=engagement,
                                ends_on=timezone.localdate() + datetime.timedelta(days=days))


class OwnerProfileFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = OwnerProfile

    user = factory.SubFactory(OwnerFactory)
    department = "Integrations"


class CustomerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Customer

    name = factory.Sequence(lambda n: f"Customer {n}")
    external_id = factory.Sequence(lambda n: f"CUST-{n:04d}")


class WorkflowFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Workflow

    customer = factory.SubFactory(CustomerFactory)
    name = factory.Sequence(lambda n: f"Workflow {n}")
    purpose = "Nightly sanctions screening export"
    data_scope = "screening results"
    environment = Environment.PRODUCTION
    business_owner = factory.SubFactory(OwnerFactory)


class IssuingSystemFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = IssuingSystem
        django_get_or_create = ("name",)

    name = "Gateway"
    kind = IssuingSystemKind.MANUAL


class ApiKeyFactory(factory.django.DjangoModelFactory):
    """A key written directly (status as given); use keys.services.lifecycle to test the lifecycle itself."""

    class Meta:
        model = ApiKey

    workflow = factory.SubFactory(WorkflowFactory)
    issuing_system = factory.SubFactory(IssuingSystemFactory)
    label = factory.Sequence(lambda n: f"Key {n}")
    prefix = factory.Sequence(lambda n: f"sk_test_{n:04d}")
    fingerprint = factory.LazyFunction(lambda: fingerprint_secret(make_secret()))
    scopes = factory.LazyFunction(lambda: ["read:cases"])
    owner = factory.SubFactory(OwnerFactory)
    risk_tier = RiskTier.MEDIUM
    status = KeyStatus.ACTIVE
    issued_on = factory.LazyFunction(lambda: timezone.localdate() - datetime.timedelta(days=100))
    expires_on = factory.LazyFunction(lambda: timezone.localdate() + datetime.timedelta(days=265))
    next_review_on = factory.LazyFunction(lambda: timezone.localdate() + datetime.timedelta(days=30))


class KeyExceptionFactory(factory.django.DjangoModelFactory):
    """A transitional exception written directly (status as given); use keys.services.key_exceptions to test the rules."""

    class Meta:
        model = KeyException

    key = factory.SubFactory(ApiKeyFactory)
    kind = ExceptionKind.TRANSITIONAL
    status = ExceptionStatus.REQUESTED
    business_justification = "The vendor's SDK only takes an API key until its next major release."
    blast_radius = BlastRadius.MEDIUM
    replaceability = Replaceability.WITH_EFFORT
    compensating_controls = factory.LazyFunction(lambda: [CompensatingControl.SECRET_MANAGER])
    migration_target = MigrationTarget.OAUTH
    end_date = factory.LazyFunction(lambda: timezone.localdate() + datetime.timedelta(days=90))
    requested_by = factory.LazyAttribute(lambda e: e.key.owner)
