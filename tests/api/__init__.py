"""REST API tests. Helpers shared by the API test modules."""

from rest_framework.test import APIClient

ROLES = ("anon", "owner", "other", "compliance", "admin")


def client_for(user=None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_login(user)
    return client


def routes(router) -> set[tuple[str, str]]:
    """Every (url name, HTTP method) a router serves, so a new endpoint without a matrix entry fails."""
    served = set()
    for pattern in router.urls:
        for method in getattr(pattern.callback, "actions", {}):
            if method != "head":  # DRF adds HEAD beside GET once a view has served a request
                served.add((pattern.name, method))
    return served


def assert_matrix_row(response, expected: int, label: str) -> None:
    assert response.status_code == expected, f"{label}: {response.status_code} {response.content[:300]!r}"
