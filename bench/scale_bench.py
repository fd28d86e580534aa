"""A million keys: every list page, dashboard, campaign page and report preparation, timed on PostgreSQL.

    python bench/scale_bench.py                      # 1,000,000 keys, 10,000,000 history records
    python bench/scale_bench.py --keys 20000         # everything scaled down (history stays 10 per key)
    python bench/scale_bench.py --rebuild --runs 10

Builds (or reuses, when the sizes match) the database keys_portal_bench_scale unless DATABASE_URL names
another: KEYS keys over KEYS/1,000 customers (at least 10) and five workflows each, 1,000 owners (one of
them with 500 keys spread through the table), every owner's object permissions on their keys, ten history
records per key (3 historical key records and 7 lifecycle events), a campaign over a tenth of the keys
launched through the service with half its items confirmed, exceptions, revocation requests, exposures and
usage days. Rows are written set-based (INSERT ... SELECT generate_series) in the shape the services write
them; fingerprints are SHA-256 of a counter, shaped like the real ones and derived from no secret.

The bulk history is not sealed into the evidence chain (sealing is a sequential hash, one record at a time):
no page measured here reads the chain; an export's chain check and ``verify_history`` would report those
records as unsealed. The campaign's own history records are sealed by the launch, as in production.

Then, signed in through Django's test client as compliance, as the owner with 500 keys and as an admin,
it GETs every list page and list API of the URL conf (with common filters, sorts and a deep page: the page
half-way through, reached by the cursor a "Next" link would carry), the dashboard, the inbox, the campaign
page and API, a key page, and prepares a customer report; each RUNS times after a warm-up (3 times when the
warm-up took over 1 s). It prints one table (page, role,
queries, p50, p95, time in SQL) with the issue's targets (p95 < 200 ms; dashboards < 300 ms), the plan of the slowest
pages' slowest query, and anchors measured in the same run: a ``SELECT count(*)`` of the keys, a campaign
launch over as many keys as the campaign and a usage ingest of 20,000 events through the API (both rolled back),
each beside COPY of the same rows it wrote, part by part (``bench/_copy_floor.py``).
"""

import argparse
import gc
import logging
import math
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _setup import setup_django  # noqa: E402

DB_NAME = "keys_portal_bench_scale"
RECORDS_PER_KEY = 3  # historical key records
EVENTS_PER_KEY = 7  # lifecycle events
HEAVY_KEYS = 500
OWNERS = 1000
CHUNK = 200_000
TARGET_MS = 200
DASHBOARD_TARGET_MS = 300


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=7, help="timed requests per page (after one warm-up)")
    parser.add_argument("--rebuild", action="store_true", help="build afresh even if the sizes match")
    parser.add_argument("--explain", type=int, default=4, help="EXPLAIN ANALYZE the slowest query of this many pages")
    parser.add_argument("--only", default="",
                        help="measure only pages whose path contains this (=PATH: whose path is PATH, e.g. =/)")
    return parser.parse_args()


