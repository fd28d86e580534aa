"""Single sign-on with OpenID Connect, through a real provider (oidc-provider-mock on 127.0.0.1): the claims
made into an account, matching by subject or email, the profile kept up to date with its history, roles from
the groups claim (or from SCIM), refusals with a clear page and an access record, the password form with
PASSWORD_LOGIN off, the provider's second factor standing in for the portal's, and the page asked for."""

import os
import re
import subprocess
import sys
from urllib.parse import quote

import pytest
import requests
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse
from django_otp.plugins.otp_totp.models import TOTPDevice

from core import roles, two_factor
from core.models import AccessAction, AccessRecord
from identity.sso import accounts, config
from keys.models import OwnerProfile
from tests import factories
from tests.oidc_provider import CLIENT_ID, path_and_query, query, running_provider

pytestmark = pytest.mark.django_db

User = get_user_model()
COMPLIANCE_GROUPS = ["staff", "portal-compliance"]


@pytest.fixture(scope="module")
def provider():
    with running_provider() as running:
        yield running


@pytest.fixture
def sso(provider, settings):
    provider.configure(settings)
    return provider


def sign_in(client, provider, sub, *, next_url=None, **claims):
    """Sign ``sub`` in through the provider (setting their claims first when given): the portal's answer."""
    if claims:
        provider.set_user(sub, **claims)
    start = client.get(reverse("sso:start") + (f"?next={quote(next_url)}" if next_url else ""))
    assert start.status_code == 302, start.content[:500]
    assert start["Location"].startswith(provider.issuer)
    return client.get(path_and_query(provider.authorize(start["Location"], sub)))


def ann(**extra):
    return {"email": "ann.lee@example.test", "preferred_username": "ann", "given_name": "Ann", "family_name": "Lee",
            "groups": COMPLIANCE_GROUPS, **extra}


def signed_in_user(client):
    user_id = client.session.get("_auth_user_id")
    return User.objects.get(pk=user_id) if user_id else None


def role_names(user) -> set[str]:
    return set(user.groups.values_list("name", flat=True))


# The account, its profile and its roles


def test_a_new_person_gets_an_account_a_profile_and_the_role_of_their_group(client, sso, settings):
    settings.OIDC_DEPARTMENT_CLAIM = "department"
    response = sign_in(client, sso, "u-ann", **ann(department="Risk"))
    assert response.status_code == 302 and response.url == reverse("dashboard")
    user = signed_in_user(client)
    assert (user.username, user.first_name, user.last_name, user.email) == ("ann", "Ann", "Lee", "ann.lee@example.test")
    assert not user.has_usable_password()
    assert role_names(user) == {roles.COMPLIANCE} and not user.is_staff
    profile = user.owner_profile
    assert (profile.external_id, profile.department, profile.is_active) == ("u-ann", "Risk", True)
    entry = profile.history.get()
    assert entry.history_user == user and entry.history_change_reason.startswith("single sign-on")
    assert AccessRecord.objects.filter(action=AccessAction.LOGIN, user=user).exists()
    assert client.get(reverse("attestations:campaigns")).status_code == 200  # compliance's page


def test_the_claims_may_name_the_person_in_one_name_and_the_username_is_made_unique(client, sso):
    factories.OwnerFactory(username="ann", email="someone.else@example.test")
    sign_in(client, sso, "u-ann", email="ann.lee@example.test", preferred_username="ann", name="Ann Marie Lee",
            groups=["portal-owners"])
    user = signed_in_user(client)
    assert (user.username, user.first_name, user.last_name) == ("ann-2", "Ann", "Marie Lee")
    assert role_names(user) == {roles.OWNER}


def test_without_a_preferred_username_the_email_is_the_username(client, sso):
    sign_in(client, sso, "u-bo", email="bo@example.test", groups=["portal-owners"])
    assert signed_in_user(client).username == "bo@example.test"


def test_the_subject_claim_is_a_setting(client, sso, settings):
    settings.OIDC_SUBJECT_CLAIM = "employee_id"
    sign_in(client, sso, "u-ann", **ann(employee_id="E-1042"))
    assert signed_in_user(client).owner_profile.external_id == "E-1042"


