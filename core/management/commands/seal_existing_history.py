"""Adopt history written before the chain existed (a database from before the chain was introduced)."""

from django.core.management.base import BaseCommand, CommandError

from core import chain


class Command(BaseCommand):
    help = (
        "Seal the history records of a database that predates the history chain. Runs only while the chain "
        "is empty, so it cannot seal records inserted behind the application's back later."
    )

    def handle(self, *args, **options):
        try:
            sealed = chain.seal_existing_history()
        except chain.ChainError as exc:
            raise CommandError(f"{exc} Run verify_history to see them.") from exc
        result = chain.verify_chain()
        self.stdout.write(f"Sealed {sealed} existing history records; head seq {result.head_seq} digest {result.head_digest}")
