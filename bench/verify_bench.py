"""``verify_history`` over ten million sealed history records: records per second and peak memory.

    python bench/verify_bench.py                       # 1,000,000 and 10,000,000 records
    python bench/verify_bench.py --records 100000      # 10,000 and 100,000 records: under a minute
    python bench/verify_bench.py --rebuild             # build the databases afresh
    python bench/verify_bench.py --manage /tmp/before/manage.py   # time another checkout's command

For RECORDS (default 10,000,000) and a tenth of it, one database each: keys_portal_bench_verify for RECORDS
(or the one DATABASE_URL names), keys_portal_bench_verify_<n> for the smaller size. A database is kept
and reused when the size it was built for matches (``--rebuild`` builds afresh). The build writes, in the
shapes the services write them, RECORDS/10 keys and ten history records per key (three historical key
records and seven lifecycle events) set-based (INSERT ... SELECT generate_series), then seals them: it
streams the rows back in id order, computes each link with ``core.chain``'s public functions
(``current_layout``, ``Layout.payload``, ``chained_digest``) and COPYs the links, so the chain verifies as if
the application had sealed it. The chain order follows production: a bulk import per 5,000 keys (their
first history records, then their import events) and then each key's single saves (approval and rotation:
a history record and an event each; four more events).

Then, for each size, in one run:

- the anchor: PostgreSQL reading what the check reads, ``COPY (SELECT ...) TO STDOUT`` of the links and of
  the rows' covered columns, through psycopg in this process;
- ``manage.py verify_history`` in a child process (the full walk; an intact walk leaves a checkpoint);
- a small change through the services (50 keys suspended: 100 records) and ``verify_history
  --since-checkpoint`` in a child process.

Each prints wall time, records/s and the child's peak RSS (``wait4``'s ``ru_maxrss``): flat memory means
the same peak at both sizes. Goal: at least 50,000 records/s for the full walk. Run under ``nice -n 10``.
"""

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _setup import ROOT, setup_django  # noqa: E402

DB_NAME = "keys_portal_bench_verify"
RECORDS_PER_KEY = 3  # historical key records: registered, approved, rotated
EVENTS_PER_KEY = 7  # lifecycle events
KEY_CHUNK = 5000  # keys per bulk import (and per sealing batch of the build)
SQL_CHUNK = 100_000  # keys per INSERT ... SELECT
TARGET = 50_000  # records/s
CHANGED_KEYS = 50


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=10_000_000, help="history records of the largest size")
    parser.add_argument("--rebuild", action="store_true", help="build afresh even if the sizes match")
    parser.add_argument("--manage", default=str(ROOT / "manage.py"), help="the manage.py whose verify_history is timed")
    parser.add_argument("--chunk-size", type=int, default=None, help="verify_history --chunk-size (default: its own)")
    parser.add_argument("--only-size", type=int, default=None, help="measure only this size (of the two)")
    parser.add_argument("--workers", default="", help="verify_history --workers for the full walk, e.g. 1,2 (one run "
                                                     "each; default: the command's own default, one per CPU)")
    return parser.parse_args()


def database_url(records: int, largest: int) -> str:
    base = os.environ.get("DATABASE_URL") or f"postgres://postgres@127.0.0.1:5432/{DB_NAME}"
    return base if records == largest else f"{base}_{records}"


def built_records(url: str) -> int | None:
    import psycopg

    try:
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT records FROM bench_verify_built").fetchone()
    except psycopg.Error:
        return None
    return row[0] if row else None


