"""mozilla-django-oidc's authentication backend, configured from the environment (``identity.sso.config``).

It exchanges the provider's code for tokens, checks the ID token (signature, nonce, issuer, audience,
expiry), reads the userinfo endpoint and hands the claims to ``identity.sso.accounts``. Only the single
sign-on callback asks it to authenticate (``single_sign_on=True``): a password form's ``authenticate()``
passes it by. It also answers ``get_user`` for sessions it signed in, refusing a deactivated account or a
departed person, so such a session is anonymous from its next request on.
"""

import jwt
import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import SuspiciousOperation
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from identity.sso import accounts, config

BACKEND = "identity.sso.backend.SingleSignOnBackend"


class SingleSignOnBackend(OIDCAuthenticationBackend):
    def __init__(self, *args, **kwargs):
        # Django makes a backend for every request of a session (get_user): nothing is read or fetched here;
        # the provider's settings are read when a sign-in needs them (configure).
        self.UserModel = get_user_model()
        self.id_token_claims: dict = {}
        self.claims: dict = {}

    def configure(self) -> None:
        found = config.endpoints()
        self.OIDC_OP_TOKEN_ENDPOINT = found["token_endpoint"]
        self.OIDC_OP_USER_ENDPOINT = found["userinfo_endpoint"]
        self.OIDC_OP_JWKS_ENDPOINT = found["jwks_uri"] or None
        self.OIDC_RP_CLIENT_ID = settings.OIDC_RP_CLIENT_ID
        self.OIDC_RP_CLIENT_SECRET = settings.OIDC_RP_CLIENT_SECRET
        self.OIDC_RP_SIGN_ALGO = settings.OIDC_RP_SIGN_ALGO
        self.OIDC_RP_IDP_SIGN_KEY = settings.OIDC_RP_IDP_SIGN_KEY or None
        if self.OIDC_RP_SIGN_ALGO[:2] in ("RS", "ES", "PS") and not (self.OIDC_OP_JWKS_ENDPOINT or self.OIDC_RP_IDP_SIGN_KEY):
            raise config.ProviderUnavailable("the provider names no jwks_uri to check its signatures with")

    def authenticate(self, request, **kwargs):
        if request is None or not kwargs.pop("single_sign_on", False) or not config.enabled():
            return None
        self.configure()
        return super().authenticate(request, **kwargs)

    def retrieve_matching_jwk(self, token):
        """The provider's key for ``token``: by its key id (the library's way), or, when the token names none,
        the provider's only signing key for the token's algorithm."""
        header = jwt.get_unverified_header(token)
        if "kid" in header:
            return super().retrieve_matching_jwk(token)
        response = requests.get(self.OIDC_OP_JWKS_ENDPOINT, timeout=settings.OIDC_TIMEOUT, verify=settings.OIDC_VERIFY_SSL)
        response.raise_for_status()
        candidates = [key for key in response.json().get("keys", [])
                      if key.get("use", "sig") == "sig" and key.get("alg", header.get("alg")) == header.get("alg")]
        if len(candidates) != 1:
            raise SuspiciousOperation("the token names no key, and the provider has not exactly one to check it with")
        return jwt.PyJWK(candidates[0])

    def verify_token(self, token, **kwargs):
        """The library checks the signature, the expiry and the nonce; the issuer and audience are checked here."""
        payload = super().verify_token(token, **kwargs)
        if str(payload.get("iss", "")).rstrip("/") != config.issuer():
            raise SuspiciousOperation(f"token issued by {payload.get('iss')!r}, not {config.issuer()!r}")
        audience = payload.get("aud")
        audiences = [audience] if isinstance(audience, str) else list(audience or [])
        if self.OIDC_RP_CLIENT_ID not in audiences:
            raise SuspiciousOperation(f"token for {audiences!r}, not this client")
        return payload

    def get_or_create_user(self, access_token, id_token, payload):
        """The ID token's claims, completed by the userinfo endpoint's, made into an account (or a refusal,
        raised as ``accounts.SignInRefused``)."""
        userinfo = self.get_userinfo(access_token, id_token, payload) if self.OIDC_OP_USER_ENDPOINT else {}
        if not isinstance(userinfo, dict) or userinfo.get("sub", payload.get("sub")) != payload.get("sub"):
            raise SuspiciousOperation("the userinfo endpoint answered for another subject")
        self.id_token_claims = payload
        self.claims = {**payload, **userinfo}
        return accounts.sign_in(self.claims)

    def get_user(self, user_id):
        user = self.UserModel.objects.select_related("owner_profile").filter(pk=user_id).first()
        if user is None or not self.user_can_authenticate(user):
            return None
        profile = getattr(user, "owner_profile", None)
        if profile is not None and not profile.is_active:
            return None
        return user
