"""An auditor's session: it lasts only while a grant is current, reads and never writes, and every request is logged.

The session is marked at sign-in (however it happens), which keeps every other session's requests free of any
query. On each request of a marked session the auditor's current grant is looked up: without one the auditor is
signed out (every session of theirs) and sent to sign in with a message saying why; with one, the grant is set on
the request's user (``core.roles.reads_as_auditor``), any method but a read is refused with 403 (sign-out and the
second factor excepted), and the request is written to the access log with its answer.
"""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.signals import user_logged_in
from django.contrib.auth.views import redirect_to_login
from django.dispatch import receiver
from django.http import JsonResponse
from django.shortcuts import render
from django.urls import Resolver404, resolve
from django_otp import user_has_device

from core import roles, two_factor
from core.audit import record_access
from core.auditors import services
from core.models import AccessAction
from core.sessions import end_sessions

AUDITOR_SESSION_KEY = "auditor_session"
READS = frozenset({"GET", "HEAD", "OPTIONS"})
# What an auditor may send besides reads: signing out, and enrolling or verifying their second factor.
MAY_SEND = frozenset({"logout", "two-factor-setup", "two-factor-verify"})
REFUSAL = "Auditors read evidence, history and exports; they change nothing."


@receiver(user_logged_in, dispatch_uid="auditor-session")
def _mark_auditor_session(sender, request, user, **kwargs):
    if request is None or not hasattr(request, "session") or not roles.is_auditor(user):
        return
    request.session[AUDITOR_SESSION_KEY] = True
    # An external reader of everything: with AUDITOR_OTP_REQUIRED, no page before a second factor is enrolled.
    if settings.AUDITOR_OTP_REQUIRED and not user_has_device(user, confirmed=True):
        request.session[two_factor.ENROL_REQUIRED] = True


def is_auditor_session(request) -> bool:
    session = getattr(request, "session", None)
    return bool(session is not None and session.get(AUDITOR_SESSION_KEY) and request.user.is_authenticated)


def _view_name(request) -> str:
    try:
        return resolve(request.path_info).view_name
    except Resolver404:
        return ""


def _is_api(request) -> bool:
    return request.path.startswith("/api/")


class AuditorAccessMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not is_auditor_session(request) or request.path.startswith("/" + settings.STATIC_URL.lstrip("/")):
            return self.get_response(request)
        grant = services.current_grant(request.user)
        if grant is None:
            return self.sign_out(request)
        setattr(request.user, roles.AUDITOR_GRANT_ATTRIBUTE, grant)
        if request.method not in READS and _view_name(request) not in MAY_SEND:
            record_access(request, AccessAction.AUDITOR_REFUSED, f"{request.method} {request.get_full_path()}")
            if _is_api(request):
                return JsonResponse({"detail": REFUSAL}, status=403)
            return render(request, "auditors/refused.html", {"message": REFUSAL}, status=403)
        response = self.get_response(request)
        record_access(request, AccessAction.AUDITOR_VIEW,
                      f"{request.method} {request.get_full_path()} {response.status_code}", user=grant.auditor)
        return response

    def sign_out(self, request):
        user = request.user
        message = services.no_access_message(user)
        record_access(request, AccessAction.AUDITOR_SIGNED_OUT, f"{request.method} {request.get_full_path()}")
        end_sessions(user)
        logout(request)
        if _is_api(request):
            return JsonResponse({"detail": message}, status=403)
        messages.warning(request, message)
        return redirect_to_login(request.get_full_path())
