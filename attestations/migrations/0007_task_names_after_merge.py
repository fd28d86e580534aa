"""The key exception tasks moved from keys.exception_tasks into keys.tasks: scheduled jobs follow."""

from django.db import migrations

RENAMED = {
    "keys.exception_tasks.sweep_lapsed_exceptions": "keys.tasks.sweep_lapsed_exceptions",
    "keys.exception_tasks.send_exception_reminders": "keys.tasks.send_exception_reminders",
}


def rename(apps, schema_editor, mapping=RENAMED):
    task_model = apps.get_model("django_celery_beat", "PeriodicTask")
    for old, new in mapping.items():
        task_model.objects.filter(task=old).update(task=new)


def rename_back(apps, schema_editor):
    rename(apps, schema_editor, {new: old for old, new in RENAMED.items()})


class Migration(migrations.Migration):
    dependencies = [
        ("attestations", "0006_evidence_quality_successions_reminders"),
        ("django_celery_beat", "0018_improve_crontab_helptext"),
    ]

    operations = [migrations.RunPython(rename, rename_back)]
