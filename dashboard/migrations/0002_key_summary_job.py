"""Refresh the dashboard's key summary every five minutes (editable afterwards in the admin)."""

from django.db import migrations

JOB = ("Refresh the dashboard's key summary", "dashboard.tasks.refresh_key_summary", 5)


def create_job(apps, schema_editor):
    name, task, minutes = JOB
    interval, _ = apps.get_model("django_celery_beat", "IntervalSchedule").objects.get_or_create(
        every=minutes, period="minutes"
    )
    apps.get_model("django_celery_beat", "PeriodicTask").objects.update_or_create(
        name=name, defaults={"task": task, "interval": interval, "crontab": None, "enabled": True}
    )


def remove_job(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=JOB[0]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("dashboard", "0001_key_summary"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_job, remove_job)]