def main() -> None:
    args = parse_args()
    sizes = [args.records // 10, args.records]
    if args.only_size:
        sizes = [s for s in sizes if s == args.only_size]
    urls = {size: database_url(size, args.records) for size in sizes}
    ready = {size: not args.rebuild and built_records(urls[size]) == size for size in sizes}
    # Each size is built in a child process of its own: one Django set-up per database.
    for size in sizes:
        if ready[size]:
            print(f"reusing {urls[size].rsplit('/', 1)[1]} ({size:,} records)", flush=True)
        else:
            env = {**os.environ, "DATABASE_URL": urls[size]}
            subprocess.run([sys.executable, __file__, "--build", str(size)], env=env, check=True)
    results = []
    for size in sizes:
        env = {**os.environ, "DATABASE_URL": urls[size]}
        results.append((size, measure(size, args, env)))
    print(f"\nverify_history ({args.manage}), goal >= {TARGET:,} records/s with flat memory:")
    print(f"{'records':>12} | {'anchor COPY':>16} | {'full walk':>26} | {'since checkpoint':>28}")
    for size, m in results:
        print(f"{size:>12,} | {m['anchor_rate']:>11,.0f} rec/s | {m['full_rate']:>9,.0f} rec/s {m['full_rss']:>7.0f} MiB "
              f"{m['full_s']:>6.1f} s | {m['since_checked']:>5} rec {m['since_s']:>6.2f} s {m['since_rss']:>6.0f} MiB")
    if len(results) == 2:
        (_, small), (_, large) = results
        print(f"10x records: full walk time x{large['full_s'] / small['full_s']:.1f}, peak RSS "
              f"{small['full_rss']:.0f} -> {large['full_rss']:.0f} MiB; full walk at "
              f"{large['full_rate'] / large['anchor_rate']:.2f} of the anchor's rate")


# Building -------------------------------------------------------------------------------------------

def build(records: int) -> None:
    """Runs in its own process (``--build N``) with DATABASE_URL naming the database to build."""
    setup_django(DB_NAME)
    from django.db import connection
    from django.utils import timezone

    from keys.models import ApiKey, LifecycleEvent
    from tests import factories

    keys = records // (RECORDS_PER_KEY + EVENTS_PER_KEY)
    started = time.perf_counter()
    print(f"building {records:,} records ({keys:,} keys) in {connection.settings_dict['NAME']}", flush=True)
    compliance = factories.ComplianceFactory(username="verify-compliance")
    owners = [factories.OwnerFactory(username=f"verify-owner-{i}") for i in range(20)]
    workflows = [factories.WorkflowFactory() for _ in range(10)]
    system = factories.IssuingSystemFactory(name="Gateway")
    today = timezone.localdate()
    key_history = ApiKey.history.model
    tracked = ", ".join(connection.ops.quote_name(f.column) for f in key_history._meta.concrete_fields
                        if not f.name.startswith("history_"))
    owner_ids = "ARRAY[" + ", ".join(str(o.pk) for o in owners) + "]"
    workflow_ids = "ARRAY[" + ", ".join(str(w.pk) for w in workflows) + "]"
    with connection.cursor() as cursor:
        for lo in range(0, keys, SQL_CHUNK):
            hi = min(keys, lo + SQL_CHUNK) - 1
            cursor.execute(f"""
                INSERT INTO keys_apikey (workflow_id, issuing_system_id, label, prefix, fingerprint, pepper_version,
                    scopes, owner_id, approved_by_id, approved_at, approval_reference, issued_on, expires_on,
                    next_review_on, last_used_at, last_rotated_at, risk_tier, status, status_changed_at,
                    revocation_reason, rotation_required, orphaned, stale, unattested, revocation_state, created_at,
                    updated_at)
                SELECT ({workflow_ids})[i %% 10 + 1], %(system)s, 'Key ' || lpad(i::text, 7, '0'),
                    'sk_live_' || lpad(to_hex(i), 8, '0'), encode(sha256(('verify-bench-key-' || i)::bytea), 'hex'), 1,
                    '["read:cases", "write:reports"]'::jsonb, ({owner_ids})[i %% 20 + 1], %(approver)s,
                    issued + time '09:00', 'CHG-' || i, issued, issued + 730, %(today)s::date + (i %% 180) - 30,
                    CASE WHEN i %% 13 <> 0 THEN now() - make_interval(days => i %% 200, secs => i %% 86400) END,
                    issued + time '10:00' + make_interval(days => i %% 300),
                    (ARRAY['low', 'medium', 'high', 'critical'])[i %% 4 + 1], 'active',
                    issued + time '09:00' + make_interval(days => i %% 90), '', false, false, false, false, '',
                    issued + time '08:00', now()
                FROM generate_series(%(lo)s::int, %(hi)s::int) i
                CROSS JOIN LATERAL (SELECT %(today)s::date - 60 - (i %% 700) AS issued) st
                ORDER BY i""", {"system": system.pk, "approver": compliance.pk, "today": today, "lo": lo, "hi": hi})
        print(f"  keys: {keys:,} ({time.perf_counter() - started:.0f} s)", flush=True)
        first_key = ApiKey.objects.order_by("pk").values_list("pk", flat=True).first()
        actions = "ARRAY['import', 'approve', 'rotate', 'attest', 'flag_stale', 'clear_stale', 'rotate']"
        # Per bulk import of KEY_CHUNK keys, each round g in id order (all keys' g-th record, then the next g).
        for lo in range(0, keys, KEY_CHUNK):
            span = (first_key + lo, first_key + min(keys, lo + KEY_CHUNK) - 1)
            cursor.execute(
                f"INSERT INTO {key_history._meta.db_table} ({tracked}, history_date, history_change_reason, "
                f"history_type, history_user_id) SELECT {tracked}, created_at + make_interval(days => g - 1), "
                f"(ARRAY['registered', 'approved', 'rotated'])[g], CASE WHEN g = 1 THEN '+' ELSE '~' END, %s "
                f"FROM keys_apikey CROSS JOIN generate_series(1, %s::int) g WHERE id BETWEEN %s AND %s ORDER BY g, id",
                [compliance.pk, RECORDS_PER_KEY, *span])
            cursor.execute(
                f"INSERT INTO keys_lifecycleevent (key_id, action, from_status, to_status, actor_id, reason, details, at) "
                f"SELECT k.id, ({actions})[g], CASE WHEN g = 1 THEN '' WHEN g = 2 THEN 'pending' ELSE 'active' END, "
                f"CASE WHEN g = 1 THEN 'pending' ELSE 'active' END, CASE WHEN g IN (2, 4) THEN %s ELSE k.owner_id END, "
                f"'Recorded by the service', jsonb_build_object('batch', g), "
                f"k.created_at + make_interval(days => (g - 1) * 30) "
                f"FROM keys_apikey k CROSS JOIN generate_series(1, %s::int) g WHERE k.id BETWEEN %s AND %s "
                f"ORDER BY g, k.id", [compliance.pk, EVENTS_PER_KEY, *span])
            if (lo // KEY_CHUNK) % 20 == 19:
                print(f"  history: {(lo + KEY_CHUNK) * 10:,} records ({time.perf_counter() - started:.0f} s)", flush=True)
    print(f"  history written ({time.perf_counter() - started:.0f} s)", flush=True)
    seal_bulk(key_history, LifecycleEvent, keys, first_key)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
        cursor.execute("CREATE TABLE bench_verify_built (records bigint)")
        cursor.execute("INSERT INTO bench_verify_built VALUES (%s)", [records])
    print(f"built in {time.perf_counter() - started:.0f} s", flush=True)


def seal_bulk(key_history, event_model, keys: int, first_key: int) -> None:
    """Link every record written above, in the order production seals them, continuing the evidence head."""
    from django.db import connection, transaction
    from django.utils import timezone

    from core import chain
    from core.models import ChainHead, ChainLink

    started = time.perf_counter()
    history_layout, event_layout = chain.current_layout(key_history), chain.current_layout(event_model)
    history_rows = key_history._base_manager.order_by("pk").values_list(*history_layout.fetched)
    event_rows = event_model._base_manager.order_by("pk").values_list(*event_layout.fetched)
    first_history = key_history._base_manager.filter(history_type="+").order_by("pk").values_list("pk", flat=True)[0]
    first_event = event_model._base_manager.filter(reason="Recorded by the service").order_by("pk").values_list(
        "pk", flat=True)[0]
    link_table = ChainLink._meta.db_table
    with transaction.atomic():
        head = ChainHead.objects.select_for_update().get(pk=chain.EVIDENCE)
        seq, digest = head.seq, head.digest
        now = timezone.now()
        done = 0
        for lo in range(0, keys, KEY_CHUNK):
            n = min(keys, lo + KEY_CHUNK) - lo
            # Round g of this import's keys: ids first + g * n + (0 .. n - 1), as the INSERTs wrote them.
            h0 = first_history + lo * RECORDS_PER_KEY
            e0 = first_event + lo * EVENTS_PER_KEY
            history = {row[0]: history_layout.payload(row) for row in
                       history_rows.filter(pk__gte=h0, pk__lt=h0 + n * RECORDS_PER_KEY)}
            events = {row[0]: event_layout.payload(row) for row in
                      event_rows.filter(pk__gte=e0, pk__lt=e0 + n * EVENTS_PER_KEY)}
            order = [(history_layout, h0 + k) for k in range(n)] + [(event_layout, e0 + k) for k in range(n)]
            for k in range(n):
                order += [(history_layout, h0 + n + k), (event_layout, e0 + n + k),
                          (history_layout, h0 + 2 * n + k), (event_layout, e0 + 2 * n + k)]
                order += [(event_layout, e0 + g * n + k) for g in range(3, EVENTS_PER_KEY)]
            # One COPY per import, after its rows are read (the connection serves one statement at a time).
            with connection.cursor() as cursor, cursor.copy(
                    f"COPY {link_table} (chain, seq, model_label, record_id, layout_id, digest, prev_digest, "
                    f"sealed_at) FROM STDIN") as copy:
                for layout, record_id in order:
                    payload = (history if layout is history_layout else events).pop(record_id)
                    seq += 1
                    prev, digest = digest, chain.chained_digest(digest, payload)
                    copy.write_row((chain.EVIDENCE, seq, layout.model_label, record_id, layout.id, digest, prev, now))
            assert not history and not events, "the build wrote other ids than it seals"
            done += n * (RECORDS_PER_KEY + EVENTS_PER_KEY)
            if (lo // KEY_CHUNK) % 20 == 19:
                print(f"  sealed {done:,} ({time.perf_counter() - started:.0f} s)", flush=True)
        ChainHead.objects.filter(pk=chain.EVIDENCE).update(seq=seq, digest=digest, updated_at=now)
    print(f"  sealed {seq:,} links ({time.perf_counter() - started:.0f} s)", flush=True)


# Measuring ------------------------------------------------------------------------------------------

def anchor(url: str) -> tuple[float, int]:
    """PostgreSQL reading what the check reads, timed in a child process: (seconds, bytes)."""
    env = {**os.environ, "DATABASE_URL": url}
    output = subprocess.run([sys.executable, __file__, "--anchor"], env=env, check=True, capture_output=True,
                            text=True).stdout
    seconds, size = output.split()[-2:]
    return float(seconds), int(size)


def read_as_copy() -> None:
    """``COPY (SELECT ...) TO STDOUT`` of the links in chain order and of every covered column of the rows."""
    setup_django(DB_NAME, keep=True)
    from django.db import connection

    from core import chain
    from core.models import ChainLink

    quote = connection.ops.quote_name
    queries = [f"SELECT chain, seq, model_label, record_id, layout_id, digest, prev_digest "
               f"FROM {ChainLink._meta.db_table} ORDER BY chain, seq"]
    for model, _ in chain.chained_models().values():
        columns = ", ".join(quote(c) for c in chain.current_layout(model).fetched)
        queries.append(f"SELECT {columns} FROM {quote(model._meta.db_table)} ORDER BY 1")
    size = 0
    started = time.perf_counter()
    with connection.cursor() as cursor:
        for query in queries:
            with cursor.copy(f"COPY ({query}) TO STDOUT") as copy:
                for block in copy:
                    size += len(block)
    print(f"{time.perf_counter() - started} {size}")


def run_command(args, env, *extra) -> tuple[float, float, str]:
    """(seconds, peak RSS in MiB, output) of ``manage.py verify_history`` in a child process."""
    command = [sys.executable, args.manage, "verify_history", *extra]
    if args.chunk_size:
        command += ["--chunk-size", str(args.chunk_size)]
    started = time.perf_counter()
    child = subprocess.Popen(command, env=env, cwd=Path(args.manage).parent, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"verify_history failed ({child.returncode}):\n{output[-3000:]}")
    return elapsed, usage.ru_maxrss / 1024, output


def checked(output: str) -> int:
    return int(re.search(r"(\d+) records checked", output).group(1))


def small_change(url: str) -> None:
    """CHANGED_KEYS keys suspended through the service (a history record and an event each)."""
    env = {**os.environ, "DATABASE_URL": url}
    subprocess.run([sys.executable, __file__, "--change"], env=env, check=True)


def change() -> None:
    setup_django(DB_NAME, keep=True)
    from django.contrib.auth import get_user_model

    from core.chain import sealed_atomic
    from keys.models import ApiKey
    from keys.services import lifecycle

    actor = get_user_model().objects.get(username="verify-compliance")
    for key in ApiKey.objects.filter(status="active").order_by("-pk")[:CHANGED_KEYS]:
        with sealed_atomic():
            lifecycle.suspend_key(key, actor=actor, reason="bench")


def measure(size: int, args, env) -> dict:
    url = env["DATABASE_URL"]
    anchor_s, anchor_bytes = anchor(url)
    print(f"{size:,} records: anchor COPY of links and rows {anchor_s:.1f} s ({anchor_bytes / 2**20:,.0f} MiB, "
          f"{size / anchor_s:,.0f} records/s)", flush=True)
    runs = []
    for workers in [w for w in args.workers.split(",") if w] or [None]:
        extra = ["--workers", workers] if workers else []
        full_s, full_rss, output = run_command(args, env, *extra)
        full_checked = checked(output)
        runs.append((full_s, full_rss, full_checked))
        print(f"{size:,} records: verify_history{' ' + ' '.join(extra) if extra else ''} {full_s:.1f} s, "
              f"{full_checked:,} records checked, {full_checked / full_s:,.0f} records/s, "
              f"peak RSS {full_rss:.0f} MiB (the largest process)", flush=True)
    full_s, full_rss, full_checked = runs[-1]
    small_change(url)
    since_s, since_rss, output = run_command(args, env, "--since-checkpoint")
    since_checked = checked(output)
    print(f"{size:,} records: verify_history --since-checkpoint after {CHANGED_KEYS} keys suspended: {since_s:.2f} s, "
          f"{since_checked:,} records checked, peak RSS {since_rss:.0f} MiB", flush=True)
    return {"anchor_rate": size / anchor_s, "full_rate": full_checked / full_s, "full_rss": full_rss,
            "full_s": full_s, "since_s": since_s, "since_rss": since_rss, "since_checked": since_checked}


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--build":
        build(int(sys.argv[2]))
    elif sys.argv[1:] == ["--change"]:
        change()
    elif sys.argv[1:] == ["--anchor"]:
        read_as_copy()
    else:
        main()
