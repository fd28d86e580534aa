from django.apps import AppConfig


class KeysConfig(AppConfig):
    name = "keys"
    verbose_name = "API keys"

    def ready(self):
        from core import chain
        from keys.models import LifecycleEvent

        chain.chain_rows(LifecycleEvent)