def test_an_existing_account_is_not_matched_by_email_unless_the_setting_says_so(client, sso):
    existing = factories.ComplianceFactory(username="alee", email="Ann.Lee@example.test")
    sign_in(client, sso, "u-ann", **ann())
    user = signed_in_user(client)
    assert user != existing and user.username == "ann"
    assert not OwnerProfile.objects.filter(user=existing).exists()


def test_with_match_by_email_an_existing_account_is_linked_to_the_subject(client, sso, settings):
    settings.OIDC_MATCH_BY_EMAIL = True
    existing = factories.OwnerFactory(username="alee", email="Ann.Lee@example.test")
    factories.OwnerProfileFactory(user=existing, department="Payments")
    sign_in(client, sso, "u-ann", **ann())
    assert signed_in_user(client) == existing
    existing.refresh_from_db()
    assert existing.owner_profile.external_id == "u-ann" and existing.username == "alee"
    assert role_names(existing) == {roles.COMPLIANCE}
    # From then on the subject finds the account, whatever the email.
    client.post(reverse("logout"))
    sign_in(Client(), sso, "u-ann", **ann(email="ann.lee@new-name.test"))
    existing.refresh_from_db()
    assert existing.email == "ann.lee@new-name.test"
    assert User.objects.count() == 1


def test_match_by_email_refuses_an_account_linked_to_another_subject_or_an_unverified_email(client, sso, settings):
    settings.OIDC_MATCH_BY_EMAIL = True
    taken = factories.OwnerFactory(username="alee", email="ann.lee@example.test")
    factories.OwnerProfileFactory(user=taken, external_id="u-someone-else")
    response = sign_in(client, sso, "u-ann", **ann())
    assert response.status_code == 403
    assert "belongs to another identity" in response.content.decode()
    assert signed_in_user(client) is None
    # An email the provider says it has not verified matches nobody: a new account is made instead.
    OwnerProfile.objects.filter(user=taken).update(external_id=None)
    sign_in(client, sso, "u-ann", **ann(email_verified=False))
    assert signed_in_user(client) != taken


def test_match_by_email_refuses_when_several_accounts_share_the_email(client, sso, settings):
    settings.OIDC_MATCH_BY_EMAIL = True
    factories.OwnerFactory(username="alee", email="ann.lee@example.test")
    factories.OwnerFactory(username="ann.lee", email="ANN.LEE@example.test")
    response = sign_in(client, sso, "u-ann", **ann())
    assert response.status_code == 403 and "Several portal accounts" in response.content.decode()
    record = AccessRecord.objects.get(action=AccessAction.LOGIN_FAILED)
    assert record.target == "single sign-on: several accounts have this email" and record.username == "ann"


def test_name_email_manager_and_department_follow_the_provider_at_each_sign_in(client, sso, settings):
    settings.OIDC_MANAGER_CLAIM = "manager"
    settings.OIDC_DEPARTMENT_CLAIM = "department"
    boss = factories.OwnerFactory(username="grace", email="grace@example.test")
    factories.OwnerProfileFactory(user=boss, external_id="u-grace")
    other_boss = factories.OwnerFactory(username="henry", email="henry@example.test")
    sign_in(client, sso, "u-ann", **ann(manager="u-grace", department="Risk"))
    user = signed_in_user(client)
    assert (user.owner_profile.manager, user.owner_profile.department) == (boss, "Risk")

    sign_in(Client(), sso, "u-ann", **ann(manager="henry@example.test", department="Fraud", family_name="Lee-Smith",
                                          email="ann.lee-smith@example.test"))
    user.refresh_from_db()
    profile = user.owner_profile
    assert (profile.manager, profile.department) == (other_boss, "Fraud")
    assert (user.last_name, user.email) == ("Lee-Smith", "ann.lee-smith@example.test")
    latest = profile.history.first()
    assert latest.history_user == user
    assert latest.history_change_reason == "single sign-on: name, email, manager, department"
    # A manager named by username, and nothing changed: no new history entry.
    sign_in(Client(), sso, "u-ann", **ann(manager="grace", department="Fraud", family_name="Lee-Smith",
                                          email="ann.lee-smith@example.test"))
    assert user.owner_profile.history.count() == 3
    assert OwnerProfile.objects.get(user=user).manager == boss
    count = profile.history.count()
    sign_in(Client(), sso, "u-ann", **ann(manager="grace", department="Fraud", family_name="Lee-Smith",
                                          email="ann.lee-smith@example.test"))
    assert profile.history.count() == count


