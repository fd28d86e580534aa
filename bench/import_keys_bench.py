"""Time an all-or-nothing inventory import of a generated good file (default 10,000 rows).

    python bench/import_keys_bench.py [ROWS]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/keys_portal_bench python bench/import_keys_bench.py

Without DATABASE_URL it uses a throwaway SQLite file in the temp directory, never the project's
db.sqlite3. A missing PostgreSQL database is created. Prints the time, rows/s and query count for
the whole import (validation and the one writing transaction) and for validating a bad file.
"""

import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROWS = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000


def prepare_database() -> str:
    url = os.environ.get("DATABASE_URL") or f"sqlite:///{Path(tempfile.gettempdir()) / 'keys_portal_import_bench.sqlite3'}"
    os.environ["DATABASE_URL"] = url
    if url.startswith(("postgres://", "postgresql://")):
        import psycopg

        base, name = url.rsplit("/", 1)
        name = name.split("?", 1)[0]
        with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
                conn.execute(f'CREATE DATABASE "{name}"')
    return url


def main() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    url = prepare_database()

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    call_command("migrate", verbosity=0)

    from keys.models import ApiKey, Customer, IssuingSystem, Workflow
    from keys.services.importer import COLUMNS, KeyImportError, import_keys
    from tests.factories import AdminFactory, OwnerFactory

    run = secrets.token_hex(3)  # a fresh namespace, so repeated runs never collide
    owners = [OwnerFactory(username=f"bench-{run}-owner-{i}", password=None) for i in range(50)]
    actor = AdminFactory(username=f"bench-{run}-admin", password=None)
    system = IssuingSystem.objects.create(name=f"Bench gateway {run}")
    workflows = []
    for c in range(20):
        customer = Customer.objects.create(name=f"Bench {run} customer {c}", external_id=f"B-{run}-{c}")
        for w in range(5):
            workflows.append(
                Workflow.objects.create(
                    customer=customer, name=f"wf {w}", purpose="bench", data_scope="bench",
                    environment="production", business_owner=owners[0],
                )
            )

    def csv_text(rows: int, bad_every: int = 0) -> str:
        lines = [",".join(COLUMNS)]
        for i in range(rows):
            workflow = workflows[i % len(workflows)]
            values = {
                "label": f"bench key {i}",
                "customer": workflow.customer.external_id,
                "workflow": "no such workflow" if bad_every and i % bad_every == 0 else workflow.name,
                "issuing_system": system.name,
                "owner": owners[i % len(owners)].username,
                "steward": owners[(i + 1) % len(owners)].username,
                "prefix": "sk_bench_",
                "secret": f"sk_bench_{secrets.token_urlsafe(24)}",
                "fingerprint": "",
                "scopes": "read:cases;read:alerts",
                "risk_tier": ("low", "medium", "high", "critical")[i % 4],
                "issued_on": "2025-01-15",
                "expires_on": "2027-01-15",
                "next_review_on": "2026-01-15",
                "last_used_at": "2025-06-30T08:15:00Z",
                "status": "active",
                "approval_reference": f"CHG-{i}",
            }
            lines.append(",".join(values[c] for c in COLUMNS))
        return "\n".join(lines) + "\n"

    good = csv_text(ROWS)
    print(f"database: {connection.vendor} ({url.split('@')[-1]}); {ROWS:,} rows, {len(good.encode()) / 1e6:.1f} MB")

    bad = csv_text(ROWS, bad_every=1000)
    with CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        try:
            import_keys(bad, actor=actor, reason="bench (bad file)")
        except KeyImportError as exc:
            refused = len(exc.rows)
        elapsed = time.perf_counter() - started
    print(f"refused file: {refused} bad rows reported in {elapsed:.2f} s, {len(queries)} queries, nothing written")

    before = ApiKey.objects.count()
    with CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        result = import_keys(good, actor=actor, reason="bench")
        elapsed = time.perf_counter() - started
    assert ApiKey.objects.count() - before == result.count == ROWS
    print(f"imported: {result.count:,} keys in {elapsed:.2f} s = {result.count / elapsed:,.0f} rows/s, {len(queries)} queries")
    writes = sum(1 for q in queries.captured_queries if q["sql"].lstrip().upper().startswith("INSERT"))
    print(f"  of which {writes} INSERT statements (keys, history, lifecycle events, object permissions)")


if __name__ == "__main__":
    main()
