"""Login protection and the access audit: django-axes lock-out, TOTP second factor, idle timeout,
Content-Security-Policy and API token use recorded with who, when and from where."""

import datetime
import hashlib
import time

import pytest
from axes.models import AccessAttempt
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from core import audit, sessions, two_factor
from core.models import AccessAction, AccessRecord
from tests.integration_tokens import make_token, token_client

pytestmark = pytest.mark.django_db

BROWSER_AGENT = "Mozilla/5.0 (test)"


def sign_in(client, username, password, address="203.0.113.7"):
    return client.post(reverse("login"), {"username": username, "password": password},
                       REMOTE_ADDR=address, HTTP_USER_AGENT=BROWSER_AGENT)


def code_for(device: TOTPDevice, offset: int = 0) -> str:
    return f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits, drift=offset):06d}"


def test_sign_in_through_the_form_works_and_is_recorded(client, owner):
    response = sign_in(client, "alice", "demo")
    assert response.status_code == 302 and response.url == reverse("dashboard")
    record = AccessRecord.objects.get(action=AccessAction.LOGIN)
    assert (record.user, record.username, record.ip_address, record.user_agent) == (
        owner, "alice", "203.0.113.7", BROWSER_AGENT)


def test_five_failures_lock_the_account_even_with_the_right_password(client, owner):
    for _ in range(4):
        assert sign_in(client, "alice", "wrong").status_code == 200
    locked = sign_in(client, "alice", "wrong")
    assert locked.status_code == 429
    assert "Sign-in locked" in locked.content.decode()
    refused = sign_in(client, "alice", "demo")
    assert refused.status_code == 429
    assert "_auth_user_id" not in client.session
    assert client.get(reverse("dashboard")).status_code == 302
    assert AccessAttempt.objects.get(username="alice", ip_address="203.0.113.7").failures_since_start >= 5
    actions = list(AccessRecord.objects.order_by("pk").values_list("action", flat=True))
    assert actions.count(AccessAction.LOGIN_FAILED) == 4
    assert AccessAction.LOCKED_OUT in actions
    assert AccessAction.LOGIN not in actions


def test_lock_out_is_per_username_and_address(client, owner, other_owner):
    for _ in range(5):
        sign_in(client, "alice", "wrong")
    assert sign_in(Client(), "alice", "demo", address="198.51.100.9").status_code == 302
    assert sign_in(Client(), "bob", "demo").status_code == 302


def test_lock_out_ends_after_the_cool_off(client, owner, settings):
    for _ in range(5):
        sign_in(client, "alice", "wrong")
    AccessAttempt.objects.update(attempt_time=AccessAttempt.objects.get().attempt_time - settings.AXES_COOLOFF_TIME * 2)
    assert sign_in(client, "alice", "demo").status_code == 302


def test_failed_sign_in_of_an_unknown_user_is_recorded_with_the_name_typed(client):
    sign_in(client, "mallory", "guess")
    record = AccessRecord.objects.get()
    assert (record.action, record.user, record.username) == (AccessAction.LOGIN_FAILED, None, "mallory")


def test_csp_and_secure_headers_on_pages(client, owner):
    client.force_login(owner)
    response = client.get(reverse("keys:list"))
    policy = response["Content-Security-Policy"]
    for directive in ("default-src 'self'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:",
                      "frame-ancestors 'none'", "form-action 'self'"):
        assert directive in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "Content-Security-Policy" in Client().get(reverse("login"))


def test_api_docs_render_from_this_origin_without_inline_script(client):
    response = client.get(reverse("api-docs"))
    html = response.content.decode()
    assert response.status_code == 200
    assert "cdn" not in html.lower() and "//" not in html.replace("<!DOCTYPE", "").split("<body>")[0].replace('"/', '"')
    assert "<style" not in html and "<script>" not in html
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    script = client.get(reverse("api-docs") + "?script=")
    assert script.status_code == 200 and script["Content-Type"].startswith("application/javascript")


