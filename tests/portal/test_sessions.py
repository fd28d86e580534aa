"""Sessions are Django's own engines: ``cached_db`` on the shared cache (Redis) when one is configured,
the database engine otherwise. In CI the suite runs with CACHE_URL on the real Redis."""

import os
import subprocess
import sys
from importlib import import_module
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.core.cache import cache
from django.urls import reverse

ROOT = Path(__file__).resolve().parents[2]


def session_settings(**env) -> list[str]:
    environment = {k: v for k, v in os.environ.items() if k not in ("CACHE_URL", "DJANGO_ENV", "CELERY_BROKER_URL")}
    environment.update(DJANGO_SETTINGS_MODULE="portal.settings", **env)
    out = subprocess.run(
        [sys.executable, "-c", "from django.conf import settings; "
         "print(settings.SESSION_ENGINE); print(settings.CACHES['default']['BACKEND'])"],
        cwd=ROOT, env=environment, capture_output=True, text=True, check=True).stdout
    return out.split()


def test_database_sessions_without_a_shared_cache():
    assert session_settings() == ["django.contrib.sessions.backends.db",
                                  "django.core.cache.backends.locmem.LocMemCache"]


def test_cached_db_sessions_on_redis_when_a_cache_is_configured():
    assert session_settings(CACHE_URL="redis://127.0.0.1:6379/13") == [
        "django.contrib.sessions.backends.cached_db", "django.core.cache.backends.redis.RedisCache"]


@pytest.mark.django_db
def test_a_signed_in_session_is_kept_in_the_database_and_read_back(client, owner):
    client.force_login(owner)
    assert client.get(reverse("attestations:inbox")).status_code == 200
    key = client.session.session_key
    assert Session.objects.filter(session_key=key).exists()  # both engines write it through to the database
    cached = settings.SESSION_ENGINE.endswith("cached_db")
    if cached:
        cache_key = import_module(settings.SESSION_ENGINE).SessionStore(session_key=key).cache_key
        assert cache.get(cache_key) is not None  # read from the cache, not the database
    Session.objects.all().delete()
    if cached:
        cache.delete(cache_key)
    response = client.get(reverse("attestations:inbox"))
    assert response.status_code == 302 and response.url.startswith(reverse("login"))


@pytest.mark.django_db
def test_end_sessions_ends_every_session_a_person_signed_in_with(client, owner, other_owner):
    from django.test import Client

    from core.models import SignedInSession
    from core.sessions import end_sessions

    laptop, phone, colleague = client, Client(), Client()
    laptop.force_login(owner)
    phone.force_login(owner)
    colleague.force_login(other_owner)
    assert SignedInSession.objects.filter(user=owner).count() == 2
    inbox = reverse("attestations:inbox")
    assert laptop.get(inbox).status_code == 200 and phone.get(inbox).status_code == 200

    assert end_sessions(owner) == 2

    for ended in (laptop, phone):
        response = ended.get(inbox)
        assert response.status_code == 302 and response.url.startswith(reverse("login"))
    assert colleague.get(inbox).status_code == 200  # someone else's session is untouched
    assert not SignedInSession.objects.filter(user=owner).exists()
    assert end_sessions(owner) == 0


@pytest.mark.django_db
def test_signing_out_forgets_the_session(client, owner):
    from core.models import SignedInSession

    client.force_login(owner)
    assert SignedInSession.objects.filter(user=owner).count() == 1
    client.post(reverse("logout"))
    assert not SignedInSession.objects.filter(user=owner).exists()
