from django.db import migrations

# Daily jobs that drive campaigns; times are editable afterwards in the admin (Periodic tasks).
JOBS = [
    ("Launch due campaign schedules", "attestations.tasks.launch_due_schedules", "15", "5"),
    ("Remind reviewers with pending items", "attestations.tasks.send_reminders", "0", "8"),
    ("Escalate overdue attestation items", "attestations.tasks.escalate_overdue", "30", "8"),
    ("Close campaigns past their due date", "attestations.tasks.close_due_campaigns", "45", "0"),
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
        ("attestations", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_jobs, remove_jobs)]
