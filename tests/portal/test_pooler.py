"""PgBouncer in transaction mode (``DATABASE_POOLER=pgbouncer``): the switch, and the portal's reads through it.

CI runs the journeys a second time through a PgBouncer in transaction mode with the switch on (``.ci/run``);
there the tests below also check that the connection really goes through it.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from django.conf import settings
from django.db import connection, transaction

from keys.models import ApiKey
from tests import factories
from tests.postgres import require_postgres

ROOT = Path(__file__).resolve().parents[2]
POOLED = os.environ.get("DATABASE_POOLER", "").strip().lower() == "pgbouncer"


def database_settings(**environment) -> subprocess.CompletedProcess:
    code = "import json, portal.settings as s; print(json.dumps(s.DATABASES['default'], default=str))"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, **environment},
                          capture_output=True, text=True, timeout=60)


def test_the_switch_turns_off_prepared_statements_and_server_side_cursors():
    pooled = database_settings(DATABASE_URL="postgres://portal@127.0.0.1:6432/keys_portal", DATABASE_POOLER="pgbouncer",
                               DB_PREPARE_THRESHOLD="5")
    assert pooled.returncode == 0, pooled.stderr
    database = json.loads(pooled.stdout)
    assert database["DISABLE_SERVER_SIDE_CURSORS"] is True
    assert database["OPTIONS"]["prepare_threshold"] is None and database["PORT"] == 6432
    direct = json.loads(database_settings(DATABASE_URL="postgres://portal@127.0.0.1:5432/keys_portal",
                                          DATABASE_POOLER="").stdout)
    assert direct["OPTIONS"]["prepare_threshold"] == 5 and not direct.get("DISABLE_SERVER_SIDE_CURSORS")


@pytest.mark.parametrize("environment, message", [
    ({"DATABASE_POOLER": "pgpool"}, "DATABASE_POOLER is 'none' or 'pgbouncer'"),
    ({"DATABASE_POOLER": "pgbouncer", "DATABASE_URL": ""}, "needs a PostgreSQL DATABASE_URL"),
])
def test_a_bad_pooler_setting_stops_the_start(environment, message):
    result = database_settings(**environment)
    assert result.returncode != 0 and message in result.stderr


@pytest.fixture
def pooled():
    require_postgres()
    if not POOLED:
        pytest.skip("runs through PgBouncer (DATABASE_POOLER=pgbouncer), as the second pass of .ci/run does")


def connect(dbname: str):
    database = settings.DATABASES["default"]
    return psycopg.connect(host=database["HOST"], port=database["PORT"], user=database["USER"], dbname=dbname,
                           autocommit=True, prepare_threshold=None)


def pgbouncer_pools() -> list[dict]:
    """PgBouncer's own view of its pools, from its admin console."""
    with connect("pgbouncer") as admin:
        cursor = admin.execute("SHOW POOLS")
        names = [column.name for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


@pytest.mark.postgres
def test_the_connection_goes_through_pgbouncer_in_transaction_mode(pooled, db):
    connection.ensure_connection()
    assert connection.connection.prepare_threshold is None
    assert connection.settings_dict["DISABLE_SERVER_SIDE_CURSORS"] is True
    pools = [pool for pool in pgbouncer_pools() if pool["database"] == connection.settings_dict["NAME"]]
    assert pools and {pool["pool_mode"] for pool in pools} == {"transaction"}


@pytest.mark.postgres
def test_repeated_statements_and_iterators_outside_a_transaction(pooled, transactional_db):
    """Statements run again and again (psycopg would prepare them) and a chunked ``.iterator()`` read outside any
    transaction (a server-side cursor WITH HOLD) both work while each transaction gets another server connection:
    another client takes, in a transaction, the server connection the portal's last statement ran on."""
    keys = [factories.ApiKeyFactory() for _ in range(12)]
    assert transaction.get_autocommit()
    backends = set()
    with connect(connection.settings_dict["NAME"]) as other:
        for _ in range(12):
            with other.transaction():
                other.execute("SELECT 1")
                assert ApiKey.objects.filter(pk=keys[0].pk).values_list("label", flat=True).get() == keys[0].label
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_backend_pid()")
                    backends.add(cursor.fetchone()[0])
        seen = []
        for pk in ApiKey.objects.order_by("pk").values_list("pk", flat=True).iterator(chunk_size=5):
            seen.append(pk)
            with other.transaction():
                other.execute("SELECT 1")
                ApiKey.objects.filter(pk=pk).exists()
    assert seen == sorted(key.pk for key in keys)
    assert len(backends) > 1  # the portal's statements did run on more than one server connection
