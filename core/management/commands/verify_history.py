"""Verify the tamper-evident history chain; exits non-zero when any record was tampered with."""

import json

from django.core.management.base import BaseCommand, CommandError

from core.chain import verify_chain


class Command(BaseCommand):
    help = "Walk the history chain and name every history record altered, inserted or deleted behind the application's back."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="Print the result as JSON.")
        parser.add_argument("--chunk-size", type=int, default=5000, help="Links read per query (default 5000).")

    def handle(self, *args, json: bool = False, chunk_size: int = 5000, **options):
        result = verify_chain(chunk_size=chunk_size)
        if json:
            self.stdout.write(_dumps(result.as_dict()))
        else:
            for problem in result.problems:
                self.stdout.write(f"{problem.kind.upper():13} {problem.message}")
            status = "OK" if result.ok else f"BROKEN ({len(result.problems)} problems)"
            self.stdout.write(f"History chain {status}: {result.checked} records checked")
            self.stdout.write(f"Head: seq {result.head_seq} digest {result.head_digest}")
        if not result.ok:
            raise CommandError(f"The history chain is broken: {len(result.problems)} problems.")


def _dumps(data) -> str:
    return json.dumps(data, indent=2)
