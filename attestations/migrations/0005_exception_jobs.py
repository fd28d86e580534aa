from django.db import migrations

# Daily exception jobs (keys.exception_tasks); times are editable afterwards in the admin. They live in
# an attestations migration because the keys app's migrations are being renumbered elsewhere.
JOBS = [
    ("Mark lapsed key exceptions", "keys.exception_tasks.sweep_lapsed_exceptions", "5", "0"),
    ("Remind owners of exceptions coming due", "keys.exception_tasks.send_exception_reminders", "15", "8"),
]


def create_jobs(apps, schema_editor):
    crontab_model = apps.get_model("django_celery_beat", "CrontabSchedule")
    task_model = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, task, minute, hour in JOBS:
        crontab, _ = crontab_model.objects.get_or_create(
            minute=minute, hour=hour, day_of_week="*", day_of_month="*", month_of_year="*", timezone="UTC"
        )
        task_model.objects.update_or_create(name=name, defaults={"task": task, "crontab": crontab, "enabled": True})


def remove_jobs(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name__in=[j[0] for j in JOBS]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("attestations", "0004_evidenceexport"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_jobs, remove_jobs)]
