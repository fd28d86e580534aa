"""REST API tests. Helpers shared by the API test modules."""

import pytest
from rest_framework.test import APIClient

# "auditor": an external auditor with a current grant (reads what compliance reads; every change refused with 403).
ROLES = ("anon", "owner", "other", "compliance", "admin", "auditor")
READS = {"get", "head", "options"}


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


def expected_status(statuses: dict, role: str, method: str) -> int:
    """A matrix row's status for ``role``; a row written without an auditor column answers an auditor's read as
    another owner's, and refuses every change (403)."""
    if role == "auditor" and role not in statuses:
        return statuses["other"] if method in READS else 403
    return statuses[role]


def assert_matrix_row(response, expected: int, label: str) -> None:
    assert response.status_code == expected, f"{label}: {response.status_code} {response.content[:300]!r}"


def permission_matrix_tests(router, matrix: dict, url, unchanged=None):
    """An API's permission matrix (url name -> method -> role -> status) as two tests: every route the router
    serves has its row, and every role gets its status. ``url(name, world)`` is the route's URL for the module's
    ``world``; ``unchanged(world, name)`` checks afterwards that the request changed nothing it should not."""

    def test_matrix_covers_every_route():
        assert routes(router) == {(name, method) for name, methods in matrix.items() for method in methods}

    @pytest.mark.parametrize("role", ROLES)
    @pytest.mark.parametrize(("name", "method"), [(n, m) for n, methods in matrix.items() for m in methods])
    def test_permission_matrix(world, name, method, role):
        response = getattr(client_for(world[role]), method)(url(name, world), {}, format="json")
        assert_matrix_row(response, expected_status(matrix[name][method], role, method), f"{role} {method} {name}")
        if unchanged is not None:
            unchanged(world, name)

    return test_matrix_covers_every_route, test_permission_matrix
