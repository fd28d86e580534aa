from django.apps import AppConfig


class AttestationsConfig(AppConfig):
    name = "attestations"
    verbose_name = "Attestations"

    def ready(self):
        from attestations.models import Notification
        from core import chain

        chain.chain_rows(Notification)
