"""Sessions: an idle timeout on top of SESSION_COOKIE_AGE's absolute limit, and ending all of a person's
sessions at once (``end_sessions``)."""

import datetime
import logging
import time
from importlib import import_module

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.contrib.auth.views import redirect_to_login
from django.dispatch import receiver
from django.utils import timezone

from core.models import SignedInSession

log = logging.getLogger(__name__)

LAST_SEEN_KEY = "_last_seen"
# Refresh the stored time at most this often, so a busy session is not written on every request.
TOUCH_EVERY_SECONDS = 60


@receiver(user_logged_in, dispatch_uid="idle-timeout-at-login")
def _start_the_clock(sender, request, user, **kwargs):
    # Set at sign-in, which saves the session anyway, so the first requests write nothing more.
    if request is not None and hasattr(request, "session"):
        request.session[LAST_SEEN_KEY] = int(time.time())


@receiver(user_logged_in, dispatch_uid="remember-signed-in-session")
def _remember_session(sender, request, user, **kwargs):
    session = getattr(request, "session", None) if request is not None else None
    if session is None or user is None or user.pk is None:
        return
    if not session.session_key:
        session.save()
    # Sessions past their absolute limit are gone anyway: forget them while we are here.
    too_old = timezone.now() - datetime.timedelta(seconds=settings.SESSION_COOKIE_AGE)
    SignedInSession.objects.filter(user=user, started_at__lt=too_old).delete()
    SignedInSession.objects.update_or_create(session_key=session.session_key, defaults={"user": user})


@receiver(user_logged_out, dispatch_uid="forget-signed-in-session")
def _forget_session(sender, request, user, **kwargs):
    session = getattr(request, "session", None) if request is not None else None
    if session is not None and session.session_key:
        SignedInSession.objects.filter(session_key=session.session_key).delete()


def end_sessions(user) -> int:
    """End every session ``user`` signed in with, wherever it is stored; returns how many were ended.

    The next request of any of them is anonymous (and is sent to sign in)."""
    engine = import_module(settings.SESSION_ENGINE)
    keys = list(SignedInSession.objects.filter(user=user).values_list("session_key", flat=True))
    for key in keys:
        engine.SessionStore(session_key=key).delete()
    SignedInSession.objects.filter(user=user).delete()
    if keys:
        log.info("ended %s session(s) of %s", len(keys), user.get_username())
    return len(keys)


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
