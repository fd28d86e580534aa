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

        post_migrate.connect(roles.sync_role_permissions_after_migrate)
        audit.connect_axes_signals()
        chain.connect_signals()
