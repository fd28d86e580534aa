"""``/health/``: the database, the cache, the exports' storage, the Celery broker and the worker heartbeat (django-health-check).

Anyone may ask, without a session: a load balancer reads the status code (200 all up, 500 a part down) and the
overall status. Callers from HEALTH_ALLOWED_IPS also learn which part failed and why. JSON when asked for
(``Accept: application/json`` or ``?format=json``), plain text otherwise.
"""

import asyncio
import dataclasses

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpResponse, JsonResponse
from django.utils import timezone
from health_check.base import HealthCheck
from health_check.checks import Cache, Database, Storage
from health_check.exceptions import ServiceUnavailable
from health_check.views import HealthCheckView, MediaType
from kombu import Connection

from ops.access import may_see_health_details
from ops.heartbeat import WORKER, heartbeat_max_age, tasks_run_in_process
from ops.models import WorkerHeartbeat

IN_PROCESS = "in-process"
BROKER_CONNECT_SECONDS = 3


@dataclasses.dataclass
class Broker(HealthCheck):
    """Connects to the Celery broker (CELERY_BROKER_URL). Nothing to check where tasks run in-process."""

    def run(self):
        if tasks_run_in_process():
            return
        try:
            with Connection(settings.CELERY_BROKER_URL, connect_timeout=BROKER_CONNECT_SECONDS) as connection:
                connection.connect()
        except Exception as error:  # each transport raises its own kind; the URL (and its password) is not shown
            raise ServiceUnavailable(f"broker unreachable ({type(error).__name__})") from error

    def pretty_status(self) -> str:
        return IN_PROCESS if tasks_run_in_process() else "OK"


@dataclasses.dataclass
class WorkerHeartbeatCheck(HealthCheck):
    """A worker ran the heartbeat task (every minute, through beat) within WORKER_HEARTBEAT_MAX_AGE seconds."""

    async def run(self):
        if tasks_run_in_process():
            return
        try:
            beat_at = await WorkerHeartbeat.objects.filter(name=WORKER).values_list("beat_at", flat=True).afirst()
        except DatabaseError as error:
            raise ServiceUnavailable("heartbeat unreadable: the database did not answer") from error
        if beat_at is None:
            raise ServiceUnavailable("no worker heartbeat recorded yet: are a worker and beat running?")
        age = timezone.now() - beat_at
        if age > heartbeat_max_age():
            raise ServiceUnavailable(f"last worker heartbeat {int(age.total_seconds())} s ago")

    def pretty_status(self) -> str:
        return IN_PROCESS if tasks_run_in_process() else "OK"


PARTS = {
    "database": Database,
    "cache": Cache,
    # Where the exports are kept (MEDIA_ROOT, or the object storage bucket): a file written, read back and deleted.
    "storage": (Storage, {"alias": "exports"}),
    "broker": Broker,
    "worker": WorkerHeartbeatCheck,
}


class HealthView(HealthCheckView):
    checks = tuple(PARTS.values())

    async def get(self, request, *args, **kwargs):
        with self.get_executor() as executor:
            results = await asyncio.gather(*(check.get_result(executor) for check in self.get_checks()))
        healthy = not any(result.error for result in results)
        status = 200 if healthy else 500
        body = {"status": "ok" if healthy else "error"}
        if may_see_health_details(request):
            body["checks"] = {
                name: str(result.error) if result.error else result.check.pretty_status()
                for name, result in zip(PARTS, results, strict=True)
            }
        if wants_json(request):
            return JsonResponse(body, status=status)
        lines = [body["status"], *(f"{name}: {state}" for name, state in body.get("checks", {}).items())]
        return HttpResponse("\n".join(lines) + "\n", content_type="text/plain; charset=utf-8", status=status)


def wants_json(request) -> bool:
    if request.GET.get("format") == "json":
        return True
    try:
        preferred = next(MediaType.parse_header(request.headers.get("Accept", "*/*")), None)
    except ValueError:
        return False
    return preferred is not None and preferred.mime_type in {"application/json", "application/*"}
