"""The password sign-in forms with PASSWORD_LOGIN: when it is off, employees sign in through the provider only.

Who keeps the password: superusers (the break-glass accounts, ``manage.py createsuperuser``) and external
auditors. Customer contacts never use a password (they sign in with an emailed link and a code).
"""

from django import forms
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm

from contacts.forms import PortalAuthenticationForm
from core import roles
from core.audit import record_access
from core.models import AccessAction


def may_use_password(user) -> bool:
    return settings.PASSWORD_LOGIN or user.is_superuser or roles.is_auditor(user)


class PasswordPolicyMixin:
    def confirm_login_allowed(self, user):
        super().confirm_login_allowed(user)
        if not may_use_password(user):
            record_access(self.request, AccessAction.LOGIN_FAILED, "password sign-in is off for employees", user=user)
            provider = settings.OIDC_PROVIDER_NAME
            raise forms.ValidationError(
                f"Employees sign in with {provider}, not with a password: use “Sign in with {provider}”. "
                "Password sign-in is kept for break-glass administrators and external auditors.",
                code="password_login_off",
            )


class PasswordSignInForm(PasswordPolicyMixin, PortalAuthenticationForm):
    """The portal's sign-in form."""


class AdminPasswordSignInForm(PasswordPolicyMixin, AdminAuthenticationForm):
    """The admin site's sign-in form."""
