from django.apps import AppConfig


class OpsConfig(AppConfig):
    """Operations: the health endpoint, the metrics endpoint and the worker heartbeat."""

    name = "ops"
    verbose_name = "Operations"
