"""Shared set-up for the benchmarks: a dedicated PostgreSQL database (or SQLite), migrated."""

import importlib
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def setup_django(default_db_name: str) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    url = os.environ.get("DATABASE_URL") or f"postgres://postgres@127.0.0.1:5432/{default_db_name}"
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("EMAIL_BACKEND", "django.core.mail.backends.locmem.EmailBackend")
    if url.startswith("postgres"):
        import psycopg

        name = url.rsplit("/", 1)[1]
        admin_url = url.rsplit("/", 1)[0] + "/postgres"
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def import_first(*names: str):
    """The first of these modules that exists, so the benchmarks run before and after services move
    between packages (e.g. ``attestations.campaigns`` -> ``attestations.services.campaigns``).

    Only a module that is missing itself is skipped: an import error inside an existing module is raised.
    """
    for name in names:
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as error:
            if not (error.name == name or name.startswith(f"{error.name}.")):
                raise
    raise ModuleNotFoundError(f"none of {', '.join(names)} exists")


CAMPAIGNS = ("attestations.campaigns", "attestations.services.campaigns")
CHAIN = ("portal.chain", "core.chain")
