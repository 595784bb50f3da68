"""Per request: an id (the caller's X-Request-ID when sane, else a new one) echoed in the
response and written with every log line, the latency by route template and status class, one
log line, and a clean 503 when the database fails before a response has begun."""

from __future__ import annotations

import logging
import re
import secrets
import time
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from embedportal.asgi import HttpMiddleware
from embedportal.logs import request_id_var
from embedportal.metrics import PortalMetrics
from embedportal.web.errors import DATABASE_ERRORS, database_unavailable_response

logger = logging.getLogger("embedportal.request")

REQUEST_ID_HEADER = "x-request-id"
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Load balancers probe these many times a second: counted, not logged.
_QUIET_PATHS = ("/healthz", "/metrics", "/static/")


def request_id_of(raw: str | None) -> str:
    """The caller's id when it is short and plain (it lands in logs), else a fresh one."""
    if raw and _SANE_REQUEST_ID.match(raw):
        return raw
    return secrets.token_hex(16)  # as a uuid4's hex, for a fifth of the time


def route_template(scope: Scope) -> str:
    """The matched route's template (`/api/reports/{report_id}/token`): ids stay out of labels
    and logs. Unmatched requests share one label, so a scan cannot grow the metrics."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "<unmatched>"


class RequestObservability(HttpMiddleware):
    def __init__(self, app: ASGIApp, *, metrics: PortalMetrics) -> None:
        super().__init__(app)
        self.metrics = metrics

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        incoming = None
        for name, value in scope.get("headers", []):
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        request_id = request_id_of(incoming)
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        state: dict[str, Any] = {"status": 500, "began": False}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start" and not state["began"]:
                state["began"] = True
                state["status"] = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                message = {**message, "headers": headers}
                # Time to the response's start: a push stream's open life is not latency.
                self.metrics.observe_request(
                    route=route_template(scope),
                    method=scope["method"],
                    status=message["status"],
                    seconds=time.perf_counter() - started,
                )
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except DATABASE_ERRORS as error:
            # Raised where no exception handler sees it (the request context middleware).
            if state["began"]:
                raise
            logger.warning("database unavailable: %s", type(error).__name__)
            response = database_unavailable_response(Request(scope))
            await response(scope, receive, send_with_id)
        finally:
            if not scope.get("path", "").startswith(_QUIET_PATHS):
                _log_request(scope, state["status"], time.perf_counter() - started)
            request_id_var.reset(token)


def _log_request(scope: Scope, status: int, seconds: float) -> None:
    if not logger.isEnabledFor(logging.INFO):
        return
    route = route_template(scope)
    milliseconds = seconds * 1000
    logger.info(
        "%s %s %s %.1fms",
        scope["method"],
        route,
        status,
        milliseconds,
        extra={
            "method": scope["method"],
            "route": route,
            "status": status,
            "duration_ms": round(milliseconds, 2),
        },
    )
