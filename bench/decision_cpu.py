r"""CPU cost of one decision, in one process: the load test's three channels without the network.

    python bench/decision_cpu.py [--decisions 300] [--profile api|form|htmx]

Creates (drops first) the PostgreSQL database ``keys_portal_cpu`` on 127.0.0.1:5432, seeds it as the load
test does (one owner per channel), then decides items one after another through Django's test client in
production settings: the API (token), the portal's form and the same form as htmx sends it. For each
channel it prints the CPU milliseconds per decision of this process and of its PostgreSQL backend, and the
statements per decision that go through the cursor (BEGIN and COMMIT are not among them: on PostgreSQL
18 here are the 20 that tests/attestations/test_decision_cost.py counts). ``--profile`` runs that channel
again under cProfile, timed by this process's CPU time (waiting for PostgreSQL is not counted), and prints
the top functions.

Instructions per decision (this process only; PostgreSQL's backend is another process). Each channel's
measured decisions run inside ``sys.call_tracing``, whose C function ``_PyEval_CallTracing`` nothing else
calls, so callgrind collects exactly those decisions (not the set-up, the seed or the warm-up) and writes
one dump per channel, in the order api, form, htmx; the script reads each dump back and prints the
instructions per decision:

    mkdir -p bench/results && valgrind --tool=callgrind --collect-atstart=no \
        --toggle-collect=_PyEval_CallTracing --dump-after=_PyEval_CallTracing \
        --callgrind-out-file=bench/results/callgrind.out.%p .venv/bin/python bench/decision_cpu.py --decisions 20

(about six minutes on machine D of docs/performance.md; callgrind opens its output file at start, so the
folder must exist). The function name needs a Python whose binary or libpython keeps its symbol table
(the project's pyenv build does); this tells:
``nm -a $(python -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')/libpython3*.so* | grep CallTracing``.
``--profile`` shows where the time goes at the Python level; callgrind sees only C functions.

Figures move with the machine: the load test's reference loop is printed with them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import load_test  # noqa: E402  (set-up shared with the load test)


def backend_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def callgrind_dump() -> Path | None:
    """The newest dump callgrind wrote for this process (``--callgrind-out-file=...callgrind.out.%p``)."""
    found = [path for folder in (ROOT / "bench" / "results", Path.cwd())
             for path in folder.glob(f"*callgrind.out.{os.getpid()}.*")]
    return max(found, key=lambda path: int(path.name.rsplit(".", 1)[1]), default=None)


def callgrind_total(dump: Path) -> int:
    """The instructions (Ir) a callgrind dump collected: its ``totals:`` line."""
    for line in dump.read_text().splitlines():
        if line.startswith(("totals:", "summary:")):
            return int(line.split()[1])
    raise ValueError(f"{dump}: no totals line")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decisions", type=int, default=300, help="decisions per channel (default 300)")
    parser.add_argument("--profile", choices=["api", "form", "htmx"], help="profile this channel afterwards")
    parser.add_argument("--database", default="keys_portal_cpu")
    args = parser.parse_args()
    per_owner = args.decisions * (2 if args.profile else 1) + 10
    seed_args = argparse.Namespace(owners=3, keys_per_owner=per_owner)

    env = load_test.server_environment(argparse.Namespace(broker="memory://"), load_test.create_database(args.database))
    env["ALLOWED_HOSTS"] = "testserver"
    os.environ.update({k: env[k] for k in ("DJANGO_ENV", "SECRET_KEY", "ALLOWED_HOSTS", "SECURE_SSL_REDIRECT")})
    os.environ["CELERY_TASK_ALWAYS_EAGER"] = "true"
    load_test.setup_django(env)
    seeded = load_test.seed(seed_args)

    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client

    User = get_user_model()
    api_owner, form_owner, htmx_owner = seeded.owners
    from rest_framework.authtoken.models import Token

    token = Token.objects.get_or_create(user=User.objects.get(username=api_owner))[0].key

    def client_for(channel, owner):
        if channel == "api":
            return Client(HTTP_AUTHORIZATION=f"Token {token}", HTTP_ACCEPT="application/json")
        client = Client()
        client.force_login(User.objects.get(username=owner))
        return client

    def decide(client, channel, item):
        if channel == "api":
            response = client.post(f"/api/v1/attestations/{item}/decide/",
                                   {"decision": "confirm", "justification": "cpu bench", "affirm": True},
                                   content_type="application/json")
            assert response.status_code == 200, response.content[:300]
        else:
            extra = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": f"item-{item}"} if channel == "htmx" else {}
            response = client.post(f"/items/{item}/decide/", {"decision": "confirm", "justification": "cpu bench",
                                                             "affirm": "on", "next": "/inbox/"}, **extra)
            assert response.status_code == (200 if channel == "htmx" else 302), response.content[:300]
            client.cookies.pop("messages", None)  # as the load test: the next page would show and drop it

    under_valgrind = "vgpreload" in os.environ.get("LD_PRELOAD", "")
    print(f"machine speed: 10,000,000 Python additions in {load_test.reference_loop_seconds():.2f} s")
    channels = {"api": api_owner, "form": form_owner, "htmx": htmx_owner}
    queues = {channel: list(seeded.items[owner]) for channel, owner in channels.items()}
    for channel, owner in channels.items():
        client = client_for(channel, owner)
        for item in queues[channel][:5]:  # warm: templates, imports, the connection and its prepared statements
            decide(client, channel, item)
        del queues[channel][:5]
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            pid = cursor.fetchone()[0]
        queries = 0

        def count(execute, sql, params, many, context):
            nonlocal queries
            queries += 1
            return execute(sql, params, many, context)

        def measured(client=client, channel=channel):
            for item in queues[channel][:args.decisions]:
                decide(client, channel, item)

        db_before, cpu_before, wall = backend_cpu(pid), time.process_time(), time.perf_counter()
        with connection.execute_wrapper(count):
            sys.call_tracing(measured, ())  # the boundary callgrind collects within (see the docstring)
        cpu, wall = time.process_time() - cpu_before, time.perf_counter() - wall
        db = backend_cpu(pid) - db_before
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            assert cursor.fetchone()[0] == pid, "the connection was replaced during the run"
        del queues[channel][:args.decisions]
        n = args.decisions
        print(f"{channel:5}: {1000 * cpu / n:5.2f} CPU-ms in Django + {1000 * db / n:5.2f} in PostgreSQL per decision, "
              f"{queries / n:4.1f} statements, {1000 * wall / n:5.2f} ms wall")
        if under_valgrind:
            dump = callgrind_dump()
            if dump is None:
                print("       no callgrind dump found in bench/results/ or here: see the docstring's command")
            else:
                print(f"       {callgrind_total(dump) / n / 1e6:.2f} million instructions per decision "
                      f"({dump.name}, {n} decisions)")

    if args.profile:
        import cProfile
        import pstats

        client = client_for(args.profile, channels[args.profile])
        decide(client, args.profile, queues[args.profile].pop())  # a new client's first request loads the middleware
        profiler = cProfile.Profile(time.process_time)  # CPU time: the wait for PostgreSQL is not ours
        profiler.enable()
        for item in queues[args.profile][:args.decisions]:
            decide(client, args.profile, item)
        profiler.disable()
        saved = ROOT / "bench" / "results" / f"decision-{args.profile}.pstats"
        saved.parent.mkdir(parents=True, exist_ok=True)
        profiler.dump_stats(saved)
        print(f"profile saved to {saved.relative_to(ROOT)} (python -m pstats {saved.relative_to(ROOT)})")
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(60)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
