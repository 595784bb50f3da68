"""Serve an ASGI app with uvicorn in a background thread, over real HTTP on a free port."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from embedportal.server import serve_in_thread as _serve_in_thread
from tests.support.servers import free_port


@contextmanager
def serve_in_thread(app: Any, *, port: int | None = None) -> Iterator[str]:
    with _serve_in_thread(app, port=port or free_port()) as base_url:
        yield base_url