def sizes(keys: int) -> dict:
    customers = max(10, keys // 1000)
    return {"keys": keys, "customers": customers, "workflows": customers * 5, "owners": OWNERS,
            "history": keys * (RECORDS_PER_KEY + EVENTS_PER_KEY), "campaign": keys // 10}


def built_sizes() -> dict | None:
    """The sizes recorded by the last complete build of the bench database, if there is one."""
    import psycopg

    url = os.environ.get("DATABASE_URL") or f"postgres://postgres@127.0.0.1:5432/{DB_NAME}"
    try:
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT keys, customers, workflows, owners, history, campaign FROM bench_scale_built").fetchone()
    except psycopg.Error:
        return None
    return dict(zip(("keys", "customers", "workflows", "owners", "history", "campaign"), row, strict=True)) if row else None


def main() -> None:
    args = parse_args()
    want = sizes(args.keys)
    reuse = not args.rebuild and built_sizes() == want
    os.environ.setdefault("DATABASE_URL", f"postgres://postgres@127.0.0.1:5432/{DB_NAME}")
    setup_django(DB_NAME, keep=reuse)
    logging.disable(logging.WARNING)  # a log line per request (and per refusal) would drown the table
    from django.conf import settings

    from portal.celery import app

    # Notifications are published to an in-memory broker, as they would go to Redis in production.
    app.conf.task_always_eager = False
    # Not setup_test_environment(): its template instrumentation would be timed with the page.
    settings.ALLOWED_HOSTS = ["testserver"]
    if reuse:
        print(f"reusing the database built for {want['keys']:,} keys", flush=True)
    else:
        started = time.perf_counter()
        build(want)
        print(f"built in {time.perf_counter() - started:.0f} s", flush=True)
    started = time.perf_counter()
    measure(args, want)
    print(f"\nmeasured in {time.perf_counter() - started:.0f} s")


# Building -------------------------------------------------------------------------------------------

def run(sql: str, params=(), *, note: str = "") -> int:
    from django.db import connection

    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        count = cursor.rowcount
    if note:
        print(f"  {note}: {count:,} rows in {time.perf_counter() - started:.1f} s", flush=True)
    return count


def chunks(total: int):
    for start in range(0, total, CHUNK):
        yield start, min(total, start + CHUNK) - 1


def history_columns(model) -> str:
    """The tracked columns of ``model``'s history table, as a launch's INSERT ... SELECT names them."""
    from django.db import connection

    history_model = model.history.model
    tracked = [f.column for f in history_model._meta.concrete_fields if not f.name.startswith("history_")]
    return ", ".join(connection.ops.quote_name(c) for c in tracked)


def build(want: dict) -> None:
    from django.contrib.auth.models import Group, Permission
    from django.db import connection
    from django.utils import timezone

    from attestations.models import AttestationItem, Campaign
    from attestations.services import campaigns
    from core import roles
    from keys.models import ApiKey, Customer, IssuingSystem
    from keys.services.lifecycle import OWNER_PERMISSIONS
    from tests.factories import AdminFactory, ComplianceFactory, OwnerFactory

    n, n_customers, n_workflows = want["keys"], want["customers"], want["workflows"]
    print(f"building: {n:,} keys, {n_customers:,} customers, {n_workflows:,} workflows, {OWNERS:,} owners, "
          f"{want['history']:,} history records", flush=True)
    compliance = ComplianceFactory(username="scale-compliance")
    AdminFactory(username="scale-admin")
    heavy = OwnerFactory(username="scale-owner-heavy")
    systems = [IssuingSystem.objects.create(name=f"Gateway {i}") for i in range(5)]
    owner_group = Group.objects.get(name=roles.OWNER)
    today = timezone.localdate()

    run("INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email, is_staff, is_active, "
        "date_joined) SELECT '!', false, 'scale-owner-' || lpad(i::text, 4, '0'), 'Owner', i::text, "
        "'scale-owner-' || i || '@example.test', false, true, now() FROM generate_series(1, %s::int) i",
        [OWNERS - 1], note="owners")
    run("INSERT INTO auth_user_groups (user_id, group_id) SELECT id, %s FROM auth_user "
        "WHERE username LIKE 'scale-owner-%%' AND id <> %s", [owner_group.pk, heavy.pk])
    # Owner n (0-based) is the n-th generated owner; -1 is the owner with 500 keys.
    run("CREATE TABLE bench_owner AS SELECT row_number() OVER (ORDER BY id) - 1 AS n, id FROM auth_user "
        "WHERE username LIKE 'scale-owner-0%%' UNION ALL SELECT -1, %s", [heavy.pk])
    run("INSERT INTO keys_ownerprofile (user_id, manager_id, department, is_active) "
        "SELECT o.id, m.id, 'Department ' || (o.n / 50), true FROM bench_owner o "
        "LEFT JOIN bench_owner m ON m.n = (o.n / 50) * 50 AND m.n <> o.n", note="owner profiles")
    run("INSERT INTO keys_customer (created_at, name, external_id, contract_status, contract_end) "
        "SELECT now(), 'Customer ' || lpad(i::text, 5, '0'), 'CRM-' || lpad(i::text, 6, '0'), "
        "CASE WHEN i %% 40 = 39 THEN 'ending' ELSE 'active' END, "
        "CASE WHEN i %% 40 = 39 THEN %s::date + 60 END FROM generate_series(0, %s::int) i",
        [today, n_customers - 1], note="customers")
    run("CREATE TABLE bench_customer AS SELECT row_number() OVER (ORDER BY id) - 1 AS n, id FROM keys_customer")
    run("INSERT INTO keys_workflow (customer_id, name, purpose, data_scope, environment, business_owner_id, "
        "technical_steward_id, status, decommissioned_on, created_at) "
        "SELECT c.id, 'Integration ' || (w %% 5), 'Nightly export of screening results', 'screening results', "
        "(ARRAY['production', 'production', 'staging', 'development', 'production'])[w %% 5 + 1], o.id, s.id, "
        "CASE WHEN w %% 50 = 49 THEN 'decommissioned' ELSE 'active' END, "
        "CASE WHEN w %% 50 = 49 THEN %s::date - 30 END, now() "
        "FROM generate_series(0, %s::int) w JOIN bench_customer c ON c.n = w / 5 "
        "JOIN bench_owner o ON o.n = w %% %s JOIN bench_owner s ON s.n = (w + 7) %% %s ORDER BY w",
        [today, n_workflows - 1, OWNERS - 1, OWNERS - 1], note="workflows")
    run("CREATE TABLE bench_workflow AS SELECT row_number() OVER (ORDER BY id) - 1 AS n, id FROM keys_workflow")

    every = n // HEAVY_KEYS
    system_ids = "ARRAY[" + ", ".join(str(s.pk) for s in systems) + "]"
    started = time.perf_counter()
    for lo, hi in chunks(n):
        # Status by a draw spread evenly over customers and owners: 85% active, 5% suspended, 5% revoked,
        # 3% expired, 2% pending (not yet approved).
        run(f"""
            INSERT INTO keys_apikey (workflow_id, issuing_system_id, label, prefix, fingerprint, pepper_version, scopes,
                owner_id, steward_id, approved_by_id, approved_at, approval_reference, issued_on, expires_on,
                next_review_on, last_used_at, last_rotated_at, last_attested_at, risk_tier, status, status_changed_at,
                revocation_reason, rotation_required, orphaned, stale, unattested, revocation_state, created_at,
                updated_at)
            SELECT w.id, ({system_ids})[i % 5 + 1], 'Key ' || lpad(i::text, 7, '0'),
                'sk_live_' || lpad(to_hex(i), 8, '0'), encode(sha256(('scale-bench-key-' || i)::bytea), 'hex'), 1,
                '["read:cases", "write:reports"]'::jsonb, o.id, s.id,
                CASE WHEN st.status <> 'pending' THEN %(approver)s END,
                CASE WHEN st.status <> 'pending' THEN issued + time '09:00' END,
                CASE WHEN st.status <> 'pending' THEN 'CHG-' || i ELSE '' END,
                issued, issued + 730, %(today)s::date + (i % 180) - 30,
                CASE WHEN i % 13 <> 0 THEN now() - make_interval(days => i % 200, secs => i % 86400) END,
                CASE WHEN i % 3 = 0 THEN issued + time '10:00' + make_interval(days => i % 300) END,
                NULL,
                (ARRAY['low', 'low', 'low', 'low', 'medium', 'medium', 'medium', 'medium', 'high', 'critical'])[(i / 7) % 10 + 1],
                st.status, issued + time '09:00' + make_interval(days => i % 90),
                CASE WHEN st.status = 'revoked' THEN 'manual' ELSE '' END, false, false, i % 13 = 0 AND i % 2 = 0,
                false, CASE WHEN st.status = 'revoked' THEN 'confirmed' ELSE '' END,
                issued + time '08:00', now()
            FROM generate_series(%(lo)s::int, %(hi)s::int) i
            CROSS JOIN LATERAL (SELECT (i / %(workflows)s + i) % 100 AS draw) d
            CROSS JOIN LATERAL (SELECT %(today)s::date - 60 - (i % 700) AS issued,
                CASE WHEN d.draw < 85 THEN 'active' WHEN d.draw < 90 THEN 'suspended'
                     WHEN d.draw < 95 THEN 'revoked' WHEN d.draw < 98 THEN 'expired' ELSE 'pending' END AS status) st
            JOIN bench_workflow w ON w.n = i % %(workflows)s
            JOIN bench_owner o ON o.n = CASE WHEN i % %(every)s = 0 AND i / %(every)s < %(heavy)s THEN -1
                                             ELSE i % %(owners)s END
            LEFT JOIN bench_owner s ON i % 10 = 3 AND s.n = (i + 1) % %(owners)s
            ORDER BY i
        """.replace("%", "%%").replace("%%(", "%("),
            {"approver": compliance.pk, "today": today, "lo": lo, "hi": hi, "workflows": n_workflows,
             "every": every, "heavy": HEAVY_KEYS, "owners": OWNERS - 1})
        print(f"  keys: {hi + 1:,} ({time.perf_counter() - started:.0f} s)", flush=True)

    perms = list(Permission.objects.filter(content_type__app_label="keys", codename__in=OWNER_PERMISSIONS)
                 .values_list("pk", flat=True))
    run("INSERT INTO keys_apikeyuserobjectpermission (permission_id, user_id, content_object_id) "
        "SELECT p, k.owner_id, k.id FROM keys_apikey k CROSS JOIN unnest(%s::int[]) p", [perms],
        note="owners' object permissions")
    # The owner with 500 keys is also a delegate on 20 keys of others (explicit view grants).
    view = Permission.objects.get(content_type__app_label="keys", codename="view_apikey").pk
    run("INSERT INTO keys_apikeyuserobjectpermission (permission_id, user_id, content_object_id) "
        "SELECT %s, %s, id FROM keys_apikey WHERE owner_id <> %s ORDER BY id DESC LIMIT 20", [view, heavy.pk, heavy.pk])

    key_columns = history_columns(ApiKey)
    first_key = ApiKey.objects.order_by("pk").values_list("pk", flat=True).first()
    started = time.perf_counter()
    for lo, hi in chunks(n):
        run(f"INSERT INTO keys_historicalapikey ({key_columns}, history_date, history_change_reason, history_type, "
            f"history_user_id) SELECT {key_columns}, created_at + make_interval(days => g - 1), "
            f"(ARRAY['registered', 'approved', 'rotated'])[g], CASE WHEN g = 1 THEN '+' ELSE '~' END, %s "
            f"FROM keys_apikey CROSS JOIN generate_series(1, %s::int) g WHERE id BETWEEN %s AND %s",
            [compliance.pk, RECORDS_PER_KEY, first_key + lo, first_key + hi])
        actions = "ARRAY['register', 'approve', 'rotate', 'attest', 'flag_stale', 'clear_stale', 'rotate']"
        run(f"INSERT INTO keys_lifecycleevent (key_id, action, from_status, to_status, actor_id, reason, details, at) "
            f"SELECT k.id, ({actions})[g], CASE WHEN g = 1 THEN '' WHEN g = 2 THEN 'pending' ELSE 'active' END, "
            f"CASE WHEN g = 1 THEN 'pending' ELSE 'active' END, CASE WHEN g IN (2, 4) THEN %s ELSE k.owner_id END, "
            f"'Recorded by the service', '{{}}'::jsonb, k.created_at + make_interval(days => (g - 1) * 30) "
            f"FROM keys_apikey k CROSS JOIN generate_series(1, %s::int) g WHERE k.id BETWEEN %s AND %s",
            [compliance.pk, EVENTS_PER_KEY, first_key + lo, first_key + hi])
        print(f"  history: {(hi + 1) * (RECORDS_PER_KEY + EVENTS_PER_KEY):,} records "
              f"({time.perf_counter() - started:.0f} s)", flush=True)

    # Exceptions on 1% of the live keys, revocation requests for every revoked key, exposures, usage days.
    run("INSERT INTO keys_keyexception (key_id, kind, status, business_justification, blast_radius, replaceability, "
        "compensating_controls, other_controls, migration_target, migration_plan, end_date, risk_acceptance, "
        "review_date, requested_by_id, requested_at, decided_by_id, decided_at, decision_reason) "
        "SELECT id, CASE WHEN id % 2 = 0 THEN 'transitional' ELSE 'permanent' END, "
        "(ARRAY['requested', 'approved', 'approved', 'rejected'])[id % 4 + 1], 'Legacy batch integration', 'medium', "
        "'with_effort', '[\"ip_allowlist\"]'::jsonb, '', '', '', CASE WHEN id % 2 = 0 THEN %s::date + 90 END, "
        "CASE WHEN id % 2 = 1 THEN 'Accepted by the risk committee' ELSE '' END, "
        "CASE WHEN id % 2 = 1 THEN %s::date + 180 END, owner_id, now() - interval '20 days', "
        "CASE WHEN id % 4 <> 0 THEN %s END, CASE WHEN id % 4 <> 0 THEN now() - interval '19 days' END, "
        "CASE WHEN id % 4 <> 0 THEN 'Reviewed' ELSE '' END "
        "FROM keys_apikey WHERE status = 'active' AND id % 100 = 7".replace("%", "%%").replace("%%s", "%s"),
        [today, today, compliance.pk], note="exceptions")
    run("INSERT INTO keys_revocationrequest (key_id, issuing_system_id, reason_code, reason, requested_by_id, "
        "requested_at, emergency, status, attempts, last_error, issuer_reference, confirmed_by_id, confirmed_at) "
        "SELECT id, issuing_system_id, 'manual', 'No longer needed', %s, status_changed_at, false, 'confirmed', 1, '', "
        "'REV-' || id, %s, status_changed_at + interval '1 hour' FROM keys_apikey WHERE status = 'revoked'",
        [compliance.pk, compliance.pk], note="revocation requests")
    run("INSERT INTO keys_exposure (key_id, fingerprint, location, notes, source, reported_by_id, reported_at) "
        "SELECT id, fingerprint, 'https://paste.example.test/' || id, '', 'portal', %s, now() - interval '3 days' "
        "FROM keys_apikey WHERE id %% 1000 = 11", [compliance.pk], note="exposures")
    run("INSERT INTO keys_usagedaily (key_id, day, count, first_seen, last_seen, sources) "
        "SELECT k.id, %s::date - d, 10 + k.id %% 90, (%s::date - d) + time '01:00', (%s::date - d) + time '23:00', "
        "'[\"10.0.0.1\"]'::jsonb FROM keys_apikey k CROSS JOIN generate_series(0, 6) d "
        "WHERE k.status = 'active' AND k.id %% 20 = 0", [today, today, today], note="usage days")

    # The campaign: launched through the service over a tenth of the keys, half its items then confirmed.
    customers = list(Customer.objects.order_by("pk"))
    per_customer = ApiKey.objects.filter(status__in=["active", "suspended"]).count() / len(customers)
    in_scope = max(1, math.ceil(want["campaign"] / per_customer))
    campaign = campaigns.create_campaign(actor=compliance, name="Quarterly attestation", customers=customers[:in_scope])
    started = time.perf_counter()
    created = campaigns.launch_campaign(campaign, actor=compliance)
    print(f"  campaign launched through the service: {created:,} items in {time.perf_counter() - started:.1f} s")
    # A draft over as many keys: the launch the bench times (rolled back) beside COPY of the same rows.
    campaigns.create_campaign(actor=compliance, name="Launch probe", customers=customers[in_scope:2 * in_scope])
    item_columns = history_columns(AttestationItem)
    with connection.cursor() as cursor:
        cursor.execute(f"""
            WITH decided AS (
                UPDATE attestations_attestationitem i SET status = 'confirmed', decided_by_id = i.reviewer_id,
                    decided_at = c.launched_at + make_interval(hours => (1 + i.id % 200)::int), affirmed = true,
                    justification = 'Still used by the nightly export', batch_size = 1,
                    evidence = jsonb_build_object('key_status', 'active', 'last_used_at', k.last_used_at),
                    decisions = jsonb_build_array(jsonb_build_object(
                        'stage', 1, 'decision', 'confirm', 'by', u.username, 'by_id', u.id, 'as', 'reviewer',
                        'at', c.launched_at + make_interval(hours => (1 + i.id % 200)::int), 'reason', '',
                        'justification', 'Still used by the nightly export',
                        'evidence', jsonb_build_object('key_status', 'active'), 'self_review', '[]'::jsonb))
                FROM attestations_campaign c, keys_apikey k, auth_user u
                WHERE i.campaign_id = %s AND c.id = i.campaign_id AND k.id = i.key_id AND u.id = i.reviewer_id
                    AND i.id % 2 = 0
                RETURNING i.*
            )
            INSERT INTO attestations_historicalattestationitem ({item_columns}, history_date, history_change_reason,
                history_type, history_user_id)
            SELECT {item_columns}, decided_at, 'confirmed', '~', decided_by_id
            FROM decided
        """.replace("%", "%%").replace("%%s", "%s"), [campaign.pk])
        print(f"  items confirmed: {cursor.rowcount:,}", flush=True)
        cursor.execute(
            "UPDATE keys_apikey k SET last_attested_at = i.decided_at, next_review_on = i.decided_at::date + 90 "
            "FROM attestations_attestationitem i WHERE i.campaign_id = %s AND i.status = 'confirmed' AND k.id = i.key_id",
            [campaign.pk])
        cursor.execute(f"INSERT INTO keys_historicalapikey ({key_columns}, history_date, history_change_reason, "
                       f"history_type, history_user_id) SELECT {key_columns}, last_attested_at, 'attested', '~', owner_id "
                       f"FROM keys_apikey WHERE id IN (SELECT key_id FROM attestations_attestationitem "
                       f"WHERE campaign_id = %s AND status = 'confirmed')", [campaign.pk])
        for table in ("bench_owner", "bench_customer", "bench_workflow"):
            cursor.execute(f"DROP TABLE {table}")
    assert Campaign.objects.filter(pk=campaign.pk, status="active").exists()
    run("VACUUM ANALYZE")
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE bench_scale_built (keys bigint, customers int, workflows int, owners int, "
                       "history bigint, campaign int)")
        cursor.execute("INSERT INTO bench_scale_built VALUES (%s, %s, %s, %s, %s, %s)",
                       [want[k] for k in ("keys", "customers", "workflows", "owners", "history", "campaign")])


# Measuring ------------------------------------------------------------------------------------------

def list_routes() -> list[str]:
    """Every list page (``ObjectListView``) and list API route of the URL conf without path arguments."""
    from django.urls import URLResolver, get_resolver

    from core.lists import ObjectListView

    found = []

    def walk(patterns, prefix):
        for pattern in patterns:
            route = prefix + str(pattern.pattern).lstrip("^").rstrip("$")
            if isinstance(pattern, URLResolver):
                if not route.startswith("admin/"):
                    walk(pattern.url_patterns, route)
                continue
            if "<" in route or "(?P" in route or "\\" in route:
                continue
            view_class = getattr(pattern.callback, "view_class", None)
            actions = getattr(pattern.callback, "actions", None) or {}
            if (view_class and issubclass(view_class, ObjectListView)) or actions.get("get") == "list":
                found.append("/" + route)

    walk(get_resolver().url_patterns, "")
    return sorted(set(found))


class Deep:
    """A page half-way through a list: the cursor of the row ``offset`` rows in, in the list's order for the role
    (with ``query``, e.g. a sort). The cursor is found once, before timing, from the very queryset the page pages
    through (an OFFSET read); the timed requests then ask for that page as a user following "Next" would."""

    def __init__(self, offset: int, query: str = "", route: str = ""):
        self.offset, self.query, self.route = offset, query, route

    def at(self, route: str) -> "Deep":
        return Deep(self.offset, self.query, route)

    def __str__(self) -> str:
        return f"{self.route}{self.query or '?'}{'&' if self.query else ''}cursor=(row {self.offset:,})"

    def url(self, client) -> str | None:
        from core import keyset

        if self.offset < 1:
            return None
        first = client.get(self.route + self.query)
        if first.status_code != 200:
            return self.route + self.query  # refused to the role: timed (and reported) as such
        if getattr(first, "context_data", None) and "table" in first.context_data:
            rows = first.context_data["table"].data.data
        else:
            view = first.renderer_context["view"]
            rows = view.filter_queryset(view.get_queryset())
        cursor = keyset.Keyset(rows).cursor_at(self.offset)
        return f"{self.route}{self.query or '?'}{'&' if self.query else ''}cursor={cursor}"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


class Row:
    def __init__(self, page, role, status, queries=(), times=(), slowest=None, in_db=0.0, service=False):
        self.page, self.role, self.status, self.in_db = page, role, status, in_db * 1000
        self.queries, self.times, self.slowest, self.service = sorted(set(queries)), list(times), slowest, service

    @property
    def target(self) -> int:
        return DASHBOARD_TARGET_MS if self.page.split("?")[0] == "/" else TARGET_MS

    @property
    def p50(self) -> float:
        return statistics.median(self.times) * 1000

    @property
    def p95(self) -> float:
        return percentile(self.times, 0.95) * 1000

    def verdict(self) -> str:
        if self.status != 200:
            return f"HTTP {self.status}"
        if self.service:
            return "(service)"
        return "pass" if self.p95 < self.target else "FAIL"


def selected(only: str, page: str) -> bool:
    """Whether ``--only`` picks the page: its path contains the text, or is it exactly after a leading "="."""
    if only.startswith("="):
        return page == only[1:]
    return only in page


def timed(call, runs: int):
    """Run ``call`` once to warm up, then ``runs`` times (3 if the warm-up took over 1 s): times, query
    counts and the slowest query (sql, seconds) of the runs."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    # A full garbage collection over the bench's own heap (the anchors' rows, every page's results) would land
    # in some page's timing at random: collected here, between pages, untimed.
    gc.collect()
    started = time.perf_counter()
    status = call()
    if status != 200:
        if status >= 500:
            connection.close()  # a server restarted under the bench: the next page starts afresh
        return status, [], [], None, 0.0
    if time.perf_counter() - started > 1:
        runs = min(runs, 3)
    times, counts, slowest, in_db = [], [], (None, -1.0), []
    for _ in range(runs):
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            call()
            times.append(time.perf_counter() - started)
        counts.append(len(captured.captured_queries))
        in_db.append(sum(float(query["time"]) for query in captured.captured_queries))
        for query in captured.captured_queries:
            if float(query["time"]) > slowest[1]:
                slowest = (query["sql"], float(query["time"]))
    return 200, times, counts, slowest, statistics.median(in_db)


def measure(args, want: dict) -> None:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client

    from attestations.models import AttestationItem, Campaign
    from attestations.services import evidence
    from keys.models import ApiKey, Customer, RevocationRequest

    User = get_user_model()
    users = {"compliance": User.objects.get(username="scale-compliance"),
             "owner (500 keys)": User.objects.get(username="scale-owner-heavy"),
             "admin": User.objects.get(username="scale-admin")}
    campaign = Campaign.objects.get(name="Quarterly attestation")
    customer = Customer.objects.order_by("pk").first()
    owner_key = ApiKey.objects.filter(owner=users["owner (500 keys)"]).order_by("pk").first()
    print(f"\ndatabase {connection.settings_dict['NAME']}: {ApiKey.objects.count():,} keys, "
          f"{AttestationItem.objects.filter(campaign=campaign).count():,} campaign items; uptime: {load()}", flush=True)

    anchors = measure_anchors(campaign)
    anchors.update(measure_usage())
    vacuum_dead_rows()
    # What the bench holds from here on is long-lived, as a web worker's modules and settings are after start-up:
    # kept out of the collector's generations (gc.freeze), so that a collection costs what a web worker's does.
    gc.collect()
    gc.freeze()
    revocations = RevocationRequest.objects.count()
    rows = []
    routes = list_routes()
    print(f"list routes found in the URL conf: {len(routes)}", flush=True)
    for role, user in users.items():
        client = Client(raise_request_exception=False)
        client.force_login(user)
        keys_seen = ApiKey.objects.visible_to(user).count()
        items_seen = AttestationItem.objects.visible_to(user).count()
        # A customer whose keys the role sees (the filter offers no other).
        shown = (ApiKey.objects.visible_to(user).order_by("pk").values_list("workflow__customer", flat=True).first()
                 or customer.pk)
        extra = {
            "/keys/": ["?status=active", f"?customer={shown}", "?risk_tier=high&sort=-expires_on",
                       "?q=sk_live_000a", "?sort=owner", Deep(keys_seen // 2), Deep(keys_seen // 2, "?sort=-expires_on")],
            "/api/v1/keys/": ["?status=active", f"?customer={shown}", Deep(keys_seen // 2)],
            "/api/v1/attestations/": ["?status=pending", Deep(items_seen // 2)],
            "/api/v1/workflows/": [f"?customer={shown}"],
            "/keys/revocations/": [Deep(revocations // 2, "?state=")],
            "/keys/exceptions/": ["?status=approved"],
        }
        pages = ["/", "/inbox/", "/inbox/?status=pending", f"/campaigns/{campaign.pk}/",
                 f"/api/v1/campaigns/{campaign.pk}/", f"/keys/{owner_key.pk}/"]
        for route in routes:
            pages.append(route)
            pages.extend(query.at(route) if isinstance(query, Deep) else route + query for query in extra.get(route, []))
        for page in pages:
            if not selected(args.only, str(page)):
                continue
            if isinstance(page, Deep):
                url = page.url(client)
                if url is None:
                    continue
            else:
                url = page

            def get(url=url, client=client):
                return client.get(url).status_code

            status, times, counts, slowest, in_db = timed(get, args.runs)
            row = Row(str(page), role, status, counts, times, slowest, in_db)
            rows.append(row)
            if status == 200:
                print(f"  {row.page:<45} {role:<17} {'/'.join(map(str, row.queries)):>5} q  p50 {row.p50:8.1f}  "
                      f"p95 {row.p95:8.1f} ms (SQL {row.in_db:6.1f})", flush=True)
    if not args.only or "report" in args.only:
        start, end = campaign.launched_at.date().replace(month=1, day=1), campaign.launched_at.date()
        status, times, counts, slowest, in_db = timed(
            lambda: (evidence.customer_report(customer, start, end), 200)[1], args.runs)
        rows.append(Row(f"customer report preparation ({customer.name})", "service", status, counts, times, slowest,
                        in_db, service=True))
    print_table(rows, anchors, want)
    explain_slowest(rows, args.explain)


def vacuum_dead_rows() -> None:
    """VACUUM ANALYZE every table the anchors' writes left dead rows in (the rolled-back launches, the usage
    ingest), as autovacuum would before long: PostgreSQL on a CI machine may run with autovacuum off, and
    pages would otherwise be timed over hundreds of thousands of dead rows, a different one slow each run."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW autovacuum")
        autovacuum = cursor.fetchone()[0]
        cursor.execute("SELECT relname FROM pg_stat_user_tables WHERE n_dead_tup > 0 ORDER BY relname")
        tables = [name for (name,) in cursor.fetchall()]
        started = time.perf_counter()
        for name in tables:
            cursor.execute(f"VACUUM (ANALYZE) {connection.ops.quote_name(name)}")
    print(f"autovacuum {autovacuum}: vacuumed {len(tables)} tables with dead rows in {time.perf_counter() - started:.1f} s",
          flush=True)


