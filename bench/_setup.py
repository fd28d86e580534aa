"""Shared set-up for the benchmarks: a dedicated PostgreSQL database (or SQLite), migrated."""

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def setup_django(default_db_name: str, *, keep: bool = False) -> None:
    """Point Django at the bench's database and migrate it. The database is dropped and created afresh,
    unless ``keep``: then an existing one is kept (created only if missing) with the rows it holds."""
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    url = os.environ.get("DATABASE_URL") or f"postgres://postgres@127.0.0.1:5432/{default_db_name}"
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("EMAIL_BACKEND", "django.core.mail.backends.locmem.EmailBackend")
    # Evidence is signed with a throw-away key, not with one left in the user's data directory.
    os.environ.setdefault("EVIDENCE_SIGNING_DIR", tempfile.mkdtemp(prefix="bench-evidence-signing-"))
    if url.startswith("postgres"):
        import psycopg

        name = url.rsplit("/", 1)[1]
        admin_url = url.rsplit("/", 1)[0] + "/postgres"
        with psycopg.connect(admin_url, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
            if exists and not keep:
                conn.execute(f'DROP DATABASE "{name}"')
            if not (exists and keep):
                conn.execute(f'CREATE DATABASE "{name}"')
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
