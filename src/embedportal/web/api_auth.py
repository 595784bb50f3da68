"""Who calls the integration API (`/api/v1`): an API key, never a session cookie.

The key comes as `Authorization: Bearer <key>` or `X-API-Key: <key>`. A route declares the
scope it needs with `require_scope("users:write")`; the dependency authenticates the key
(access/api_keys.py), spends one request from the key's rate limit, checks the scope, and
hands the route the `ApiCaller`. Refusals are JSON `{"code", "message"}`: 401 (with
`WWW-Authenticate: Bearer`) for no key, a wrong one (InvalidApiKey), an expired one
(ApiKeyExpired) or a revoked one (ApiKeyRevoked); 429 RateLimited with Retry-After; 403
InsufficientScope naming the scope. Changes are audited by their services; a read, once a day
per key and call (access/api_keys.py's ReadMemo). An address that sent too many wrong keys gets 429
TooManyFailedKeys for every call, right key or wrong, until its allowance comes back (so a
guesser learns nothing from the answers meanwhile). CSRF does not apply: a browser never sends
the key by itself.
"""

from __future__ import annotations

import functools
import math
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Request, Security
from fastapi.params import Depends as DependsParam
from fastapi.responses import Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from embedportal.access.api_keys import (
    SCOPES,
    ApiCaller,
    ApiKeyRefused,
    LastUseMemo,
    ReadMemo,
    authenticate,
    record_read,
    write_last_use,
)
from embedportal.db.base import utcnow
from embedportal.db.session import session_scope
from embedportal.i18n import _
from embedportal.web.api_v1 import ApiError, api_error_response
from embedportal.web.deps import ClientAddress, SessionFactoryDep
from embedportal.web.idempotency import (
    IDEMPOTENCY_HEADER,
    IDEMPOTENT_METHODS,
    IdempotentReplay,
    claim_or_replay,
    replay_response,
)
from embedportal.web.rate_limit import SessionBuckets

API_V1_PREFIX = "/api/v1"
API_KEY_HEADER = "X-API-Key"


def install_api_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_request: Request, error: ApiError) -> Response:
        return api_error_response(error.status, error.code, error.message, headers=error.headers)

    @app.exception_handler(IdempotentReplay)
    async def replayed(_request: Request, answer: IdempotentReplay) -> Response:
        return replay_response(answer.replay)


async def get_api_limiter(request: Request) -> SessionBuckets:
    limiter: SessionBuckets = request.app.state.api_limiter
    return limiter


async def get_api_key_failures(request: Request) -> SessionBuckets:
    failures: SessionBuckets = request.app.state.api_key_failures
    return failures


async def get_api_key_memo(request: Request) -> LastUseMemo:
    memo: LastUseMemo = request.app.state.api_key_memo
    return memo


ApiLimiterDep = Annotated[SessionBuckets, Depends(get_api_limiter)]
ApiKeyMemoDep = Annotated[LastUseMemo, Depends(get_api_key_memo)]
ApiKeyFailuresDep = Annotated[SessionBuckets, Depends(get_api_key_failures)]


async def get_api_read_memo(request: Request) -> ReadMemo:
    memo: ReadMemo = request.app.state.api_read_memo
    return memo


ApiReadMemoDep = Annotated[ReadMemo, Depends(get_api_read_memo)]

# Declared for the OpenAPI (the reference shows both ways in); the dependency reads the headers.
_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <API key>`")
_api_key_header = APIKeyHeader(
    name=API_KEY_HEADER, auto_error=False, description="`X-API-Key: <API key>`"
)


IDEMPOTENCY_DOC = (
    "On a change (POST, PATCH): the same key again, from the same API key within 24 hours, "
    "answers what the first request answered without doing it again (marked "
    "`Idempotent-Replayed: true`). 1 to 255 visible ASCII characters; a new UUID per change."
)


def _unauthorized(code: str, message: str) -> ApiError:
    return ApiError(401, code, message, headers={"WWW-Authenticate": "Bearer"})


def _retry_after(wait: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(min(wait, 3600))))}


def _authenticate(session_factory: sessionmaker[Session], secret: str) -> ApiCaller:
    with session_scope(session_factory) as session:
        return authenticate(session=session, secret=secret)


def require_scope(scope: str) -> Any:
    """The dependency (``Depends``) of a route that needs ``scope``: the calling key."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")

    # Documented where it does something: on the calls that change.
    documented = not scope.endswith(":read")

    async def api_caller(
        session_factory: SessionFactoryDep,
        limiter: ApiLimiterDep,
        request: Request,
        memo: ApiKeyMemoDep,
        reads: ApiReadMemoDep,
        failures: ApiKeyFailuresDep,
        address: ClientAddress,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        header_key: Annotated[str | None, Depends(_api_key_header)],
        # A default rather than Annotated: the annotation is a string that cannot see
        # `documented`, a variable of this closure.
        idempotency_key: str | None = Header(  # noqa: B008 - FastAPI's parameter declaration
            None,
            alias=IDEMPOTENCY_HEADER,
            description=IDEMPOTENCY_DOC,
            include_in_schema=documented,
        ),
    ) -> ApiCaller:
        secret = (bearer.credentials if bearer is not None else None) or header_key
        if not secret:
            raise _unauthorized(
                "InvalidApiKey",
                _(
                    "Send an API key as “Authorization: Bearer <key>” or “X-API-Key: <key>”. "
                    "Administrators make keys in Admin → API keys."
                ),
            )
        barred = failures.wait(address)
        if barred:
            raise ApiError(
                429,
                "TooManyFailedKeys",
                _("Too many wrong API keys from this address. Wait a moment and try again."),
                headers=_retry_after(barred),
            )
        try:
            caller = await run_in_threadpool(_authenticate, session_factory, secret.strip())
        except ApiKeyRefused as refusal:
            failures.take(address)
            raise _unauthorized(refusal.code, refusal.message) from None
        wait = limiter.take(caller.key_id)
        if wait:
            raise ApiError(
                429,
                "RateLimited",
                _("Too many requests with this API key. Wait a moment and try again."),
                headers=_retry_after(wait),
            )
        if scope not in caller.scopes:
            raise ApiError(
                403,
                "InsufficientScope",
                _("This API key does not have the scope “%(scope)s” this call needs.", scope=scope),
            )
        now = utcnow()
        if memo.due(caller.key_id, now):
            await run_in_threadpool(
                functools.partial(
                    write_last_use, session_factory=session_factory, key_id=caller.key_id, now=now
                )
            )
        if request.method == "GET":
            call = f"GET {getattr(request.scope.get('route'), 'path', request.url.path)}"
            if reads.due(caller.key_id, call, now.date()):
                await run_in_threadpool(
                    functools.partial(
                        record_read, session_factory=session_factory, caller=caller, call=call
                    )
                )
        elif idempotency_key is not None and request.method in IDEMPOTENT_METHODS:
            await claim_or_replay(request=request, api_key_id=caller.key_id, key=idempotency_key)
        return caller

    api_caller.__name__ = f"api_caller_{scope.replace(':', '_')}"
    # Security rather than Depends: the OpenAPI names the scope in each operation's security
    # requirement (OpenAPI 3.1 lets a non-OAuth2 scheme list the roles it needs).
    dependency: DependsParam = Security(api_caller, scopes=[scope])
    return dependency
