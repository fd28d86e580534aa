from django.apps import AppConfig
from django.db import connections
from django.db.backends.signals import connection_created
from django.db.models.signals import post_migrate


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Portal"

    def ready(self):
        from . import chain, db, roles

        post_migrate.connect(roles.sync_role_permissions_after_migrate)
        self.connect_access_signals()
        chain.connect_signals()
        connection_created.connect(chain.install_commit_hook, dispatch_uid="history-chain-commit-hook")
        connection_created.connect(db.use_c_timestamp_loader, dispatch_uid="c-timestamp-loader")
        for connection in connections.all(initialized_only=True):
            chain.install_commit_hook(sender=None, connection=connection)
            db.use_c_timestamp_loader(sender=None, connection=connection)

    @staticmethod
    def connect_access_signals():
        # Importing connects the sign-in receivers of the access audit, idle timeout and second factor.
        from . import audit, sessions, two_factor  # noqa: F401

        audit.connect_axes_signals()