def test_idle_session_ends(client, owner, settings):
    client.force_login(owner)
    assert client.get(reverse("dashboard")).status_code == 200
    session = client.session
    session[sessions.LAST_SEEN_KEY] = int(time.time()) - settings.SESSION_IDLE_TIMEOUT - 5
    session.save()
    response = client.get(reverse("keys:list"))
    assert response.status_code == 302 and response.url.startswith(reverse("login"))
    assert "_auth_user_id" not in client.session
    assert settings.SESSION_EXPIRE_AT_BROWSER_CLOSE


def test_totp_enrol_then_verify_at_next_sign_in(client, compliance_user, settings):
    settings.OTP_TOTP_THROTTLE_FACTOR = 0  # a wrong code would otherwise hold the next one back a second
    client.force_login(compliance_user)
    page = client.get(reverse("two-factor-setup"))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'src="data:image/svg+xml;base64,' in html and "otpauth://totp/" in html
    device = TOTPDevice.objects.get(user=compliance_user, confirmed=False)
    wrong = client.post(reverse("two-factor-setup"), {"token": "000000" if code_for(device) != "000000" else "111111"})
    assert wrong.status_code == 200 and "does not match" in wrong.content.decode()
    device.refresh_from_db()
    assert not device.confirmed
    done = client.post(reverse("two-factor-setup"), {"token": code_for(device)})
    assert done.status_code == 302
    device.refresh_from_db()
    assert device.confirmed
    assert AccessRecord.objects.filter(action=AccessAction.OTP_ENROLLED, user=compliance_user).exists()

    # Next sign-in: the password alone reaches only the verify page, for pages and the API alike.
    fresh = Client()
    assert sign_in(fresh, "carol", "demo").status_code == 302
    held = fresh.get(reverse("keys:list"))
    assert held.status_code == 302 and held.url.startswith(reverse("two-factor-verify"))
    assert fresh.get(reverse("apikey-list")).status_code == 403
    bad = fresh.post(reverse("two-factor-verify"), {"token": "12345"})
    assert bad.status_code == 200 and "6-digit" in bad.content.decode()
    device.refresh_from_db()
    verified = fresh.post(reverse("two-factor-verify"), {"token": code_for(device, offset=1), "next": "/keys/"})
    assert verified.status_code == 302 and verified.url == "/keys/"
    assert fresh.get(reverse("keys:list")).status_code == 200
    assert AccessRecord.objects.filter(action=AccessAction.OTP_VERIFIED, user=compliance_user).exists()


def test_owners_are_not_offered_totp(client, owner):
    client.force_login(owner)
    assert client.get(reverse("two-factor-setup")).status_code == 403


def test_staff_must_enrol_when_required(client, admin_user, owner, settings):
    settings.OTP_REQUIRED_FOR_STAFF = True
    client.force_login(admin_user)
    response = client.get(reverse("keys:list"))
    assert response.status_code == 302 and response.url.startswith(reverse("two-factor-setup"))
    assert client.get(reverse("two-factor-setup")).status_code == 200
    owner_client = Client()
    owner_client.force_login(owner)
    assert owner_client.get(reverse("keys:list")).status_code == 200
    assert two_factor.may_use_two_factor(admin_user)


