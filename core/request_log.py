"""Request context for the logs: each request's id and user, named in every line written while it runs, and one
line per request with its outcome.

The id is the caller's ``X-Request-ID`` when it is a sane token (a proxy or load balancer that set one keeps its
trail), otherwise a new one; it is sent back on the response. With ``LOG_FORMAT=json`` every line is one JSON
object (``JsonFormatter``).
"""

import contextvars
import datetime
import json
import logging
import re
import time
import uuid

from django.conf import settings

log = logging.getLogger("portal.request")

REQUEST_ID_HEADER = "X-Request-ID"
# Letters, digits and a few separators: nothing that could split a log line or inject into a header.
SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@+=-]{8,128}$")
NO_VALUE = "-"

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default=NO_VALUE)
user_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_user", default=NO_VALUE)


def request_id_from(request) -> str:
    given = request.headers.get(REQUEST_ID_HEADER, "").strip()
    return given if SANE_REQUEST_ID.match(given) else uuid.uuid4().hex


def user_label(user) -> str:
    if user is None or not user.is_authenticated:
        return NO_VALUE
    return user.get_username()


class RequestLogMiddleware:
    """First of all middleware: sets the request id, and logs the request's method, path, status and duration
    (``portal.request``) when it ends. Static files are not logged."""

    def __init__(self, get_response):
        self.get_response = get_response
        self.static_prefix = "/" + settings.STATIC_URL.lstrip("/")

    def __call__(self, request):
        request.request_id = request_id_from(request)
        id_token = request_id_var.set(request.request_id)
        user_token = user_var.set(NO_VALUE)
        started = time.monotonic()
        try:
            response = self.get_response(request)
            response[REQUEST_ID_HEADER] = request.request_id
            if not request.path.startswith(self.static_prefix):
                level = logging.ERROR if response.status_code >= 500 else logging.INFO
                log.log(level, "%s %s %s", request.method, request.path, response.status_code,
                        extra={"outcome": response.status_code,
                               "duration_ms": round((time.monotonic() - started) * 1000, 1)})
            return response
        finally:
            user_var.reset(user_token)
            request_id_var.reset(id_token)


class RequestUserMiddleware:
    """After authentication: names the request's user for the log lines. Looked at again once the view has run,
    since an API token's user is known only then (REST framework sets it on the request)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user_var.set(user_label(getattr(request, "user", None)))
        response = self.get_response(request)
        user_var.set(user_label(getattr(request, "user", None)))
        return response


class RequestContextFilter(logging.Filter):
    """Adds ``request_id`` and ``user`` to every record (``-`` outside a request)."""

    def filter(self, record):
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        if not hasattr(record, "user"):
            record.user = user_var.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, request_id, user, and for request
    lines the outcome (status code) and duration; an exception's traceback under ``exception``."""

    EXTRA_FIELDS = ("outcome", "duration_ms")

    def format(self, record):
        entry = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", request_id_var.get()),
            "user": getattr(record, "user", user_var.get()),
        }
        for name in self.EXTRA_FIELDS:
            if hasattr(record, name):
                entry[name] = getattr(record, name)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)
