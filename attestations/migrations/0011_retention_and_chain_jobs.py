"""Daily jobs: apply the retention periods, and walk the whole chain (editable afterwards in the admin)."""

from django.db import migrations

JOBS = [
    ("Apply retention periods", "attestations.tasks.apply_retention", 24 * 60),
    ("Verify the whole history chain", "attestations.tasks.verify_whole_chain", 24 * 60),
]


def create_jobs(apps, schema_editor):
    for name, task, minutes in JOBS:
        interval, _ = apps.get_model("django_celery_beat", "IntervalSchedule").objects.get_or_create(
            every=minutes, period="minutes"
        )
        apps.get_model("django_celery_beat", "PeriodicTask").objects.update_or_create(
            name=name, defaults={"task": task, "interval": interval, "crontab": None, "enabled": True}
        )


def remove_jobs(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name__in=[j[0] for j in JOBS]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("attestations", "0010_evidence_export_history"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_jobs, remove_jobs)]