def test_api_token_use_is_recorded(admin_user, key):
    token = Token.objects.create(user=admin_user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert client.get(reverse("apikey-detail", args=[key.pk]), REMOTE_ADDR="192.0.2.10").status_code == 200
    record = AccessRecord.objects.get(action=AccessAction.API_TOKEN_USED)
    assert record.user == admin_user and record.ip_address == "192.0.2.10"
    assert record.target.startswith(f"GET /api/v1/keys/{key.pk}/ 200")
    # A personal token's primary key is the token itself: the audit names it by a digest instead.
    assert token.key not in record.target and token.key[:12] not in record.target
    assert record.target.endswith(f"(personal token sha256:{hashlib.sha256(token.key.encode()).hexdigest()[:12]})")


def test_integration_token_use_is_recorded_by_id_and_prefix(key):
    token, plaintext = make_token(issuing_system=key.issuing_system)
    assert token_client(plaintext).get(reverse("apikey-list")).status_code == 200
    record = AccessRecord.objects.get(action=AccessAction.API_TOKEN_USED)
    assert record.user == token.acts_as and plaintext not in record.target
    assert record.target == f"GET /api/v1/keys/ 200 (integration token #{token.pk} {token.token_prefix}…)"
    assert plaintext[len(token.token_prefix):] not in record.target


def test_migration_rewrites_token_keys_out_of_older_records(owner):
    from importlib import import_module

    from django.apps import apps

    key = "0c847d3084a694f10c5169dd42f4e52c86afaea2"
    old = AccessRecord.objects.create(user=owner, username=owner.username, action=AccessAction.API_TOKEN_USED,
                                      target=f"POST /api/v1/attestations/7/decide/ 200 (Token #{key})")
    other = AccessRecord.objects.create(username="x", action=AccessAction.LOGIN_FAILED, target="Token #not-hex")
    import_module("core.migrations.0006_access_records_without_token_keys").forwards(apps, None)
    old.refresh_from_db()
    other.refresh_from_db()
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    assert old.target == f"POST /api/v1/attestations/7/decide/ 200 (personal token sha256:{digest})"
    assert other.target == "Token #not-hex"


def test_session_api_calls_are_not_token_use(owner, key):
    client = APIClient()
    client.force_login(owner)
    client.get(reverse("apikey-list"))
    assert not AccessRecord.objects.filter(action=AccessAction.API_TOKEN_USED).exists()


@pytest.fixture
def finished_export(owner, key, settings, tmp_path):
    from django.core.files.base import ContentFile

    from attestations.models import EvidenceExport

    settings.MEDIA_ROOT = tmp_path
    export = EvidenceExport(kind=EvidenceExport.Kind.KEY, key=key, requested_by=owner, status=EvidenceExport.Status.DONE,
                            progress=100, parameters={"kind": "key", "key": key.pk}, sha256="ab" * 32, size=30, page_count=1)
    export.file.save("evidence-audit.pdf", ContentFile(b"%PDF-1.7\n% audit stand-in\n%%EOF\n"), save=False)
    export.save()
    return export


def test_export_downloads_are_recorded_from_the_portal_and_the_api(client, owner, other_owner, finished_export):
    client.force_login(owner)
    page = client.get(reverse("attestations:export-download", args=[finished_export.pk]),
                      REMOTE_ADDR="198.51.100.20", HTTP_USER_AGENT=BROWSER_AGENT)
    assert page.status_code == 200
    b"".join(page.streaming_content)
    token = Token.objects.create(user=owner)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert api.get(reverse("export-download", args=[finished_export.pk]), REMOTE_ADDR="198.51.100.21").status_code == 200
    records = list(AccessRecord.objects.filter(action=AccessAction.EXPORT_DOWNLOADED).order_by("pk"))
    assert [(r.user, r.ip_address) for r in records] == [(owner, "198.51.100.20"), (owner, "198.51.100.21")]
    assert all(r.target == f"export #{finished_export.pk} (Key dossier) sha256:{'ab' * 32}" for r in records)
    assert records[0].user_agent == BROWSER_AGENT and records[0].at is not None
    # A download refused (another owner: 404) is not a download.
    client.force_login(other_owner)
    assert client.get(reverse("attestations:export-download", args=[finished_export.pk])).status_code == 404
    assert AccessRecord.objects.filter(action=AccessAction.EXPORT_DOWNLOADED).count() == 2


def test_admin_role_reads_the_access_audit_in_the_admin(client, admin_user, owner):
    AccessRecord.objects.create(user=owner, username="alice", action=AccessAction.LOGIN_FAILED, ip_address="192.0.2.9")
    assert not admin_user.is_superuser
    client.force_login(admin_user)
    listing = client.get(reverse("admin:portal_accessrecord_changelist"))
    assert listing.status_code == 200 and "192.0.2.9" in listing.content.decode()
    client.force_login(owner)
    assert client.get(reverse("admin:portal_accessrecord_changelist")).status_code == 302


def test_record_access_for_an_export_download(rf, owner):
    request = rf.get("/exports/1/download/", REMOTE_ADDR="2001:db8::1", HTTP_USER_AGENT="x" * 400)
    request.user = owner
    record = audit.record_access(request, AccessAction.EXPORT_DOWNLOADED, "export #1 (key dossier)")
    assert (record.user, record.ip_address, record.target) == (owner, "2001:db8::1", "export #1 (key dossier)")
    assert len(record.user_agent) == 255


def test_forwarded_address_is_trusted_only_when_configured(rf, settings):
    request = rf.get("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="6.6.6.6, 198.51.100.4")
    assert audit.client_ip(request) == "10.0.0.2"
    settings.TRUST_X_FORWARDED_FOR = True
    assert audit.client_ip(request) == "198.51.100.4"


def test_access_records_are_read_only_in_the_admin(client, admin_user, owner):
    AccessRecord.objects.create(user=owner, username="alice", action=AccessAction.LOGIN, ip_address="192.0.2.1")
    admin_user.is_superuser = True
    admin_user.save()
    client.force_login(admin_user)
    listing = client.get(reverse("admin:portal_accessrecord_changelist"))
    assert listing.status_code == 200 and "192.0.2.1" in listing.content.decode()
    assert client.get(reverse("admin:portal_accessrecord_add")).status_code == 403


def confirmed_device(user) -> TOTPDevice:
    return TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=True)


def test_totp_verify_while_throttled_says_so_and_when_to_try_again(compliance_user, settings):
    settings.OTP_TOTP_THROTTLE_FACTOR = 10
    device = confirmed_device(compliance_user)
    client = Client()
    assert sign_in(client, "carol", "demo").status_code == 302
    # Three wrong codes in a row: the next try is held back 10 * 2**2 = 40 seconds after the last.
    last_failure = timezone.now() - datetime.timedelta(seconds=5)
    TOTPDevice.objects.filter(pk=device.pk).update(throttling_failure_count=3,
                                                   throttling_failure_timestamp=last_failure)
    device.refresh_from_db()
    refused = client.post(reverse("two-factor-verify"), {"token": code_for(device)})
    html = refused.content.decode()
    assert refused.status_code == 429
    assert "That code is not valid" not in html
    assert "Too many wrong codes" in html
    until = timezone.localtime(last_failure + datetime.timedelta(seconds=40))
    assert f"after {until:%H:%M:%S}" in html, html
    assert 30 <= int(refused["Retry-After"]) <= 36
    assert client.get(reverse("keys:list")).status_code == 302  # still held at the verify page
    # Once the wait is over, the same right code signs in.
    TOTPDevice.objects.filter(pk=device.pk).update(
        throttling_failure_timestamp=timezone.now() - datetime.timedelta(seconds=41))
    device.refresh_from_db()
    assert client.post(reverse("two-factor-verify"), {"token": code_for(device)}).status_code == 302
    assert client.get(reverse("keys:list")).status_code == 200


def test_totp_enrolment_while_throttled_says_so(compliance_user, settings):
    settings.OTP_TOTP_THROTTLE_FACTOR = 10
    client = Client()
    client.force_login(compliance_user)
    client.get(reverse("two-factor-setup"))
    device = TOTPDevice.objects.get(user=compliance_user, confirmed=False)
    TOTPDevice.objects.filter(pk=device.pk).update(throttling_failure_count=2,
                                                   throttling_failure_timestamp=timezone.now())
    device.refresh_from_db()
    refused = client.post(reverse("two-factor-setup"), {"token": code_for(device)})
    assert refused.status_code == 429
    assert "Too many wrong codes" in refused.content.decode()
    device.refresh_from_db()
    assert not device.confirmed


def spray(count, *, address="203.0.113.50", forwarded=None, password="Summer2026!"):
    """One password tried once on each of ``count`` usernames from one address: no pair reaches axes' limit."""
    extra = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded else {}
    return [Client().post(reverse("login"), {"username": f"user{n:03d}", "password": password},
                          REMOTE_ADDR=address, **extra).status_code for n in range(count)]


def test_password_spraying_from_one_address_is_stopped_after_fifty_failures(owner, settings):
    assert settings.LOGIN_ADDRESS_FAILURE_LIMIT == 50
    assert settings.LOGIN_ADDRESS_WINDOW == datetime.timedelta(minutes=15)
    assert spray(50) == [200] * 50  # each a plain "wrong username or password"
    # The 51st sign-in from that address is refused, even alice's with her right password ...
    refused = sign_in(Client(), "alice", "demo", address="203.0.113.50")
    assert refused.status_code == 429
    assert "Too many failed sign-ins from your network address" in refused.content.decode()
    assert int(refused["Retry-After"]) > 0
    assert not AccessRecord.objects.filter(action=AccessAction.LOGIN).exists()
    assert AccessRecord.objects.filter(action=AccessAction.LOCKED_OUT, username="alice",
                                       ip_address="203.0.113.50").exists()
    # ... and counts as no new failure (the lock ends as the old failures leave the window) ...
    assert AccessRecord.objects.filter(action=AccessAction.LOGIN_FAILED).count() == 50
    # ... while another address signs in as usual.
    assert sign_in(Client(), "alice", "demo", address="198.51.100.9").status_code == 302


def test_an_office_behind_one_address_stays_under_the_limit(owner, settings):
    settings.LOGIN_ADDRESS_FAILURE_LIMIT = 5
    assert spray(4) == [200] * 4
    assert sign_in(Client(), "alice", "demo", address="203.0.113.50").status_code == 302


def test_the_address_limit_applies_to_the_admin_sign_in_too(admin_user, settings):
    settings.LOGIN_ADDRESS_FAILURE_LIMIT = 3
    spray(3)
    refused = Client().post(reverse("admin:login"), {"username": "dave", "password": "demo"},
                            REMOTE_ADDR="203.0.113.50")
    assert refused.status_code == 429


def test_failures_older_than_the_window_no_longer_count(owner, settings):
    settings.LOGIN_ADDRESS_FAILURE_LIMIT = 3
    spray(3)
    assert sign_in(Client(), "alice", "demo", address="203.0.113.50").status_code == 429
    AccessRecord.objects.filter(action=AccessAction.LOGIN_FAILED).update(
        at=timezone.now() - settings.LOGIN_ADDRESS_WINDOW - datetime.timedelta(seconds=1))
    assert sign_in(Client(), "alice", "demo", address="203.0.113.50").status_code == 302


def test_forwarded_addresses_count_only_behind_a_trusted_proxy(owner, settings):
    settings.LOGIN_ADDRESS_FAILURE_LIMIT = 3
    # Without a trusted proxy a forged X-Forwarded-For changes nothing: the connecting address is counted.
    for n in range(3):
        spray(1, address="10.0.0.2", forwarded=f"192.0.2.{n + 1}")
    assert sign_in(Client(), "alice", "demo", address="10.0.0.2").status_code == 429
    # Behind the trusted proxy each client is its own address, the one the proxy appended.
    settings.TRUST_X_FORWARDED_FOR = True
    AccessRecord.objects.all().delete()
    for n in range(3):
        spray(1, address="10.0.0.2", forwarded=f"6.6.6.6, 192.0.2.{n + 1}")
    assert Client().post(reverse("login"), {"username": "alice", "password": "demo"}, REMOTE_ADDR="10.0.0.2",
                         HTTP_X_FORWARDED_FOR="192.0.2.99").status_code == 302
    spray(2, address="10.0.0.2", forwarded="192.0.2.1")
    assert Client().post(reverse("login"), {"username": "alice", "password": "demo"}, REMOTE_ADDR="10.0.0.2",
                         HTTP_X_FORWARDED_FOR="6.6.6.6, 192.0.2.1").status_code == 429
