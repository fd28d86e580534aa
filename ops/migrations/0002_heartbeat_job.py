"""Every minute beat sends the heartbeat task; a worker running it records the time (editable in the admin).
A heartbeat not picked up within two minutes expires: a worker back from an outage runs no backlog of them."""

from django.db import migrations

JOB = ("Worker heartbeat", "ops.tasks.record_heartbeat", 1)


def create_job(apps, schema_editor):
    name, task, minutes = JOB
    interval, _ = apps.get_model("django_celery_beat", "IntervalSchedule").objects.get_or_create(
        every=minutes, period="minutes"
    )
    apps.get_model("django_celery_beat", "PeriodicTask").objects.update_or_create(
        name=name, defaults={"task": task, "interval": interval, "crontab": None, "enabled": True,
                             "expire_seconds": 120}
    )


def remove_job(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=JOB[0]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("ops", "0001_worker_heartbeat"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_job, remove_job)]
