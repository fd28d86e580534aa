"""Sessions: an idle timeout on top of SESSION_COOKIE_AGE's absolute limit."""

import time

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.signals import user_logged_in
from django.contrib.auth.views import redirect_to_login
from django.dispatch import receiver

LAST_SEEN_KEY = "_last_seen"
# Refresh the stored time at most this often, so a busy session is not written on every request.
TOUCH_EVERY_SECONDS = 60


@receiver(user_logged_in, dispatch_uid="idle-timeout-at-login")
def _start_the_clock(sender, request, user, **kwargs):
    # Set at sign-in, which saves the session anyway, so the first requests write nothing more.
    if request is not None and hasattr(request, "session"):
        request.session[LAST_SEEN_KEY] = int(time.time())


class IdleTimeoutMiddleware:
    """Ends a signed-in session unused for SESSION_IDLE_TIMEOUT seconds and sends the user to sign in."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        timeout = settings.SESSION_IDLE_TIMEOUT
        if timeout and request.user.is_authenticated and request.session.session_key:
            now = int(time.time())
            last_seen = request.session.get(LAST_SEEN_KEY)
            if last_seen is not None and now - last_seen > timeout:
                logout(request)
                messages.info(request, "Your session ended after a period of inactivity. Please sign in again.")
                if request.path.startswith("/api/"):
                    return self.get_response(request)
                return redirect_to_login(request.get_full_path())
            if last_seen is None or now - last_seen >= TOUCH_EVERY_SECONDS:
                request.session[LAST_SEEN_KEY] = now
        return self.get_response(request)
