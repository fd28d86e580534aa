from django.apps import AppConfig
from django.db.models.signals import post_migrate


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Portal"

    def ready(self):
        from . import chain, roles

        post_migrate.connect(roles.sync_role_permissions_after_migrate)
        self.connect_access_signals()
        chain.connect_signals()

    @staticmethod
    def connect_access_signals():
        # Importing connects the sign-in receivers of the access audit, idle timeout and second factor.
        from . import audit, sessions, two_factor  # noqa: F401

        audit.connect_axes_signals()
