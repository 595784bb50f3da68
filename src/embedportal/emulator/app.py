"""The emulator as one ASGI app: Entra, Power BI REST, ARM, the embed iframe, its data API.

`create_emulator_app(settings)` builds a fresh app whose state (tokens' signing key, capacity,
counters) lives on `app.state.emulator`; importing this module does nothing else.
"""

from __future__ import annotations

import uuid

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Message, Receive, Scope, Send

from embedportal.asgi import HttpMiddleware
from embedportal.emulator import arm, data_api, embed, entra, powerbi, signin
from embedportal.emulator.errors import (
    EmulatorError,
    handle_emulator_error,
    handle_http_exception,
    handle_unexpected,
    handle_validation_error,
)
from embedportal.emulator.settings import EmulatorSettings
from embedportal.emulator.state import EmulatorState


class RequestIdMiddleware(HttpMiddleware):
    """Every answer carries a `RequestId` header, as Power BI's do (ARM's also get
    `x-ms-request-id` and `x-ms-correlation-request-id`)."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = str(uuid.uuid4())
        is_arm = str(scope.get("path", "")).lower().startswith("/subscriptions/")

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.append("RequestId", request_id)
                if is_arm:
                    headers.append("x-ms-request-id", request_id)
                    headers.append("x-ms-correlation-request-id", request_id)
            await send(message)

        await self.app(scope, receive, send_with_id)


def create_emulator_app(settings: EmulatorSettings | None = None) -> FastAPI:
    """A new emulator app with the demo content, a running capacity and zeroed counters."""
    settings = settings if settings is not None else EmulatorSettings()
    app = FastAPI(
        title="embedportal Power BI emulator",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.emulator = EmulatorState(settings)

    app.add_exception_handler(EmulatorError, handle_emulator_error)
    app.add_exception_handler(StarletteHTTPException, handle_http_exception)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.add_exception_handler(Exception, handle_unexpected)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    for module in (entra, signin, powerbi, data_api, arm, embed):
        app.include_router(module.router)
    app.add_middleware(RequestIdMiddleware)
    return app