def load() -> str:
    with open("/proc/loadavg") as f:
        return "load average " + ", ".join(f.read().split()[:3])


# The anchors' comparisons (launch and ingest against COPY of the same rows), printed under the table.
ANCHOR_RATIOS: list[str] = []


def measure_anchors(campaign) -> dict:
    """A count of the keys, and a campaign launch over as many keys as the campaign (rolled back) beside COPY of
    the same rows it wrote, part by part (``campaign_launch_bench.launch_beside_copy``)."""
    from campaign_launch_bench import launch_beside_copy, print_launch
    from django.db import connection

    from attestations.models import Campaign
    from keys.models import ApiKey

    anchors = {}
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM keys_apikey")
    anchors["SELECT count(*) FROM keys_apikey"] = time.perf_counter() - started

    probe = Campaign.objects.get(name="Launch probe")
    result = launch_beside_copy(probe, campaign.created_by)
    print_launch(result)
    launch, floor, rows = result["seconds"], result["floor"], result["rows"]
    anchors[f"campaign launch over {result['created']:,} keys (items, history, sealing; rolled back)"] = launch
    anchors[f"... of which in {result['clock'].count} SQL statements"] = result["clock"].seconds
    for name, seconds in floor.items():
        if name != "total":
            anchors[f"... launch floor: {name}" + (f", {rows[name]:,} rows" if name in rows else "")] = seconds
    anchors["COPY of the same rows as the launch, in all (median of 3, rolled back)"] = floor["total"]
    ANCHOR_RATIOS.append(f"launch / COPY of the same rows: {launch / floor['total']:.1f}x (target: within 10x); "
                         f"launch / COPY of its items alone: {launch / floor['items (COPY)']:.1f}x")
    assert ApiKey.objects.exists()
    return anchors


