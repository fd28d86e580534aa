"""Production mode: `manage.py check --deploy` is clean, and missing secrets stop the start-up.

Each check runs ``manage.py`` in a subprocess because the settings module reads the environment
once, at import.
"""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def production_env(tmp_path, **overrides) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "SECURE_", "CELERY_", "EMAIL_")) and key not in {"DEBUG", "ALLOWED_HOSTS"}
    }
    env.update(
        DJANGO_ENV="production",
        DJANGO_SETTINGS_MODULE="portal.settings",
        SECRET_KEY=secrets.token_urlsafe(64),
        KEY_FINGERPRINT_PEPPER=secrets.token_urlsafe(32),
        DATABASE_URL=f"sqlite:///{tmp_path / 'deploy-check.sqlite3'}",
        ALLOWED_HOSTS="portal.example.test",
        CELERY_BROKER_URL="redis://127.0.0.1:6379/0",
    )
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def test_check_deploy_is_clean_in_production_mode(tmp_path):
    result = manage(production_env(tmp_path), "check", "--deploy", "--fail-level", "WARNING")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "WARNING" not in output and "ERROR" not in output, output
    assert "System check identified no issues" in output, output


@pytest.mark.parametrize("missing", ["SECRET_KEY", "KEY_FINGERPRINT_PEPPER", "DATABASE_URL"])
def test_production_mode_refuses_to_start_without_a_required_setting(tmp_path, missing):
    result = manage(production_env(tmp_path, **{missing: None}), "check")
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert f"{missing} must be set in production mode." in result.stderr


def test_local_mode_needs_no_configuration(tmp_path):
    env = production_env(tmp_path, DJANGO_ENV=None, SECRET_KEY=None, KEY_FINGERPRINT_PEPPER=None, ALLOWED_HOSTS=None)
    result = manage(env, "check")
    assert result.returncode == 0, result.stdout + result.stderr


def test_production_mode_refuses_to_start_with_debug_on(tmp_path):
    result = manage(production_env(tmp_path, DEBUG="true"), "check")
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "DEBUG must be off in production mode" in result.stderr, result.stderr


@pytest.mark.parametrize("secret_key", [
    "short-key",
    "a" * 64,
    "django-insecure-q8Vw2LxR7nTzK4pYb9HsD3mJcF6gA1eU0oWiN5rXtQyZkMvB",
    "local-only-insecure-secret-key-change-me-in-production-0123456789",
])
def test_production_mode_refuses_to_start_with_a_weak_secret_key(tmp_path, secret_key):
    result = manage(production_env(tmp_path, SECRET_KEY=secret_key), "check")
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "SECRET_KEY is too weak for production mode" in result.stderr, result.stderr
    assert secret_key not in result.stderr


def test_local_mode_may_run_with_debug_and_the_local_key(tmp_path):
    env = production_env(tmp_path, DJANGO_ENV=None, SECRET_KEY=None, DEBUG="true")
    result = manage(env, "check")
    assert result.returncode == 0, result.stdout + result.stderr


ANONYMOUS_SCHEMA_REQUEST = (
    "import django; django.setup(); from django.test import Client; "
    "print(Client().get('/api/schema/', HTTP_HOST='portal.example.test', secure=True).status_code)"
)


@pytest.mark.parametrize(("mode", "public", "status"), [
    ("production", None, "403"),
    ("production", "true", "200"),
    ("local", None, "200"),
    ("local", "false", "403"),
])
def test_api_schema_is_closed_to_anonymous_callers_by_default_in_production_only(tmp_path, mode, public, status):
    env = production_env(tmp_path, API_DOCS_PUBLIC=public)
    if mode == "local":
        env = production_env(tmp_path, DJANGO_ENV=None, API_DOCS_PUBLIC=public, ALLOWED_HOSTS="portal.example.test")
    result = subprocess.run([sys.executable, "-c", ANONYMOUS_SCHEMA_REQUEST], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == status, result.stdout + result.stderr
