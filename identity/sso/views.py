"""The sign-in page, the start of a single sign-on at the provider, and the return from it.

Every sign-in the portal refuses, and every one that fails, answers with a page that says why and whom to ask
(never a stack trace), and leaves a failed sign-in with its reason in the access log. A sign-in lands on the
page that was asked for (``next``, when it stays on this site).
"""

import logging
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth.views import LoginView
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import redirect, render, resolve_url
from django.urls import reverse
from django.utils.crypto import get_random_string
from django.utils.http import url_has_allowed_host_and_scheme
from mozilla_django_oidc.utils import add_state_and_verifier_and_nonce_to_session, generate_code_challenge

from core import two_factor
from core.audit import record_access
from core.models import AccessAction
from identity.sso import config
from identity.sso.accounts import SignInRefused
from identity.sso.backend import BACKEND, SingleSignOnBackend
from identity.sso.forms import PasswordSignInForm

log = logging.getLogger(__name__)

# Session keys: where the sign-in goes afterwards; the states, nonces and PKCE verifiers of sign-ins under way
# (mozilla-django-oidc's own key and layout).
NEXT_KEY = "sso_next"
STATES_KEY = "oidc_states"
REFUSED_TEMPLATE = "identity/sso_refused.html"


class SignInView(LoginView):
    """The portal's sign-in page: "Sign in with <provider>" when single sign-on is on, and the password form
    (folded away as the break-glass sign-in when PASSWORD_LOGIN is off)."""

    authentication_form = PasswordSignInForm
    redirect_authenticated_user = True

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["single_sign_on"] = {
            "enabled": config.enabled(),
            "provider_name": config.provider_name(),
            "password_login": settings.PASSWORD_LOGIN,
        }
        return context


def safe_next(request, target) -> str:
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()}, require_https=request.is_secure()):
        return target
    return ""


def refused_page(request, status: int, title: str, message: str, advice: str):
    return render(request, REFUSED_TEMPLATE, {
        "title": title, "message": message, "advice": advice, "provider_name": config.provider_name(),
    }, status=status)


def failed(request, reason: str, *, user=None, username: str = "", status: int = 502, title: str = "",
           message: str = "", advice: str = ""):
    """Record a failed single sign-on with its reason and answer with the page that explains it."""
    record_access(request, AccessAction.LOGIN_FAILED, f"single sign-on: {reason}", user=user, username=username)
    provider = config.provider_name()
    return refused_page(
        request, status, title or "Sign-in could not be completed",
        message or f"The portal could not complete your sign-in with {provider}.",
        advice or f"Try again in a moment. If it keeps happening, tell {settings.OIDC_ACCESS_HELP}.",
    )


def start(request):
    """Send the browser to the provider's sign-in, remembering where to go back to."""
    if not config.enabled():
        raise Http404("Single sign-on is not set up.")
    next_url = safe_next(request, request.GET.get("next"))
    if request.user.is_authenticated:
        return redirect(next_url or settings.LOGIN_REDIRECT_URL)
    try:
        endpoint = config.endpoints()["authorization_endpoint"]
    except config.ProviderUnavailable as error:
        log.warning("single sign-on: %s", error)
        provider = config.provider_name()
        return refused_page(request, 502, "Sign-in could not start", f"{provider} could not be reached.",
                            f"Try again in a moment. If it keeps happening, tell {settings.OIDC_ACCESS_HELP}.")
    state = get_random_string(32)
    params = {
        "response_type": "code",
        "scope": settings.OIDC_RP_SCOPES,
        "client_id": settings.OIDC_RP_CLIENT_ID,
        "redirect_uri": request.build_absolute_uri(reverse("sso:callback")),
        "state": state,
        "nonce": get_random_string(32),
    }
    verifier = None
    if settings.OIDC_USE_PKCE:
        verifier = get_random_string(64)
        params.update(code_challenge=generate_code_challenge(verifier, "S256"), code_challenge_method="S256")
    add_state_and_verifier_and_nonce_to_session(request, state, params, verifier)
    request.session[NEXT_KEY] = next_url
    separator = "&" if "?" in endpoint else "?"
    return HttpResponseRedirect(f"{endpoint}{separator}{urlencode(params)}")


def callback(request):
    """The provider sends the browser back here with a code (or an error): sign the person in, or say why not."""
    if not config.enabled():
        raise Http404("Single sign-on is not set up.")
    provider = config.provider_name()
    states = request.session.get(STATES_KEY)
    states = states if isinstance(states, dict) else {}
    under_way = states.pop(request.GET.get("state", ""), None)
    if under_way is not None:
        request.session[STATES_KEY] = states  # used once: a replayed answer finds nothing
    if request.GET.get("error"):
        error = request.GET["error"][:60]
        return failed(request, f"the provider answered {error}", status=403, title="You were not signed in",
                      message=f"{provider} did not sign you in ({error}).",
                      advice=f"Sign in again. If {provider} keeps refusing, ask {settings.OIDC_ACCESS_HELP}.")
    if under_way is None or not request.GET.get("code"):
        return failed(request, "no sign-in under way for this answer", status=400, title="This sign-in has expired",
                      message="This answer from the identity provider belongs to no sign-in under way here: it was "
                              "used already, or it started in another browser.",
                      advice="Start again from the sign-in page.")
    backend = SingleSignOnBackend()
    try:
        user = backend.authenticate(request, single_sign_on=True, nonce=under_way.get("nonce"),
                                    code_verifier=under_way.get("code_verifier"))
    except SignInRefused as refusal:
        record_access(request, AccessAction.LOGIN_FAILED, f"single sign-on: {refusal.reason}", user=refusal.user,
                      username=refusal.username)
        return refused_page(request, 403, "You cannot sign in to the portal", refusal.message, refusal.advice)
    except Exception as error:  # the provider's answer, or reaching it: the person gets a page, the log the detail
        log.warning("single sign-on failed: %s: %s", type(error).__name__, error, exc_info=True)
        return failed(request, f"the provider's answer was not accepted ({type(error).__name__})")
    if user is None:
        return failed(request, "the provider's answer was not accepted")
    next_url = safe_next(request, request.session.pop(NEXT_KEY, None))
    second_factor = config.second_factor_at_provider(backend.id_token_claims)
    if second_factor:
        # The provider asked for a second factor: the portal's own code is not asked again in this session.
        setattr(request, two_factor.PROVIDER_VERIFIED, True)
    login(request, user, backend=BACKEND)
    if second_factor:
        record_access(request, AccessAction.OTP_VERIFIED, f"at the identity provider ({second_factor})")
    return HttpResponseRedirect(next_url or resolve_url(settings.LOGIN_REDIRECT_URL))
