"""The last resort for an error nothing else handled (docs/security.md, V7): the caller gets a
generic message naming the request id, never a traceback or an internal detail, and the log
gets the traceback under that id.

A pure ASGI middleware just inside the request observability layer, so the request id is known
(and echoed in `X-Request-ID`), the 500 is counted, and the security headers are added outside.
Database outages are not its business: they pass on to the observability layer's 503.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import Message, Receive, Scope, Send

from embedportal.asgi import HttpMiddleware
from embedportal.i18n import _
from embedportal.logs import request_id_var
from embedportal.web.errors import (
    DATABASE_ERRORS,
    callers_language,
    error_response,
    wants_json,
)

logger = logging.getLogger("embedportal.web")


def generic_failure(request: Request, request_id: str) -> Response:
    with callers_language(request):
        return _generic_failure(request, request_id)


def _generic_failure(request: Request, request_id: str) -> Response:
    message = _(
        "Something went wrong on our side. If it happens again, give the administrator this "
        "reference: %(reference)s",
        reference=request_id,
    )
    if wants_json(request):
        return JSONResponse(
            {"detail": message, "code": "InternalError", "requestId": request_id},
            status_code=500,
        )
    try:
        return error_response(request, 500, message, "InternalError")
    except Exception:  # noqa: BLE001 - drawing the page may need what just failed
        return PlainTextResponse(message, status_code=500)


class LastResort(HttpMiddleware):
    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except DATABASE_ERRORS:
            raise
        except Exception:
            request_id = request_id_var.get() or "-"
            logger.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise  # the answer is under way: only the server can end it now
            response = generic_failure(Request(scope), request_id)
            await response(scope, receive, send)
