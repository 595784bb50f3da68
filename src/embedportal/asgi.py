"""What the portal's and the emulator's pure ASGI middlewares share."""

from __future__ import annotations

from abc import ABC, abstractmethod

from starlette.types import ASGIApp, Receive, Scope, Send


class HttpMiddleware(ABC):
    """A pure ASGI middleware for HTTP requests: lifespan and websocket scopes pass through
    untouched. (Pure ASGI, because Starlette's function middleware runs each request in a task
    of its own and pipes the answer through a memory stream, a cost every request would pay.)"""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.handle(scope, receive, send)

    @abstractmethod
    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one HTTP request through ``self.app``."""
