"""Error answers in the shape each real service uses, raised as one exception type.

* Power BI REST and the private data API: `{"error": {"code", "message"}}` (Power BI adds a
  `pbi.error` object to some). The REST API's entity-not-found and not-authorized answers carry
  the code and `pbi.error` only, no `message`, as captured real ones do; a POST whose body is not
  declared `application/json` gets 415 `UnsupportedMediaType`.
* Azure Resource Manager: `{"error": {"code", "message"}}`.
* Entra ID: the OAuth 2.0 error object (`error`, `error_description`, `error_codes`, …).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException


class EmulatorError(Exception):
    """An HTTP error answer with a JSON body."""

    def __init__(
        self, status_code: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code
        self.body = dict(body)
        self.headers = dict(headers or {})

    def response(self) -> JSONResponse:
        return JSONResponse(self.body, status_code=self.status_code, headers=self.headers)


def powerbi_error(
    status_code: int,
    code: str,
    message: str | None,
    *,
    headers: Mapping[str, str] | None = None,
    pbi_error: bool = False,
) -> EmulatorError:
    """Power BI's error body; ``message=None`` leaves the member out, as Power BI does for the
    codes that speak for themselves."""
    error: dict[str, Any] = {"code": code}
    if message is not None:
        error["message"] = message
    if pbi_error:
        error["pbi.error"] = {"code": code, "parameters": {}, "details": [], "exceptionCulprit": 1}
    return EmulatorError(status_code, {"error": error}, headers)


def not_found(what: str) -> EmulatorError:
    """The private data API's 404, which says what was missing (the iframe shows it)."""
    return powerbi_error(404, "PowerBIEntityNotFound", f"{what} was not found", pbi_error=True)


def entity_not_found() -> EmulatorError:
    """The REST API's 404 for an unknown workspace, report or dataset: the captured body is
    `{"error": {"code": "PowerBIEntityNotFound", "pbi.error": {...}}}`, with no message."""
    return powerbi_error(404, "PowerBIEntityNotFound", None, pbi_error=True)


def not_authorized() -> EmulatorError:
    """The REST API's 403 for a missing, malformed or foreign bearer token: like the 404, the
    captured body names the code and nothing else."""
    return powerbi_error(403, "PowerBINotAuthorizedException", None, pbi_error=True)


def unsupported_media_type(content_type: str | None) -> EmulatorError:
    shown = content_type if content_type else "none"
    return powerbi_error(
        415,
        "UnsupportedMediaType",
        f"The request's Content-Type ({shown}) is not supported: send application/json",
    )


def invalid_request(message: str) -> EmulatorError:
    return powerbi_error(400, "InvalidRequest", message)


def arm_error(
    status_code: int, code: str, message: str, *, headers: Mapping[str, str] | None = None
) -> EmulatorError:
    return EmulatorError(status_code, {"error": {"code": code, "message": message}}, headers)


def entra_error(
    status_code: int, error: str, aadsts: int, description: str, *, base_url: str
) -> EmulatorError:
    """An Entra token-endpoint error, with the trace and correlation ids Entra adds."""
    now = datetime.now(UTC)
    trace_id, correlation_id = str(uuid.uuid4()), str(uuid.uuid4())
    timestamp = now.strftime("%Y-%m-%d %H:%M:%SZ")
    text = (
        f"AADSTS{aadsts}: {description} Trace ID: {trace_id} "
        f"Correlation ID: {correlation_id} Timestamp: {now.strftime('%Y-%m-%d %H:%M:%S')}Z"
    )
    return EmulatorError(
        status_code,
        {
            "error": error,
            "error_description": text,
            "error_codes": [aadsts],
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": f"{base_url}/error?code={aadsts}",
        },
        {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"},
    )


# --- exception handlers --------------------------------------------------------------------------


def _family(path: str) -> str:
    lowered = path.lower()
    if lowered.startswith("/subscriptions/"):
        return "arm"
    if lowered.startswith("/v1.0/") or lowered.startswith("/emulator/"):
        return "powerbi"
    return "other"


async def handle_emulator_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, EmulatorError)
    return exc.response()


async def handle_http_exception(request: Request, exc: Exception) -> JSONResponse:
    """Unknown routes, wrong methods and the like: JSON in the family's shape, never HTML."""
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    family = _family(request.url.path)
    if status == 404:
        if family == "arm":
            error = arm_error(
                404, "InvalidResourceType", f"No resource or operation at '{request.url.path}'."
            )
        else:
            error = powerbi_error(404, "NotFound", f"Nothing is served at '{request.url.path}'")
    elif status == 405:
        code = "MethodNotAllowed"
        message = f"The method '{request.method}' is not allowed on '{request.url.path}'"
        error = (
            arm_error(405, code, message) if family == "arm" else powerbi_error(405, code, message)
        )
    else:
        message = str(exc.detail) if exc.detail else "The request failed"
        error = powerbi_error(status, "BadRequest" if status < 500 else "InternalError", message)
    headers = dict(exc.headers or {})
    headers.update(error.headers)
    return JSONResponse(error.body, status_code=status, headers=headers)


async def handle_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    parts = []
    for item in exc.errors()[:5]:
        location = ".".join(str(step) for step in item.get("loc", ()))
        parts.append(f"{location}: {item.get('msg', 'invalid')}")
    message = "The request is invalid: " + "; ".join(parts)
    if _family(request.url.path) == "arm":
        return arm_error(400, "InvalidRequestContent", message).response()
    return invalid_request(message).response()


async def handle_unexpected(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": "InternalError", "message": "The emulator failed unexpectedly"}},
        status_code=500,
    )
