from django.apps import AppConfig


class DashboardConfig(AppConfig):
    """The start page: what needs attention, for owners, compliance and admins."""

    name = "dashboard"
