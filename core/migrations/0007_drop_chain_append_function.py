"""Drop the PL/pgSQL chain append function: links are appended by ``portal.chain`` alone."""

from django.db import migrations


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP FUNCTION IF EXISTS portal_chain_append(text[], bigint[], bytea[], timestamptz);")


class Migration(migrations.Migration):
    dependencies = [("portal", "0006_access_records_without_token_keys")]

    operations = [migrations.RunPython(drop, migrations.RunPython.noop, elidable=True)]
