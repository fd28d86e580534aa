from django.conf import settings
from django.contrib.auth import get_user_model


def system_user():
    """The account that scheduled jobs and sweeps act as, so every change has an actor."""
    user, _ = get_user_model().objects.get_or_create(
        username=settings.SYSTEM_USERNAME,
        defaults={"is_active": False, "first_name": "Portal", "last_name": "automation"},
    )
    return user
