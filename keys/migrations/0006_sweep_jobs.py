from django.db import migrations

# Daily lifecycle sweeps (keys.tasks); times are editable afterwards in the admin (Periodic tasks).
DAILY_JOBS = [
    ("Expire keys past their expiry date", "keys.tasks.sweep_expired_keys", "0", "1"),
    ("Revoke keys of ended contracts", "keys.tasks.sweep_ended_contracts", "10", "1"),
    ("Revoke keys of decommissioned workflows", "keys.tasks.sweep_decommissioned_workflows", "20", "1"),
    ("Orphan keys of departed owners", "keys.tasks.sweep_departed_owners", "30", "1"),
    ("Flag stale keys", "keys.tasks.sweep_stale_keys", "40", "1"),
    ("Flag keys due for rotation after an owner change", "keys.tasks.sweep_rotation_due", "50", "1"),
]
# The safety net under revocation webhooks: due retries and deliveries lost with their worker.
RETRY_JOB = ("Retry due revocation webhooks", "keys.tasks.retry_due_revocations", 5)


def create_jobs(apps, schema_editor):
    crontab_model = apps.get_model("django_celery_beat", "CrontabSchedule")
    interval_model = apps.get_model("django_celery_beat", "IntervalSchedule")
    task_model = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, task, minute, hour in DAILY_JOBS:
        crontab, _ = crontab_model.objects.get_or_create(
            minute=minute, hour=hour, day_of_week="*", day_of_month="*", month_of_year="*", timezone="UTC"
        )
        task_model.objects.update_or_create(
            name=name, defaults={"task": task, "crontab": crontab, "interval": None, "enabled": True}
        )
    name, task, minutes = RETRY_JOB
    interval, _ = interval_model.objects.get_or_create(every=minutes, period="minutes")
    task_model.objects.update_or_create(
        name=name, defaults={"task": task, "interval": interval, "crontab": None, "enabled": True}
    )


def remove_jobs(apps, schema_editor):
    names = [job[0] for job in DAILY_JOBS] + [RETRY_JOB[0]]
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name__in=names).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("keys", "0005_sweep_and_confirmation_actions"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_jobs, remove_jobs)]
