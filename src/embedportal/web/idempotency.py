"""The `Idempotency-Key` header of the integration API's changes (access/idempotency.py).

The key is read by the API key dependency (web/api_auth.py) once the caller is authenticated,
within its rate limit and holding the scope: a replay is never sent to a caller who could not
have made the request. A new key is claimed there; this module's middleware keeps the answer
the route gives (a success) or drops the claim (anything else) when the answer is sent.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.types import Message, Receive, Scope, Send

from embedportal.access import idempotency
from embedportal.asgi import HttpMiddleware
from embedportal.db.base import utcnow
from embedportal.i18n import _
from embedportal.web.api_v1 import ApiError
from embedportal.web.errors import DATABASE_ERRORS

logger = logging.getLogger("embedportal.web")

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
IDEMPOTENT_METHODS = ("POST", "PATCH")
_STATE_KEY = "idempotency_claim"
_API_PREFIX = "/api/v1/"


class IdempotentReplay(Exception):  # noqa: N818 - an answer, not an error
    def __init__(self, replay: idempotency.Replay) -> None:
        super().__init__("replay")
        self.replay = replay


async def claim_or_replay(*, request: Request, api_key_id: str, key: str) -> None:
    """Claim ``key`` for this request, or raise what the caller gets instead: the first answer
    (IdempotentReplay) or a refusal (ApiError)."""
    if not idempotency.valid_key(key):
        raise ApiError(
            400,
            "InvalidIdempotencyKey",
            _(
                "An Idempotency-Key is 1 to %(limit)d visible ASCII characters (a UUID will do).",
                limit=idempotency.MAX_KEY_LENGTH,
            ),
        )
    body = await request.body()
    if len(body) > idempotency.MAX_BODY_BYTES:
        raise ApiError(413, "BodyTooLarge", _("This request is too large to be sent idempotently."))
    fingerprint = idempotency.request_fingerprint(
        method=request.method,
        path=request.url.path,
        query=request.scope.get("query_string", b""),
        body=body,
    )
    outcome = await run_in_threadpool(
        functools.partial(
            idempotency.claim,
            session_factory=request.app.state.session_factory,
            api_key_id=api_key_id,
            key=key,
            fingerprint=fingerprint,
            now=utcnow(),
        )
    )
    match outcome:
        case idempotency.Claimed():
            request.scope.setdefault("state", {})[_STATE_KEY] = (api_key_id, key)
        case idempotency.Replay() as replay:
            raise IdempotentReplay(replay)
        case idempotency.InProgress():
            raise ApiError(
                409,
                "IdempotentRequestInProgress",
                _("A request with this Idempotency-Key is still being served. Try again shortly."),
                headers={"Retry-After": "1"},
            )
        case idempotency.KeyReused():
            raise ApiError(
                422,
                "IdempotencyKeyReused",
                _(
                    "This Idempotency-Key was sent with another request. "
                    "Use a new key for each change."
                ),
            )


def replay_response(replay: idempotency.Replay) -> Response:
    return Response(
        replay.body,
        status_code=replay.status_code,
        media_type=replay.content_type or None,
        headers={"Cache-Control": "no-store", REPLAYED_HEADER: "true"},
    )


class IdempotentAnswers(HttpMiddleware):
    """Keeps the answer to a claimed request, or drops the claim, as the answer goes out."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] not in IDEMPOTENT_METHODS or not scope["path"].startswith(_API_PREFIX):
            await self.app(scope, receive, send)
            return
        held: list[Message] = []
        claim: tuple[str, str] | None = None
        settled = False

        async def hold(message: Message) -> None:
            nonlocal claim, settled
            if message["type"] == "http.response.start":
                claim = scope.get("state", {}).pop(_STATE_KEY, None)
            if claim is None:
                await send(message)
                return
            held.append(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                # Kept (or dropped) before the caller hears: a retry after this answer finds it.
                try:
                    await self._settle(scope, claim, held)
                except DATABASE_ERRORS:
                    # The change is made: its answer goes out; a retry meanwhile is told the
                    # first is in progress, then served afresh (the creates are also
                    # idempotent by their natural keys).
                    logger.warning("could not keep an idempotent answer", exc_info=True)
                settled = True
                for part in held:
                    await send(part)

        try:
            await self.app(scope, receive, hold)
        finally:
            if claim is None:
                claim = scope.get("state", {}).pop(_STATE_KEY, None)
            if claim is not None and not settled:
                with contextlib.suppress(*DATABASE_ERRORS):
                    await self._forget(scope, claim)

    async def _settle(self, scope: Scope, claim: tuple[str, str], held: list[Message]) -> None:
        start = held[0]
        status = int(start["status"])
        if not 200 <= status < 300:
            await self._forget(scope, claim)
            return
        content_type = ""
        for name, value in start.get("headers", []):
            if name.lower() == b"content-type":
                content_type = value.decode("latin-1")
        body = b"".join(part.get("body", b"") for part in held[1:])
        await _on_claim(
            scope,
            claim,
            idempotency.keep_answer,
            status_code=status,
            content_type=content_type,
            body=body,
        )

    async def _forget(self, scope: Scope, claim: tuple[str, str]) -> None:
        await _on_claim(scope, claim, idempotency.forget)


async def _on_claim(
    scope: Scope, claim: tuple[str, str], service: Callable[..., None], **details: Any
) -> None:
    """Run ``service`` (keep or forget) for ``claim``, off the event loop."""
    api_key_id, key = claim
    await run_in_threadpool(
        functools.partial(
            service,
            session_factory=scope["app"].state.session_factory,
            api_key_id=api_key_id,
            key=key,
            **details,
        )
    )
