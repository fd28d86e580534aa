"""Access records of personal-token calls named the token by its key, which is the token itself: rewrite
them to name it by a digest, as ``portal.audit.token_reference`` now does."""

from django.db import migrations

from core.audit import LEGACY_PERSONAL_TOKEN, token_reference


class _Key:
    def __init__(self, key):
        self.pk = key


def forwards(apps, schema_editor):
    AccessRecord = apps.get_model("portal", "AccessRecord")
    changed = []
    for record in AccessRecord.objects.filter(target__contains="(Token #").only("pk", "target").iterator():
        target = LEGACY_PERSONAL_TOKEN.sub(lambda m: f"({token_reference(_Key(m.group(1)))})", record.target)
        if target != record.target:
            record.target = target
            changed.append(record)
    AccessRecord.objects.bulk_update(changed, ["target"], batch_size=1000)


class Migration(migrations.Migration):
    dependencies = [("portal", "0005_chain_append_function")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
