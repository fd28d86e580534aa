"""Trigram indexes for the key search (``label`` or ``prefix`` containing the text, in any case), on PostgreSQL.

Django writes ``icontains`` as ``UPPER(column::text) LIKE UPPER('%text%')``: the indexes are on ``UPPER(...)``
with pg_trgm's operator class so that such a search reads the index instead of every key. SQLite has neither
pg_trgm nor GIN: there the migration does nothing (its searches stay scans of a small table).
"""

from django.contrib.postgres.operations import TrigramExtension
from django.db import migrations

INDEXES = {
    "keys_apikey_label_trgm": "label",
    "keys_apikey_prefix_trgm": "prefix",
}


def add_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, column in INDEXES.items():
        schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {name} ON keys_apikey USING gin (UPPER({column}) gin_trgm_ops)")


def remove_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [
        ("keys", "0013_key_rotation_due_index"),
    ]

    operations = [
        TrigramExtension(),  # does nothing on other databases
        migrations.RunPython(add_indexes, remove_indexes, elidable=False),
    ]
