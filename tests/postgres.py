"""PostgreSQL-only tests: skipped on the local SQLite database, required in CI.

    from tests.postgres import requires_postgres

    @requires_postgres
    def test_concurrent_decisions(transactional_db): ...

or call ``require_postgres()`` at the start of a test or fixture. With ``REQUIRE_POSTGRES`` or
``CI`` set, a test that would be skipped fails instead, so CI cannot go green without PostgreSQL.
"""

import functools
import os

import pytest
from django.db import connections

FALSE_VALUES = {"", "0", "false", "no", "off"}


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in FALSE_VALUES


def postgres_required() -> bool:
    """PostgreSQL is mandatory in CI (``.ci/run`` sets both flags)."""
    return env_flag("REQUIRE_POSTGRES") or env_flag("CI")


def require_postgres(using: str = "default") -> None:
    """Skip the running test unless the database is PostgreSQL; fail instead when it is required."""
    if connections[using].vendor == "postgresql":
        return
    message = f"needs PostgreSQL (DATABASE_URL); the {using!r} database is {connections[using].vendor}"
    if postgres_required():
        pytest.fail(f"{message}, and REQUIRE_POSTGRES/CI is set")
    pytest.skip(message)


def requires_postgres(test):
    """Mark a test function ``postgres`` and skip (locally) or fail (CI) it without PostgreSQL."""

    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        require_postgres()
        return test(*args, **kwargs)

    return pytest.mark.postgres(wrapper)
