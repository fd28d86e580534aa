"""Django's model backend, with the signed-in user's read compiled once: every request by a signed-in
user reads that user (``get_user``), so building its SQL each time is the larger part of its cost."""

from django.contrib.auth import backends, get_user_model

from .prepared import PreparedQuery

_USER = PreparedQuery(lambda user: get_user_model()._default_manager.filter(pk=user), "user")


class ModelBackend(backends.ModelBackend):
    def get_user(self, user_id):
        if type(user_id) is not int:
            return super().get_user(user_id)
        try:
            user = _USER.get(user=user_id)
        except get_user_model().DoesNotExist:
            return None
        return user if self.user_can_authenticate(user) else None