def test_the_manager_claim_is_looked_up_by_subject_before_username(client, sso, settings):
    settings.OIDC_MANAGER_CLAIM = "manager"
    by_subject = factories.OwnerFactory(username="x-boss")
    factories.OwnerProfileFactory(user=by_subject, external_id="boss")
    factories.OwnerFactory(username="boss")  # a username equal to the subject loses
    sign_in(client, sso, "u-ann", **ann(manager="boss"))
    assert signed_in_user(client).owner_profile.manager == by_subject


def test_the_role_changes_with_the_group_at_the_next_sign_in(client, sso):
    sign_in(client, sso, "u-ann", **ann())
    user = signed_in_user(client)
    assert role_names(user) == {roles.COMPLIANCE}
    sign_in(Client(), sso, "u-ann", **ann(groups=["portal-admins", "portal-owners"]))
    user.refresh_from_db()
    assert role_names(user) == {roles.ADMIN, roles.OWNER} and user.is_staff
    assert user.owner_profile.history.first().history_change_reason == "single sign-on: roles admin, owner"
    # Out of every mapped group: refused, and the provided roles are gone.
    refused = sign_in(Client(), sso, "u-ann", **ann(groups=["staff"]))
    assert refused.status_code == 403
    user.refresh_from_db()
    assert role_names(user) == set() and not user.is_staff
    assert "roles removed" in user.owner_profile.history.first().history_change_reason


# Refusals


def test_someone_without_a_mapped_group_is_refused_with_a_clear_page(client, sso):
    response = sign_in(client, sso, "u-zed", email="zed@example.test", preferred_username="zed", groups=["staff"])
    assert response.status_code == 403
    html = response.content.decode()
    assert "You cannot sign in to the portal" in html and "You have no role in the portal." in html
    assert "Ask the portal&#x27;s administrators to add you to the group for your role" in html
    assert "Traceback" not in html
    assert not re.search(r"<style\b|\sstyle=|<script\b(?![^>]*\bsrc=)", html)
    assert "Content-Security-Policy" in response
    assert signed_in_user(client) is None
    assert not User.objects.filter(username="zed").exists()  # nobody's account is made to be refused
    record = AccessRecord.objects.get()
    assert (record.action, record.username, record.user, record.target) == (
        AccessAction.LOGIN_FAILED, "zed", None, "single sign-on: no mapped group")


def test_the_refusal_names_whom_to_ask(client, sso, settings):
    settings.OIDC_ACCESS_HELP = "the IT service desk (it@example.test)"
    response = sign_in(client, sso, "u-zed", email="zed@example.test", groups=[])
    assert "Ask the IT service desk (it@example.test)" in response.content.decode()


@pytest.mark.parametrize(("how", "reason", "says"), [
    ("deactivated", "account deactivated", "Your portal account is deactivated."),
    ("departed", "person marked as departed", "You are recorded as having left the company."),
    ("auditor", "external account", "This account is an external one"),
])
def test_a_deactivated_departed_or_external_account_is_refused(client, sso, how, reason, says):
    sign_in(client, sso, "u-ann", **ann())
    user = signed_in_user(client)
    if how == "deactivated":
        User.objects.filter(pk=user.pk).update(is_active=False)
    elif how == "departed":
        OwnerProfile.objects.filter(user=user).update(is_active=False)
    else:
        user.groups.add(Group.objects.get(name=roles.AUDITOR))
    other = Client()
    response = sign_in(other, sso, "u-ann", **ann())
    assert response.status_code == 403 and says in response.content.decode()
    assert signed_in_user(other) is None
    record = AccessRecord.objects.filter(action=AccessAction.LOGIN_FAILED).get()
    assert (record.user, record.target) == (user, f"single sign-on: {reason}")