def measure_usage(count: int = 20_000) -> dict:
    """``count`` usage events POSTed through the API in batches (rolled back) beside COPY of the same rows the
    ingest wrote (``usage_bench.ingest_beside_copy``)."""
    from django.utils import timezone
    from usage_bench import ingest_beside_copy, make_events, print_ingest

    from keys.models import ApiKey, IssuingSystem
    from tests.integration_tokens import make_token

    system = IssuingSystem.objects.order_by("pk").first()
    keys = list(ApiKey.objects.filter(issuing_system=system, status="active").order_by("pk")
                .values_list("pk", "prefix", "fingerprint")[:10_000])
    _, plaintext = make_token(issuing_system=system, name="Scale bench gateway sync")
    now = timezone.now()
    events = make_events(keys, count, now, prefix=f"scale-{now:%Y%m%d%H%M%S}")
    result = ingest_beside_copy(keys, events, plaintext)
    print_ingest(result)
    seconds, floor = result["seconds"], result["floor"]
    anchors = {
        f"usage ingest through the API, {count:,} events ({count / seconds:,.0f} events/s; rolled back)": seconds,
        "... of which in usage.ingest_usage": result["service"],
        f"... of which in {result['clock'].count} SQL statements": result["clock"].seconds,
    }
    for name, spent in floor.items():
        if name != "total":
            anchors[f"... ingest floor: {name}"] = spent
    anchors["COPY of the same rows as the ingest, in all (median of 3, rolled back)"] = floor["total"]
    ANCHOR_RATIOS.append(f"usage ingest / COPY of the same rows: {seconds / floor['total']:.1f}x through the API, "
                         f"{result['service'] / floor['total']:.1f}x in the service (target: within 3x)")
    return anchors


