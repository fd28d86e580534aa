from django.apps import AppConfig
from django.db.models.signals import post_migrate


class CoreConfig(AppConfig):
    """Shared infrastructure: the history chain, access audit, roles, API base and errors.

    Its label stays "portal", the package it lived in before: tables, migrations, permissions and
    content types of existing databases keep their names.
    """

    name = "core"
    label = "portal"
    verbose_name = "Portal"

    def ready(self):
        from core import audit, chain, roles, sessions, two_factor  # noqa: F401  (importing connects receivers)
        from core.auditors import middleware as auditor_sessions  # noqa: F401
        from core.models import AccessRecord

        post_migrate.connect(roles.sync_role_permissions_after_migrate)
        audit.connect_axes_signals()
        chain.connect_signals()
        # Access records have their own chain: written on every API call and failed sign-in, they must not
        # queue behind the evidence chain's head that decisions lock.
        chain.chain_rows(AccessRecord, chain=chain.ACCESS)
        chain.declare_personal(AccessRecord, ["username"], salt_column="personal_salt")
        post_migrate.connect(chain.ensure_layouts, sender=self, dispatch_uid="chain-layouts")
        post_migrate.connect(chain.install_touch_triggers, sender=self, dispatch_uid="chain-touch-triggers")
