"""Verify the tamper-evident chains; exits non-zero when any record was tampered with."""

import json
import os

from django.core.management.base import BaseCommand, CommandError

from core.chain import CHAINS, EVIDENCE, verify_against_head, verify_chain, verify_since_checkpoint


class Command(BaseCommand):
    help = ("Walk the chains and name every chained record altered, inserted or deleted behind the application's "
            "back. By default walks everything; --since-checkpoint checks only what changed since the last intact "
            "check; --against-head SEQ DIGEST proves nothing up to a head printed in an old report has changed.")

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="Print the result as JSON.")
        parser.add_argument("--chunk-size", type=int, default=5000, help="Links read per query (default 5000).")
        parser.add_argument("--since-checkpoint", action="store_true",
                            help="Verify only what was sealed, inserted or changed since the last intact check.")
        parser.add_argument("--against-head", nargs=2, metavar=("SEQ", "DIGEST"),
                            help="A head printed in a report: check every link up to SEQ and that it still ends in DIGEST.")
        parser.add_argument("--workers", type=int, default=None,
                            help="Processes walking a long chain at once (default: one per CPU, at most 8; "
                                 "PostgreSQL only).")
        parser.add_argument("--chain", choices=sorted(CHAINS.values()), default=CHAINS[EVIDENCE],
                            help="The chain --against-head names (default: evidence).")

    def handle(self, *args, json: bool = False, chunk_size: int = 5000, since_checkpoint: bool = False,
               against_head=None, chain: str = "evidence", workers: int | None = None, **options):
        if workers is None:
            workers = min(os.cpu_count() or 1, 8)
        if workers < 1:
            raise CommandError("--workers takes a number of processes, 1 or more.")
        if against_head:
            seq, digest = against_head
            if not seq.isdigit() or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest.lower()):
                raise CommandError("--against-head takes a sequence number and a 64-character hex digest.")
            chain_id = {name: number for number, name in CHAINS.items()}[chain]
            result = verify_against_head(int(seq), digest.lower(), chain=chain_id, chunk_size=chunk_size)
        elif since_checkpoint:
            result = verify_since_checkpoint(chunk_size=chunk_size)
        else:
            result = verify_chain(chunk_size=chunk_size, workers=workers)
        if json:
            self.stdout.write(_dumps(result.as_dict()))
        else:
            for problem in result.problems:
                self.stdout.write(f"{problem.kind.upper():13} {problem.message}")
            status = "OK" if result.ok else f"BROKEN ({len(result.problems)} problems)"
            extra = "".join([f", {result.erased} erased on request" if result.erased else "",
                             f", {result.purged} deleted by a recorded purge" if result.purged else ""])
            self.stdout.write(f"History chain {status}: {result.checked} records checked{extra}")
            if against_head:
                self.stdout.write(f"Against head: seq {result.head_seq} digest {result.head_digest}")
            for name, (seq, digest) in result.heads.items():
                self.stdout.write(f"Head ({name}): seq {seq} digest {digest}")
        if not result.ok:
            raise CommandError(f"The history chain is broken: {len(result.problems)} problems.")


def _dumps(data) -> str:
    return json.dumps(data, indent=2)