def print_table(rows, anchors, want) -> None:
    print(f"\n## {want['keys']:,} keys, {want['history']:,} history records, campaign of about "
          f"{want['campaign']:,} items; {load()}\n")
    print("| page | role | queries | p50 ms | p95 ms | in SQL ms (p50) | runs | target p95 |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        if row.status != 200:
            print(f"| `{row.page}` | {row.role} | | | | | | {row.verdict()} |")
            continue
        target = "" if row.service else f"< {row.target} ms: "
        print(f"| `{row.page}` | {row.role} | {'/'.join(map(str, row.queries))} | {row.p50:,.1f} | {row.p95:,.1f} | "
              f"{row.in_db:,.1f} | {len(row.times)} | {target}{row.verdict()} |")
    print("\n| anchor (same run) | ms |")
    print("|---|---|")
    for name, seconds in anchors.items():
        print(f"| {name} | {seconds * 1000:,.1f} |")
    print()
    for line in ANCHOR_RATIOS:
        print(line)
    measured = [r for r in rows if r.status == 200 and not r.service]
    failing = [r for r in measured if r.verdict() == "FAIL"]
    print(f"pages: {len(measured)} measured, {len(failing)} over target, "
          f"{sum(r.status != 200 for r in rows)} refused to the role (not timed)")


def explain_slowest(rows, count: int) -> None:
    from django.db import connection

    slow = sorted((r for r in rows if r.status == 200 and r.slowest and r.slowest[0]), key=lambda r: -r.p95)
    seen = set()
    for row in slow:
        if len(seen) >= count:
            break
        sql = row.slowest[0]
        if sql in seen:
            continue
        seen.add(sql)
        print(f"\n### {row.page} ({row.role}), p95 {row.p95:,.0f} ms; its slowest query "
              f"({row.slowest[1] * 1000:,.0f} ms):\n{' '.join(sql.split())[:600]}")
        try:
            with connection.cursor() as cursor:
                cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql.replace("%", "%%"))
                plan = [line for (line,) in cursor.fetchall()]
        except Exception as error:  # noqa: BLE001 - a plan the bench cannot show is reported, not fatal
            print(f"(no plan: {error})")
            continue
        print("\n".join(plan[:40]))


if __name__ == "__main__":
    main()
