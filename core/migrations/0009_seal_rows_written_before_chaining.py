"""Seal the lifecycle events, notifications and access records written before those tables joined the chain.

From here on each is sealed in the transaction that writes it; the rows already there are sealed once,
in id order, so that verification does not report them as written behind the application's back.
"""

from django.db import migrations

NEWLY_CHAINED = ["keys.lifecycleevent", "attestations.notification", "portal.accessrecord"]


def seal_existing_rows(apps, schema_editor):
    models = [apps.get_model(label) for label in NEWLY_CHAINED]
    if not any(model.objects.using(schema_editor.connection.alias).exists() for model in models):
        return  # a new database: nothing was written before
    from core import chain

    using = schema_editor.connection.alias
    for model in models:
        ids = list(model.objects.using(using).order_by("pk").values_list("pk", flat=True))
        for start in range(0, len(ids), chain.LINK_BATCH):
            chain.seal_ids(model, ids[start:start + chain.LINK_BATCH], using=using)


class Migration(migrations.Migration):
    dependencies = [
        ("portal", "0008_chain_layouts_checkpoints_access_chain"),
        ("keys", "0010_revocation_attempt_history"),
        ("attestations", "0010_evidence_export_history"),
        ("contacts", "0003_personal_salt_and_link_history"),
    ]

    operations = [migrations.RunPython(seal_existing_rows, migrations.RunPython.noop)]