def test_a_deactivated_or_departed_persons_session_ends_at_the_next_request(client, sso):
    sign_in(client, sso, "u-ann", **ann())
    user = signed_in_user(client)
    assert client.get(reverse("keys:list")).status_code == 200
    OwnerProfile.objects.filter(user=user).update(is_active=False)
    assert client.get(reverse("keys:list")).status_code == 302  # to sign in
    second = Client()
    OwnerProfile.objects.filter(user=user).update(is_active=True)
    sign_in(second, sso, "u-ann", **ann())
    User.objects.filter(pk=user.pk).update(is_active=False)
    assert second.get(reverse("keys:list")).status_code == 302


def test_with_scim_roles_stay_as_provisioning_set_them(client, sso, settings):
    settings.SCIM_ENABLED = True
    # Not provisioned: refused, no account made.
    response = sign_in(client, sso, "u-ann", **ann())
    assert response.status_code == 403 and "You have no account in the portal yet." in response.content.decode()
    assert not User.objects.filter(username="ann").exists()
    provisioned = factories.OwnerFactory(username="ann.lee", email="ann.lee@example.test")
    factories.OwnerProfileFactory(user=provisioned, external_id="u-ann")
    # The groups claim says compliance; provisioning said owner: owner it stays.
    sign_in(client, sso, "u-ann", **ann())
    assert signed_in_user(client) == provisioned and role_names(provisioned) == {roles.OWNER}
    # No role from provisioning: refused, whatever the claim.
    provisioned.groups.clear()
    refused = sign_in(Client(), sso, "u-ann", **ann())
    assert refused.status_code == 403
    assert AccessRecord.objects.filter(target="single sign-on: no role set by provisioning").exists()


def test_the_providers_refusal_and_a_stale_answer_get_a_page_not_an_error(client, sso):
    start = client.get(reverse("sso:start"))
    state = query(start["Location"])["state"]
    denied = client.get(reverse("sso:callback") + f"?error=access_denied&state={state}")
    assert denied.status_code == 403 and "did not sign you in (access_denied)" in denied.content.decode()
    replayed = client.get(reverse("sso:callback") + f"?code=abc&state={state}")
    assert replayed.status_code == 400 and "This sign-in has expired" in replayed.content.decode()
    targets = list(AccessRecord.objects.order_by("pk").values_list("target", flat=True))
    assert targets == ["single sign-on: the provider answered access_denied",
                       "single sign-on: no sign-in under way for this answer"]


def test_a_token_from_another_issuer_is_not_accepted(client, sso, settings):
    # Endpoints set explicitly (no discovery), under an issuer name the tokens do not carry.
    settings.OIDC_ISSUER = sso.issuer.replace("127.0.0.1", "localhost")
    settings.OIDC_OP_AUTHORIZATION_ENDPOINT = f"{sso.issuer}/oauth2/authorize"
    settings.OIDC_OP_TOKEN_ENDPOINT = f"{sso.issuer}/oauth2/token"
    settings.OIDC_OP_USER_ENDPOINT = f"{sso.issuer}/userinfo"
    settings.OIDC_OP_JWKS_ENDPOINT = f"{sso.issuer}/jwks"
    response = sign_in(client, sso, "u-ann", **ann())
    assert response.status_code == 502 and "could not complete your sign-in" in response.content.decode()
    assert signed_in_user(client) is None
    assert AccessRecord.objects.get().target.startswith("single sign-on: the provider's answer was not accepted")


def test_an_unreachable_provider_gets_a_page(client, sso, settings):
    settings.OIDC_ISSUER = "http://127.0.0.1:9"
    response = client.get(reverse("sso:start"))
    assert response.status_code == 502 and "Example ID could not be reached." in response.content.decode()


