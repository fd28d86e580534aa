"""Every five minutes beat closes the auditor grants past their end and ends their sessions (editable in the admin).
The middleware already refuses an auditor whose grant has ended; the job closes the grant in its history and signs
out sessions that make no further request."""

from django.db import migrations

JOB = ("Close ended auditor access", "core.tasks.expire_auditor_grants", 5)


def create_job(apps, schema_editor):
    name, task, minutes = JOB
    interval, _ = apps.get_model("django_celery_beat", "IntervalSchedule").objects.get_or_create(
        every=minutes, period="minutes"
    )
    apps.get_model("django_celery_beat", "PeriodicTask").objects.update_or_create(
        name=name, defaults={"task": task, "interval": interval, "crontab": None, "enabled": True,
                             "expire_seconds": 240}
    )


def remove_job(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=JOB[0]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("portal", "0011_auditor_grants"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_job, remove_job)]
