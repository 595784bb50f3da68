"""`POST /api/reports/{reportId}/token`: an embed token for an open viewer (docs/token-api.md).

Every call re-checks access, so a viewer whose access was removed gets no new token. Every open
viewer calls it, often all at once, so a cache hit does no database I/O: who may see what is read
through the read cache (dropped at once by any access or settings change), the tokens handed out
are counted in memory (TokenTally), and no database session is held while Power BI is asked.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, TypeAdapter, ValidationError

from embedportal.capacity.activity import ActivityKind
from embedportal.db.models import Report, User
from embedportal.i18n import _
from embedportal.powerbi import PowerBIError
from embedportal.tokens.gate import GateBusyError
from embedportal.tokens.person import PersonTokenRefusal, aad_answer, person_token
from embedportal.tokens.service import IssuedToken, TokenWaitTimeoutError
from embedportal.web.deps import (
    NotSignedIn,
    TokenApiCallDep,
    TokenApiServices,
    token_api_call,
)
from embedportal.web.input_guard import guard_input
from embedportal.web.token_answers import (
    STALE_OK_REASONS,
    Refusal,
    TokenContext,
    TokenRequestBody,
    capacity_refusal,
    error_answer,
    load_token_context,
    powerbi_failure,
)

logger = logging.getLogger("embedportal.tokens")


class TokenAnswer(BaseModel):
    token: str
    tokenId: str  # noqa: N815 - the JSON field name is the contract
    expiration: str
    expiresIn: int  # noqa: N815
    policy: dict[str, Any]


_OPTIONAL_BODY: TypeAdapter[TokenRequestBody | None] = TypeAdapter(TokenRequestBody | None)


def _is_json(content_type: str) -> bool:
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


async def _token_request_body(request: Request) -> TokenRequestBody | None:
    """The optional JSON body, read and refused as FastAPI would (422 InvalidRequest)."""
    raw = await request.body()
    if not raw:
        return None
    if not _is_json(request.headers.get("content-type", "")):
        raise RequestValidationError(
            [
                {
                    "type": "model_attributes_type",
                    "loc": ("body",),
                    "msg": "Input should be a valid dictionary or object to extract fields from",
                    "input": None,
                }
            ]
        )
    try:
        return _OPTIONAL_BODY.validate_json(raw)
    except ValidationError as error:
        problems = error.errors(include_url=False)
        raise RequestValidationError(
            [{**problem, "loc": ("body", *problem["loc"])} for problem in problems]
        ) from None


class TokenRoute(APIRoute):
    """The token API's route. FastAPI declares it (the path, the body and the answers in the
    OpenAPI, its place among the routes) but the request is handled here, without FastAPI's
    dependency solving: that was a third of a cache hit's CPU (bench/profile_hit.py), and
    every open viewer calls this, often all at once. It does what the declared signature
    says, in the same order: the app's input guard, the signed-in user with CSRF (401 before
    403), then the optional body (tests/web/test_api_tokens.py holds the two to each other)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        async def handle(request: Request) -> Response:
            # Read first, as FastAPI does: the input guard may parse the same bytes as a form.
            await request.body()
            await guard_input(request)
            call = await token_api_call(request)
            body = await _token_request_body(request)
            return await issue_token(request.path_params["report_id"], call, body)

        return handle


router = APIRouter(tags=["api"], route_class=TokenRoute)


# The token request's reason, as activity for the capacity's idle clock (activity.py says
# which of them count for whom); the rest are an open viewer keeping its report alive.
_ACTIVITY_OF_REASON = {
    "load": ActivityKind.OPENED,
    "interaction": ActivityKind.INTERACTION,
    "timed": ActivityKind.TIMED_REFRESH,
}


@router.post(
    "/api/reports/{report_id}/token",
    response_model=TokenAnswer,
    responses={
        401: {"description": "Not signed in"},
        403: {
            "description": "No access, no RLS identity for an RLS report, or (user-owned "
            "report) no Microsoft sign-in: code MicrosoftSignInNeeded"
        },
        404: {"description": "Unknown report"},
        429: {"description": "Power BI throttled; Retry-After says when to retry"},
        502: {"description": "Power BI refused (credentials, permissions)"},
        503: {
            "description": "Capacity off (code CapacityNotActive), Power BI unreachable, or "
            "Entra unreachable for a user-owned report (EntraUnavailable)"
        },
    },
)
async def issue_token(
    report_id: str,
    # The session is checked before CSRF, so a signed-out caller gets 401, not 403.
    call: TokenApiCallDep,
    body: Annotated[TokenRequestBody | None, Body()] = None,
) -> JSONResponse:
    user, api = call.user, call.api
    reason = body.reason if body is not None and body.reason else "load"
    try:
        async with api.gate.turn() as queued:
            return await _issue(
                report_id=report_id, user=user, reason=reason, api=api, queued_seconds=queued
            )
    except GateBusyError as busy:
        api.metrics.token_requests.labels(outcome="busy").inc()
        return error_answer(
            503,
            _("The portal is busy. The viewer retries by itself."),
            "Busy",
            retry_after=busy.retry_after_seconds,
        )