def test_the_discovery_document_is_fetched_once(client, sso, monkeypatch):
    fetched = []
    real_get = requests.get

    def counting_get(url, *args, **kwargs):
        if url.endswith(config.DISCOVERY_PATH):
            fetched.append(url)
        return real_get(url, *args, **kwargs)

    monkeypatch.setattr(requests, "get", counting_get)
    sign_in(client, sso, "u-ann", **ann())
    sign_in(Client(), sso, "u-ann")
    assert fetched == [f"{sso.issuer}{config.DISCOVERY_PATH}"]


def test_single_sign_on_is_off_without_issuer_and_client_id(client, settings):
    settings.OIDC_ISSUER = ""
    settings.OIDC_RP_CLIENT_ID = CLIENT_ID
    assert client.get(reverse("sso:start")).status_code == 404
    assert client.get(reverse("sso:callback") + "?code=x&state=y").status_code == 404
    page = client.get(reverse("login")).content.decode()
    assert "Sign in with" not in page and 'name="password"' in page


# The page asked for, and signing out


def test_sign_in_lands_on_the_page_asked_for(client, sso):
    response = sign_in(client, sso, "u-ann", next_url="/keys/?status=active", **ann())
    assert response.status_code == 302 and response.url == "/keys/?status=active"


def test_a_next_url_on_another_site_is_ignored(client, sso):
    response = sign_in(client, sso, "u-ann", next_url="https://evil.example/keys/", **ann())
    assert response.url == reverse("dashboard")
    response = sign_in(Client(), sso, "u-ann", next_url="//evil.example/", **ann())
    assert response.url == reverse("dashboard")


def test_the_login_pages_button_carries_the_next_url(client, sso):
    page = client.get(reverse("login") + "?next=/inbox/").content.decode()
    assert f'href="{reverse("sso:start")}?next=/inbox/"' in page and "Sign in with Example ID" in page


def test_signing_out_ends_the_portal_session(client, sso):
    sign_in(client, sso, "u-ann", **ann())
    assert client.post(reverse("logout")).status_code == 302
    assert signed_in_user(client) is None
    assert client.get(reverse("keys:list")).status_code == 302
    assert AccessRecord.objects.filter(action=AccessAction.LOGOUT).exists()


def test_an_already_signed_in_person_starting_a_sign_in_goes_straight_to_the_page(client, sso):
    sign_in(client, sso, "u-ann", **ann())
    response = client.get(reverse("sso:start") + "?next=/inbox/")
    assert response.status_code == 302 and response.url == "/inbox/"


# The provider's second factor


def test_the_providers_second_factor_stands_in_for_the_portals(client, sso):
    sign_in(client, sso, "u-ann", **ann(amr=["pwd", "mfa"]))
    user = signed_in_user(client)
    TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=True)
    with_mfa = Client()
    sign_in(with_mfa, sso, "u-ann", **ann(amr=["pwd", "otp"]))
    assert two_factor.VERIFY_PENDING not in with_mfa.session
    assert with_mfa.get(reverse("keys:list")).status_code == 200
    assert AccessRecord.objects.filter(user=user, action=AccessAction.OTP_VERIFIED,
                                       target="at the identity provider (amr otp)").exists()
    # A password alone at the provider: the portal asks for its own code, as after a password sign-in.
    password_only = Client()
    sign_in(password_only, sso, "u-ann", **ann(amr=["pwd"]))
    assert password_only.session.get(two_factor.VERIFY_PENDING)
    response = password_only.get(reverse("keys:list"))
    assert response.status_code == 302 and response.url.startswith(reverse("two-factor-verify"))


def test_an_acr_named_in_the_settings_counts_as_a_second_factor(client, sso, settings):
    settings.OTP_REQUIRED_FOR_STAFF = True
    settings.OIDC_MFA_ACR_VALUES = ["urn:example:mfa"]
    sign_in(client, sso, "u-ann", **ann(acr="urn:example:mfa"))
    assert two_factor.ENROL_REQUIRED not in client.session
    other = Client()
    sign_in(other, sso, "u-ann", **ann(acr="urn:example:password"))
    assert other.session.get(two_factor.ENROL_REQUIRED)


