"""Import an inventory CSV of existing keys, all or nothing.

    python manage.py import_keys keys.csv [--actor USERNAME] [--reason TEXT]
"""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from core.actors import system_user
from keys.services.importer import KeyImportError, import_keys


class Command(BaseCommand):
    help = "Import existing API keys from a CSV file. Any bad row refuses the whole file and every problem is listed."

    def add_arguments(self, parser):
        parser.add_argument("file", help="CSV file (UTF-8); see static/samples/keys-import-template.csv")
        parser.add_argument(
            "--actor", help="Username recorded as having imported and approved the keys (default: the system user)"
        )
        parser.add_argument("--reason", default="", help="Why the keys are imported; recorded in each key's history")

    def handle(self, *args, file, actor=None, reason="", **options):
        user = self._actor(actor)
        try:
            with open(file, "rb") as handle:
                result = import_keys(handle, actor=user, reason=reason)
        except OSError as exc:
            raise CommandError(f"Cannot read {file}: {exc.strerror}.")
        except KeyImportError as exc:
            for row in exc.rows:
                self.stderr.write(str(row))
            raise CommandError(f"{len(exc.rows)} problem(s) found; nothing was imported.")
        self.stdout.write(self.style.SUCCESS(f"Imported {result.count} keys."))

    def _actor(self, username):
        if not username:
            return system_user()
        user_model = get_user_model()
        try:
            return user_model.objects.get(**{user_model.USERNAME_FIELD: username})
        except user_model.DoesNotExist:
            raise CommandError(f"Unknown user '{username}'.")