async def _context_of(
    *, api: TokenApiServices, user: User, report_id: str
) -> tuple[Report, TokenContext] | Refusal:
    # The settings object is part of the key: a test (or a reload) may swap it.
    key = ("token-context", user.id, report_id, id(api.settings))
    return await api.read_cache.get_or_load(
        key,
        functools.partial(
            load_token_context, api.session_factory, api.settings, user.id, report_id
        ),
    )


async def _issue(
    *, report_id: str, user: User, reason: str, api: TokenApiServices, queued_seconds: float
) -> JSONResponse:
    metrics = api.metrics
    loaded = await _context_of(api=api, user=user, report_id=report_id)
    if isinstance(loaded, Refusal):
        if loaded.status == 401:
            raise NotSignedIn()
        if loaded.code:
            metrics.token_requests.labels(outcome="forbidden").inc()
            return error_answer(loaded.status, _(loaded.detail), loaded.code)
        if loaded.status == 403:
            metrics.token_requests.labels(outcome="forbidden").inc()
        raise HTTPException(status_code=loaded.status, detail=_(loaded.detail))
    report, context = loaded
    if context.user_owned:
        return await _person_answer(api=api, user=user, context=context, reason=reason)
    connection = context.connection
    if not connection.ready or connection.connection is None:
        metrics.token_requests.labels(outcome="not_connected").inc()
        return error_answer(
            503,
            _(
                "The portal is not connected to Power BI yet. An administrator must set the "
                "connection in Admin → Settings."
            ),
            "PowerBINotConnected",
        )
    refusal = await capacity_refusal(
        context,
        connection.connection,
        user,
        reason,
        api.session_factory,
        api.probe,
        api.control,
        api.controller,
    )
    if refusal is not None:
        metrics.token_requests.labels(outcome="capacity_off").inc()
        return refusal
    try:
        issued: IssuedToken = await api.service.issue(
            minter=api.clients.get(connection.connection),
            scope=connection.cache_scope,
            report=report,
            identity=context.identity,
            policy=context.policy,
            allow_stale=reason in STALE_OK_REASONS,
            already_waited_seconds=queued_seconds,
        )
    except TokenWaitTimeoutError as error:
        metrics.token_requests.labels(outcome="powerbi_error").inc()
        return powerbi_failure(error)
    except PowerBIError as error:
        logger.warning("token for report %s refused: %s", report.id, error)
        metrics.token_requests.labels(outcome="powerbi_error").inc()
        return powerbi_failure(error)
    (metrics.token_cache_hits if issued.shared else metrics.generate_token_calls).inc()
    metrics.token_requests.labels(outcome="issued").inc()
    if context.capacity is not None:
        api.ledger.note(
            capacity_id=context.capacity.capacity_id,
            user_id=user.id,
            kind=_ACTIVITY_OF_REASON.get(reason, ActivityKind.HEARTBEAT),
            keeps_capacity_on=context.capacity.rights.keeps_on.allowed,
        )
    answer = issued.as_json()
    api.tally.note(
        user_id=user.id,
        user_email=user.email,
        report_id=report.id,
        token_id=issued.token_id,
        shared=issued.shared,
        expiration=answer["expiration"],
        reason=reason,
    )
    return JSONResponse(answer, headers={"Cache-Control": "no-store"})


async def _person_answer(
    *, api: TokenApiServices, user: User, context: TokenContext, reason: str
) -> JSONResponse:
    """A user-owned report: the person's own Entra token (docs/token-api.md). Its capacity is
    not asked about (Power BI answers the person's token itself), but it still counts as in
    use, so the capacity does not pause under an open report."""
    try:
        token = await person_token(
            tokens=api.person_tokens,
            user_id=user.id,
            session_factory=api.session_factory,
            settings=api.settings,
            flows=api.sign_ins,
            reason=reason,
        )
    except PersonTokenRefusal as refusal:
        api.metrics.token_requests.labels(
            outcome="forbidden" if refusal.status == 403 else "powerbi_error"
        ).inc()
        return error_answer(
            refusal.status, _(refusal.detail), refusal.code, retry_after=refusal.retry_after
        )
    api.metrics.token_requests.labels(outcome="issued").inc()
    if context.capacity is not None:
        api.ledger.note(
            capacity_id=context.capacity.capacity_id,
            user_id=user.id,
            kind=_ACTIVITY_OF_REASON.get(reason, ActivityKind.HEARTBEAT),
            keeps_capacity_on=context.capacity.rights.keeps_on.allowed,
        )
    return JSONResponse(
        aad_answer(token, policy=context.policy), headers={"Cache-Control": "no-store"}
    )