def test_second_factor_claims():
    assert config.second_factor_at_provider({"amr": ["pwd", "hwk"]}) == "amr hwk"
    assert config.second_factor_at_provider({"amr": "mfa"}) == "amr mfa"
    assert config.second_factor_at_provider({"amr": ["pwd"], "acr": "1"}) == ""
    assert config.second_factor_at_provider({}) == ""


# PASSWORD_LOGIN off


def password_sign_in(client, username, password="demo"):
    return client.post(reverse("login"), {"username": username, "password": password}, REMOTE_ADDR="203.0.113.7")


@pytest.fixture
def password_login_off(sso, settings):
    settings.PASSWORD_LOGIN = False
    return sso


def test_with_password_login_off_an_employees_password_is_refused(client, password_login_off, compliance_user):
    response = password_sign_in(client, "carol")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Employees sign in with Example ID, not with a password" in html
    assert "<details class=\"break-glass\" open>" in html
    assert signed_in_user(client) is None
    record = AccessRecord.objects.get()
    assert (record.action, record.user, record.target) == (
        AccessAction.LOGIN_FAILED, compliance_user, "password sign-in is off for employees")


def test_with_password_login_off_a_superuser_and_an_auditor_keep_their_password(client, password_login_off):
    User.objects.create_superuser("root", "root@example.test", "break-glass-passphrase")
    response = password_sign_in(client, "root", "break-glass-passphrase")
    assert response.status_code == 302 and signed_in_user(client).username == "root"
    auditor = factories.UserFactory(username="audrey", role=roles.AUDITOR)
    other = Client()
    assert password_sign_in(other, "audrey").status_code == 302
    assert signed_in_user(other) == auditor


def test_with_password_login_off_the_admin_sign_in_refuses_employees_too(client, password_login_off, admin_user):
    response = client.post(reverse("admin:login"), {"username": "dave", "password": "demo"})
    assert response.status_code == 200 and "not with a password" in response.content.decode()
    assert signed_in_user(client) is None
    User.objects.create_superuser("root", "root@example.test", "break-glass-passphrase")
    assert client.post(reverse("admin:login"), {"username": "root", "password": "break-glass-passphrase"}).status_code == 302


def test_with_password_login_off_the_login_page_folds_the_password_away(client, password_login_off):
    html = client.get(reverse("login")).content.decode()
    assert "Sign in with Example ID" in html
    assert '<details class="break-glass">' in html and "Break-glass sign-in" in html


def test_with_password_login_on_both_ways_are_offered(client, sso, owner):
    html = client.get(reverse("login")).content.decode()
    assert "Sign in with Example ID" in html and "or with your password" in html and "break-glass" not in html
    assert password_sign_in(client, "alice").status_code == 302


def test_password_login_off_without_single_sign_on_does_not_start(settings):
    env = {**os.environ, "PASSWORD_LOGIN": "false", "OIDC_ISSUER": "", "DJANGO_SETTINGS_MODULE": "portal.settings"}
    result = subprocess.run([sys.executable, "-c", "import django; django.setup()"], env=env, cwd=settings.BASE_DIR,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "PASSWORD_LOGIN=false needs single sign-on" in result.stderr


# The claims, without a provider


def test_claims_of_the_wrong_kind_are_ignored():
    assert accounts.text_claim({"department": ["Risk"]}, "department") == ""
    assert accounts.text_claim({"department": "Ri\u202esk"}, "department") == ""
    assert accounts.text_claim({"manager": {"value": "u-grace"}}, "manager") == "u-grace"
    assert accounts.text_claim({"sub": 1042}, "sub") == "1042"
    assert accounts.list_claim({"groups": "portal-owners"}, "groups") == ["portal-owners"]
    assert accounts.list_claim({"groups": None}, "groups") == []
    assert accounts.unique_username("ann lee<script>") == "annleescript"


def test_no_subject_is_refused(db):
    with pytest.raises(accounts.SignInRefused) as refused:
        accounts.sign_in({"email": "ann@example.test", "groups": ["portal-owners"]})
    assert refused.value.reason == "no 'sub' claim"
