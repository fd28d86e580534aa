"""Optional TOTP second factor (django-otp) for staff and compliance.

After the password, a user with a confirmed device must enter a code before anything else; with
OTP_REQUIRED_FOR_STAFF, staff and compliance without a device must enrol one first. What a session
still owes is decided once, at sign-in, and kept in the session, so ordinary requests cost no query.
"""

import base64
import math
from dataclasses import dataclass

import qrcode
import qrcode.image.svg
from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.signals import user_logged_in
from django.core.exceptions import PermissionDenied
from django.dispatch import receiver
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django_otp import login as otp_login
from django_otp import user_has_device
from django_otp.models import VerifyNotAllowed
from django_otp.plugins.otp_totp.models import TOTPDevice

from core import roles
from core.audit import record_access
from core.models import AccessAction
from core.navigation import return_url

VERIFY_PENDING = "two_factor_verify_pending"
ENROL_REQUIRED = "two_factor_enrol_required"
# Set on the request by a single sign-on whose identity provider says it checked a second factor (the ID
# token's amr or acr): the portal's own code is then not asked again in that session.
PROVIDER_VERIFIED = "two_factor_verified_by_provider"
DEVICE_NAME = "Authenticator app"


def may_use_two_factor(user) -> bool:
    return user.is_authenticated and (user.is_staff or roles.sees_everything(user) or roles.is_auditor(user))


@receiver(user_logged_in, dispatch_uid="two-factor-at-login")
def _note_what_the_session_owes(sender, request, user, **kwargs):
    if request is None or not hasattr(request, "session") or getattr(request, PROVIDER_VERIFIED, False):
        return
    if user_has_device(user, confirmed=True):
        request.session[VERIFY_PENDING] = True
    elif settings.OTP_REQUIRED_FOR_STAFF and may_use_two_factor(user):
        request.session[ENROL_REQUIRED] = True


