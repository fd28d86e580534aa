"""A real OpenID Connect provider for the tests: oidc-provider-mock's app served on 127.0.0.1 from a thread.

Any client id and secret are accepted, and a person signs in on its page by typing their subject. Their claims
(email, groups, amr...) are set beforehand with ``Provider.set_user`` (the mock's ``PUT /users/{sub}``).
"""

import contextlib
import threading
from urllib.parse import parse_qs, urlsplit

import oidc_provider_mock
import requests
import werkzeug.serving

CLIENT_ID = "keys-portal"
CLIENT_SECRET = "test-only-client-secret"


class Provider:
    def __init__(self, issuer: str):
        self.issuer = issuer

    def set_user(self, sub: str, **claims) -> None:
        requests.put(f"{self.issuer}/users/{sub}", json=claims, timeout=5).raise_for_status()

    def configure(self, settings, **overrides) -> None:
        """Point the portal's single sign-on at this provider (pytest-django's ``settings``)."""
        from identity.sso import config

        config.forget_discovery()
        values = {"OIDC_ISSUER": self.issuer, "OIDC_RP_CLIENT_ID": CLIENT_ID, "OIDC_RP_CLIENT_SECRET": CLIENT_SECRET,
                  "OIDC_PROVIDER_NAME": "Example ID",
                  "IDENTITY_GROUP_ROLES": {"portal-owners": "owner", "portal-compliance": "compliance",
                                           "portal-admins": "admin"}}
        for name, value in {**values, **overrides}.items():
            setattr(settings, name, value)

    def authorize(self, authorize_url: str, sub: str) -> str:
        """Sign ``sub`` in on the provider's page (without a browser): the URL it sends the browser back to."""
        response = requests.post(authorize_url, data={"sub": sub}, allow_redirects=False, timeout=5)
        assert response.status_code == 302, response.text[:500]
        return response.headers["Location"]


@contextlib.contextmanager
def running_provider():
    server = werkzeug.serving.make_server("127.0.0.1", 0, oidc_provider_mock.app(require_nonce=True), threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield Provider(f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
        thread.join(5)
        server.server_close()


def query(url: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}


def path_and_query(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path
