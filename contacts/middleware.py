"""A customer contact's session reaches the contact pages and nothing else of the portal.

The session is marked at sign-in (however it happens, so a forced login is scoped too), which keeps
ordinary requests free of any query; every refused request is recorded with the contact's identity.
"""

from django.conf import settings
from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver
from django.http import JsonResponse
from django.shortcuts import render
from django.urls import Resolver404, resolve

CONTACT_SESSION_KEY = "customer_contact_id"
# The only pages a contact session may reach.
CONTACT_PAGES = frozenset({
    "contacts:access", "contacts:code", "contacts:code-resend", "contacts:home", "contacts:decide", "contacts:sign-out",
})


@receiver(user_logged_in, dispatch_uid="contact-session-scope")
def _scope_contact_session(sender, request, user, **kwargs):
    if request is None or not hasattr(request, "session"):
        return
    from contacts.models import CustomerContact

    contact_id = CustomerContact.objects.filter(user=user).values_list("pk", flat=True).first()
    if contact_id is not None:
        request.session[CONTACT_SESSION_KEY] = contact_id


def is_contact_session(request) -> bool:
    return bool(request.user.is_authenticated and request.session.get(CONTACT_SESSION_KEY))


def _allowed(request) -> bool:
    if request.path.startswith("/" + settings.STATIC_URL.lstrip("/")):
        return True
    try:
        match = resolve(request.path_info)
    except Resolver404:
        return False
    return match.view_name in CONTACT_PAGES


class ContactScopeMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if is_contact_session(request) and not _allowed(request):
            from core.audit import record_access
            from core.models import AccessAction

            record_access(request, AccessAction.CONTACT_REFUSED, f"{request.method} {request.path}")
            if request.path.startswith("/api/"):
                return JsonResponse({"detail": "A customer contact's session reaches only the contact pages."},
                                    status=403)
            return render(request, "contacts/refused.html", status=403)
        return self.get_response(request)