class TwoFactorMiddleware:
    """Holds a signed-in session at the verify (or enrol) page until the second factor is done."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.user.is_authenticated and hasattr(request, "session"):
            if request.session.get(VERIFY_PENDING):
                target = "two-factor-verify"
            elif request.session.get(ENROL_REQUIRED):
                target = "two-factor-setup"
            else:
                target = None
            if target and not self._exempt(request, target):
                if request.path.startswith("/api/"):
                    return JsonResponse({"detail": "Second factor required: verify it in the portal."}, status=403)
                return redirect(f"{reverse(target)}?next={request.get_full_path()}")
        return self.get_response(request)

    @staticmethod
    def _exempt(request, target: str) -> bool:
        return request.path in {reverse(target), reverse("logout")} or request.path.startswith(
            "/" + settings.STATIC_URL.lstrip("/")
        )


class TokenForm(forms.Form):
    token = forms.RegexField(
        label="Code from your authenticator app",
        regex=r"^\s*\d{6}\s*$",
        error_messages={"invalid": "Enter the 6-digit code."},
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}),
    )

    def clean_token(self):
        return self.cleaned_data["token"].strip()


@dataclass(frozen=True)
class Throttled:
    """A device refusing codes for now (django-otp's throttling after successive wrong codes)."""

    message: str
    retry_after: int


def throttling(devices) -> Throttled | None:
    """None when one of the devices takes a code now; else what to tell the user: the wait ends when the
    first device takes codes again."""
    refusals = []
    for device in devices:
        allowed, details = device.verify_is_allowed()
        if allowed:
            return None
        refusals.append(details or {})
    if not refusals:
        return None
    until = min((d["locked_until"] for d in refusals if d.get("locked_until")), default=None)
    failures = max(d.get("failure_count", 0) for d in refusals)
    if until is None or refusals[0].get("reason") != VerifyNotAllowed.N_FAILED_ATTEMPTS:
        return Throttled("Codes are not accepted for now. Wait a minute, then enter the current code.", 60)
    seconds = max(1, math.ceil((until - timezone.now()).total_seconds()))
    return Throttled(
        f"Too many wrong codes ({failures} in a row): codes are refused for now, even a right one. Try again in "
        f"{seconds} second{'s' if seconds != 1 else ''}, after {timezone.localtime(until):%H:%M:%S}, with the "
        "current code.",
        seconds,
    )


def _render_throttled(request, template: str, context: dict, form, throttled: Throttled):
    form.add_error("token", throttled.message)
    response = render(request, template, {**context, "form": form}, status=429)
    response["Retry-After"] = str(throttled.retry_after)
    return response


def _next_url(request) -> str:
    return return_url(request, reverse("dashboard"))


def qr_code_data_uri(text: str) -> str:
    """The QR code of ``text`` as an SVG data URI (an <img>, so no inline markup for the CSP to refuse)."""
    svg = qrcode.make(text, image_factory=qrcode.image.svg.SvgPathImage, box_size=8, border=2).to_string()
    return "data:image/svg+xml;base64," + base64.b64encode(svg).decode("ascii")


@login_required
def two_factor_setup(request):
    """Enrol an authenticator app: show the secret as a QR code and text, confirm it with a first code."""
    if not may_use_two_factor(request.user):
        raise PermissionDenied("Two-factor sign-in is offered to staff, compliance and auditors.")
    confirmed = TOTPDevice.objects.filter(user=request.user, confirmed=True).first()
    if confirmed is not None:
        return render(request, "portal/two_factor_setup.html", {"confirmed": confirmed})
    device = TOTPDevice.objects.filter(user=request.user, confirmed=False).first()
    if device is None:
        device = TOTPDevice.objects.create(user=request.user, name=DEVICE_NAME, confirmed=False)
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        throttled = throttling([device])
        if throttled is not None:
            record_access(request, AccessAction.OTP_FAILED, "enrolment (throttled)")
            return _render_throttled(request, "portal/two_factor_setup.html", _setup_context(request, device), form,
                                     throttled)
        if device.verify_token(form.cleaned_data["token"]):
            device.confirmed = True
            device.save(update_fields=["confirmed"])
            otp_login(request, device)
            request.session.pop(ENROL_REQUIRED, None)
            request.session.pop(VERIFY_PENDING, None)
            record_access(request, AccessAction.OTP_ENROLLED, device.name)
            messages.success(request, "Two-factor sign-in is on: you will be asked for a code after your password.")
            return redirect(_next_url(request))
        record_access(request, AccessAction.OTP_FAILED, "enrolment")
        form.add_error("token", "That code does not match. Check the time on your phone and try the current code.")
    return render(request, "portal/two_factor_setup.html", {**_setup_context(request, device), "form": form})


def _setup_context(request, device: TOTPDevice) -> dict:
    uri = device.config_url
    secret = base64.b32encode(device.bin_key).decode("ascii").rstrip("=")
    return {"qr_code": qr_code_data_uri(uri), "otpauth_uri": uri, "secret": secret, "next": _next_url(request),
            "required": bool(request.session.get(ENROL_REQUIRED))}


@login_required
def two_factor_verify(request):
    """The step after the password for a user with a confirmed device."""
    if not request.session.get(VERIFY_PENDING):
        return redirect(_next_url(request))
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        devices = list(TOTPDevice.objects.filter(user=request.user, confirmed=True))
        throttled = throttling(devices)
        if throttled is not None:
            record_access(request, AccessAction.OTP_FAILED, "sign-in (throttled)")
            return _render_throttled(request, "portal/two_factor_verify.html", {"next": _next_url(request)}, form,
                                     throttled)
        device = next(
            (d for d in devices if d.verify_is_allowed()[0] and d.verify_token(form.cleaned_data["token"])),
            None,
        )
        if device is not None:
            otp_login(request, device)
            request.session.pop(VERIFY_PENDING, None)
            record_access(request, AccessAction.OTP_VERIFIED, device.name)
            return redirect(_next_url(request))
        record_access(request, AccessAction.OTP_FAILED, "sign-in")
        form.add_error("token", "That code is not valid. Wait for the next code if you just used one.")
    return render(request, "portal/two_factor_verify.html", {"form": form, "next": _next_url(request)})
