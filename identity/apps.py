from django.apps import AppConfig


class IdentityConfig(AppConfig):
    """People from the company's identity provider: single sign-on (OpenID Connect) and provisioning (SCIM 2.0)."""

    name = "identity"
    verbose_name = "Identity"

    def ready(self):
        from core import chain
        from identity.models import AccountChange

        chain.chain_rows(AccountChange)
        chain.declare_personal(AccountChange, ["values"], salt_column="personal_salt")
