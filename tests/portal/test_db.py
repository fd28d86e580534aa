"""PostgreSQL reads timestamps with psycopg's C loader (portal.db): the same values as Django's own
loader, aware and in UTC, through the ORM and raw cursors."""

import datetime

import pytest
from django.db import connection
from django.db.backends.postgresql.psycopg_any import BaseTzLoader

from keys.models import LifecycleEvent
from tests import factories
from tests.postgres import require_postgres

pytestmark = pytest.mark.django_db

VALUES = [
    "2026-11-23 16:04:57.903938+00", "2026-11-23 16:04:57+00", "0001-01-01 00:00:00+00",
    "9999-12-31 23:59:59.999999+00", "2024-02-29 12:00:00.5+00", "2026-03-29 01:30:00+02",
    "1969-12-31 23:59:59.000001+00",
]


def test_timestamps_are_read_by_the_c_loader_and_equal_djangos():
    require_postgres()
    with connection.cursor() as cursor:
        loader = cursor.cursor.adapters.get_loader(1184, 0)  # timestamptz, text
        assert loader.__name__ == "UtcTimestamptzLoader" and loader.timezone is datetime.UTC
        assert type(loader(1184, cursor.cursor).load.__self__).__module__.startswith("psycopg_binary")
        cursor.execute("SELECT " + ", ".join(f"'{value}'::timestamptz" for value in VALUES))
        fast = cursor.fetchone()

        class DjangoLoader(BaseTzLoader):
            timezone = datetime.UTC

        cursor.cursor.adapters.register_loader("timestamptz", DjangoLoader)
        cursor.execute("SELECT " + ", ".join(f"'{value}'::timestamptz" for value in VALUES))
        django = cursor.fetchone()
    assert fast == django
    assert all(value.tzinfo is datetime.UTC for value in fast + django)
    assert fast[0] == datetime.datetime(2026, 11, 23, 16, 4, 57, 903938, tzinfo=datetime.UTC)
    assert fast[5] == datetime.datetime(2026, 3, 28, 23, 30, tzinfo=datetime.UTC)


def test_the_orm_reads_what_it_wrote():
    key = factories.ApiKeyFactory()
    at = datetime.datetime(2026, 11, 23, 16, 4, 57, 903938, tzinfo=datetime.UTC)
    event = LifecycleEvent.objects.create(key=key, action="attest", actor=key.owner, reason="x", at=at)
    stored = LifecycleEvent.objects.get(pk=event.pk).at
    assert stored == at and stored.tzinfo is (datetime.UTC if connection.vendor == "postgresql" else stored.tzinfo)
