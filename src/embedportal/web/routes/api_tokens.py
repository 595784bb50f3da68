"""`POST /api/reports/{reportId}/token`: an embed token for an open viewer (docs/token-api.md).

Every call re-checks access, so a viewer whose access was removed gets no new token. Every open
viewer calls it, often all at once, so a cache hit does no database I/O: who may see what is read
through the read cache (dropped at once by any access or settings change), the tokens handed out
are counted in memory (TokenTally), and no database session is held while Power BI is asked.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Body, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from embedportal.access.capacity_rights import capacity_rights
from embedportal.access.embedding import USER_OWNED, embedding_of
from embedportal.access.grants import RlsIdentityMissingError, can_view, effective_identity
from embedportal.access.organization import (
    EffectiveConnection,
    effective_connection,
    get_organization,
)
from embedportal.access.rls_check import identity_problem
from embedportal.capacity.activity import ActivityKind
from embedportal.capacity.control import CapacityControl, CapacityNotConfiguredError
from embedportal.capacity.controller import CapacityController, request_resume
from embedportal.capacity.decisions import REQUEST_FRESH_FOR, Action, CapacityState
from embedportal.capacity.permissions import CapacityPermissions
from embedportal.capacity.probe import CapacityProbe
from embedportal.db.base import utcnow
from embedportal.db.models import Capacity, CapacityResumeRequest, Report, User
from embedportal.db.session import session_scope
from embedportal.i18n import N_, _
from embedportal.powerbi import (
    EffectiveIdentity,
    PowerBIAuthError,
    PowerBIConnection,
    PowerBIError,
    PowerBIForbiddenError,
    PowerBINotFoundError,
    PowerBIThrottledError,
    PowerBIUnavailableError,
)
from embedportal.settings import Settings
from embedportal.tokens.gate import GateBusyError
from embedportal.tokens.person import PersonTokenRefusal, aad_answer, person_token
from embedportal.tokens.policy import TokenPolicy
from embedportal.tokens.service import IssuedToken, TokenWaitTimeoutError, policy_of
from embedportal.web.deps import (
    NotSignedIn,
    TokenApiCallDep,
    TokenApiServices,
    token_api_call,
)
from embedportal.web.input_guard import guard_input

logger = logging.getLogger("embedportal.tokens")

CAPACITY_NOT_ACTIVE = "CapacityNotActive"
CAPACITY_STARTING = "CapacityStarting"
CAPACITY_OFF_MESSAGE = N_(
    "The Power BI capacity is off. The report comes back when it is running again."
)
CAPACITY_STARTING_MESSAGE = N_(
    "Starting the capacity. The report loads by itself in a minute or two."
)
# A person opening or touching a report starts its capacity on demand; a viewer that merely
# keeps its report alive (margin, timed, wake, recovery) does not.
ON_DEMAND_REASONS = frozenset({"load", "interaction"})
# A starting capacity is asked about often, so the report appears soon after it runs.
STARTING_RETRY_SECONDS = 3
# How long a token request waits on ARM (or Power BI) for its capacity's state. Past it the state
# counts as unknown and the token is not held back; the reading goes on and fills the cache.
CAPACITY_READ_WAIT_SECONDS = 1.0
# How soon a viewer should try again when Power BI is down and said nothing itself.
DEFAULT_RETRY_SECONDS = 5
# Viewers asking without a token to show (opening, or after theirs died): a still-valid cached
# token beats a refusal while Power BI cannot mint. Viewers that hold a token keep it and retry.
STALE_OK_REASONS = frozenset({"load", "recovery", "expired-error"})


class TokenRequestBody(BaseModel):
    """Optional: why the viewer asks (margin, interaction, timed, wake, recovery, …)."""

    reason: str | None = Field(None, max_length=40, pattern=r"^[A-Za-z-]*$")


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


@dataclass(frozen=True)
class _ReportCapacity:
    """The report's capacity as the portal controls it, and what this user may do with it."""

    capacity_id: str
    starting_message: str
    rights: CapacityPermissions


@dataclass(frozen=True)
class _TokenContext:
    """What minting needs from the database, read in one go off the event loop."""

    policy: TokenPolicy
    connection: EffectiveConnection
    identity: EffectiveIdentity | None
    capacity: _ReportCapacity | None  # None: not on a capacity the portal controls
    # The catalogue knows the report's capacity (controlled or not); the older capacity probe
    # (EMBEDPORTAL_CAPACITY_*) only speaks for reports whose capacity is unknown.
    capacity_known: bool
    # Embedded with the person's own Entra token (tokens/person.py), not an embed token.
    user_owned: bool = False


@dataclass(frozen=True)
class _Refusal:
    """A decision not to mint, cached like a context: signed out, unknown report, no access."""

    status: int
    detail: str
    code: str = ""


def _load_token_context(
    session_factory: sessionmaker[Session], settings: Settings, user_id: int, report_id: str
) -> tuple[Report, _TokenContext] | _Refusal:
    """Everything one token request needs from the database, in one short unit of work (its
    connection goes back to the pool before Power BI is asked)."""
    with session_scope(session_factory) as session:
        user = session.get(User, user_id)
        if user is None or user.is_blocked:
            return _Refusal(401, "")
        report = session.get(Report, report_id)
        if report is None or not report.is_available:
            return _Refusal(404, N_("There is no such report."))
        if not can_view(session=session, user=user, report=report):
            return _Refusal(
                403,
                N_(
                    "You do not have access to this report. Ask an administrator to grant it "
                    "to you."
                ),
            )
        organization = get_organization(session=session)
        user_owned = embedding_of(report=report, organization=organization) == USER_OWNED
        try:
            # A person's own token carries their identity: Power BI applies their RLS roles.
            identity = (
                None
                if user_owned
                else effective_identity(session=session, user=user, report=report)
            )
        except RlsIdentityMissingError as error:
            return _Refusal(403, error.reason, "RlsIdentityMissing")
        capacity = session.get(Capacity, report.capacity_id) if report.capacity_id else None
        context = _TokenContext(
            policy=policy_of(organization),
            connection=effective_connection(session=session, settings=settings),
            identity=identity,
            capacity=_ReportCapacity(
                capacity_id=capacity.id,
                starting_message=capacity.starting_message,
                rights=capacity_rights(session=session, user=user),
            )
            if capacity is not None and capacity.is_configured
            else None,
            capacity_known=capacity is not None,
            user_owned=user_owned,
        )
        session.expunge(report)
        return report, context


# The token request's reason, as activity for the capacity's idle clock (activity.py says
# which of them count for whom); the rest are an open viewer keeping its report alive.
_ACTIVITY_OF_REASON = {
    "load": ActivityKind.OPENED,
    "interaction": ActivityKind.INTERACTION,
    "timed": ActivityKind.TIMED_REFRESH,
}


def _start_pending(session_factory: sessionmaker[Session], capacity_id: str) -> bool:
    """Whether someone's opening of a report is starting the capacity right now."""
    with session_scope(session_factory) as session:
        capacity = session.get(Capacity, capacity_id)
        if capacity is not None and capacity.operation == Action.RESUME.value:
            return True
        request = session.get(CapacityResumeRequest, capacity_id)
        return request is not None and utcnow() - request.requested_at <= REQUEST_FRESH_FOR


def _note_resume_request(
    session_factory: sessionmaker[Session], capacity_id: str, user_id: int
) -> None:
    with session_scope(session_factory) as session:
        user = session.get(User, user_id)
        if user is not None:
            request_resume(session=session, capacity_id=capacity_id, user=user, now=utcnow())


def _error(
    status: int, detail: str, code: str, *, retry_after: float | None = None
) -> JSONResponse:
    headers = {"Cache-Control": "no-store"}
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return JSONResponse({"detail": detail, "code": code}, status_code=status, headers=headers)


def _powerbi_failure(error: PowerBIError) -> JSONResponse:
    """Power BI's refusal, in the viewer's terms. Never a 500: every failure has a reason."""
    if error.code == CAPACITY_NOT_ACTIVE or CAPACITY_NOT_ACTIVE in error.message:
        return _error(
            503,
            _("The Power BI capacity is off. The report comes back when it is running again."),
            CAPACITY_NOT_ACTIVE,
            retry_after=error.retry_after_seconds or DEFAULT_RETRY_SECONDS,
        )
    if isinstance(error, PowerBIThrottledError):
        return _error(
            429,
            _("Power BI asked the portal to slow down. The viewer retries by itself."),
            "Throttled",
            retry_after=error.retry_after_seconds or DEFAULT_RETRY_SECONDS,
        )
    if isinstance(error, PowerBIUnavailableError):
        return _error(
            503,
            _("Power BI did not answer. The viewer retries by itself."),
            "PowerBIUnavailable",
            retry_after=error.retry_after_seconds or DEFAULT_RETRY_SECONDS,
        )
    if isinstance(error, PowerBIAuthError):
        detail = _(
            "Power BI refused the portal's credentials. An administrator must check the "
            "connection in Admin → Settings."
        )
        return _error(502, detail, "PowerBIAuthFailed")
    if isinstance(error, PowerBIForbiddenError):
        detail = _(
            "Power BI refused to issue a token for this report. An administrator must check "
            "the service principal's access to the workspace."
        )
        return _error(502, detail, "PowerBIForbidden")
    if isinstance(error, PowerBINotFoundError):
        detail = _(
            "Power BI no longer has this report. An administrator can sync the catalogue in "
            "Admin → Reports."
        )
        return _error(502, detail, "ReportNotInPowerBI")
    if identity_problem(error.message)[0] in ("unknown_role", "roles_required"):
        # The identity the portal presents is wrong for the data: asking again cannot help,
        # an administrator must change it, so it is final like a missing identity.
        return _error(403, _refusal_in_plain_words(error), "RlsIdentityMissing")
    return _error(502, _refusal_in_plain_words(error), "PowerBIError")


def _refusal_in_plain_words(error: PowerBIError) -> str:
    """Power BI's other refusals as the viewer reads them: a role or identity problem said as
    such, anything else with Power BI's words (without ids) for whoever they ask for help."""
    kind, role, detail = identity_problem(error.message)
    if kind == "unknown_role":
        return _(
            "Your RLS role “%(role)s” does not exist in this report's data, so the report "
            "cannot be shown to you. Ask an administrator to correct your RLS roles.",
            role=role,
        )
    if kind == "roles_required":
        return _(
            "This report's data is filtered by RLS role and you have none for it. Ask an "
            "administrator to set your RLS role for this report."
        )
    return _(
        "Power BI refused to open this report. Ask an administrator to check it in Admin → "
        "Reports. Power BI said: %(reason)s",
        reason=detail,
    )


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
        return _error(
            503,
            _("The portal is busy. The viewer retries by itself."),
            "Busy",
            retry_after=busy.retry_after_seconds,
        )


async def _context_of(
    *, api: TokenApiServices, user: User, report_id: str
) -> tuple[Report, _TokenContext] | _Refusal:
    # The settings object is part of the key: a test (or a reload) may swap it.
    key = ("token-context", user.id, report_id, id(api.settings))
    return await api.read_cache.get_or_load(
        key,
        functools.partial(
            _load_token_context, api.session_factory, api.settings, user.id, report_id
        ),
    )


async def _issue(
    *, report_id: str, user: User, reason: str, api: TokenApiServices, queued_seconds: float
) -> JSONResponse:
    metrics = api.metrics
    loaded = await _context_of(api=api, user=user, report_id=report_id)
    if isinstance(loaded, _Refusal):
        if loaded.status == 401:
            raise NotSignedIn()
        if loaded.code:
            metrics.token_requests.labels(outcome="forbidden").inc()
            return _error(loaded.status, _(loaded.detail), loaded.code)
        if loaded.status == 403:
            metrics.token_requests.labels(outcome="forbidden").inc()
        raise HTTPException(status_code=loaded.status, detail=_(loaded.detail))
    report, context = loaded
    if context.user_owned:
        return await _person_answer(api=api, user=user, context=context, reason=reason)
    connection = context.connection
    if not connection.ready or connection.connection is None:
        metrics.token_requests.labels(outcome="not_connected").inc()
        return _error(
            503,
            _(
                "The portal is not connected to Power BI yet. An administrator must set the "
                "connection in Admin → Settings."
            ),
            "PowerBINotConnected",
        )
    refusal = await _capacity_refusal(
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
        return _powerbi_failure(error)
    except PowerBIError as error:
        logger.warning("token for report %s refused: %s", report.id, error)
        metrics.token_requests.labels(outcome="powerbi_error").inc()
        return _powerbi_failure(error)
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
    *, api: TokenApiServices, user: User, context: _TokenContext, reason: str
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
        return _error(
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


_T = TypeVar("_T")


async def _within_wait(reading: Awaitable[_T]) -> _T | None:
    """The reading if it comes within CAPACITY_READ_WAIT_SECONDS, else None. A slow ARM must
    not hold a token request: the reading carries on unwaited and its answer is remembered."""
    task = asyncio.ensure_future(reading)
    try:
        return await asyncio.wait_for(asyncio.shield(task), CAPACITY_READ_WAIT_SECONDS)
    except TimeoutError:
        task.add_done_callback(_forget_outcome)
        return None


def _forget_outcome(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.info("a capacity reading nobody waited for failed: %s", task.exception())


async def _capacity_refusal(
    context: _TokenContext,
    connection: PowerBIConnection,
    user: User,
    reason: str,
    session_factory: sessionmaker[Session],
    probe: CapacityProbe,
    control: CapacityControl,
    controller: CapacityController,
) -> JSONResponse | None:
    """503 while the report's capacity is not running (a paused capacity cannot render it):
    CapacityStarting for a user allowed to turn it on (who has just asked for it to start),
    CapacityNotActive for the others. None when the report may be shown (or its capacity's
    state is unknown: then tokens are not held back)."""
    # A viewer asking because its iframe saw the capacity fail gets a fresh look at it.
    fresh = reason == "capacity"
    if context.capacity is None:
        if context.capacity_known:
            return None  # a capacity without Azure coordinates: its state cannot be read
        reading = (None if fresh else probe.remembered(connection)) or await _within_wait(
            probe.reading(connection, fresh=fresh)
        )
        if reading is None or reading.running is not False:
            return None
        return _error(503, _(CAPACITY_OFF_MESSAGE), CAPACITY_NOT_ACTIVE, retry_after=5)
    capacity = context.capacity
    # Almost always remembered, or refreshed in the background while a recent one stands in:
    # read without a task, and without every open viewer waiting on ARM when it expires.
    status = None if fresh else control.status_without_waiting(capacity.capacity_id)
    if status is None:
        try:
            status = await _within_wait(
                control.status(capacity_id=capacity.capacity_id, fresh=fresh)
            )
        except CapacityNotConfiguredError:
            return None
    if status is None or status.state in (CapacityState.RUNNING, CapacityState.UNKNOWN):
        return None
    off = _error(
        503, _(CAPACITY_OFF_MESSAGE), CAPACITY_NOT_ACTIVE, retry_after=DEFAULT_RETRY_SECONDS
    )
    if not capacity.rights.turn_on_on_demand.allowed:
        return off
    if reason in ON_DEMAND_REASONS:
        await run_in_threadpool(
            _note_resume_request, session_factory, capacity.capacity_id, user.id
        )
        controller.wake()
    elif not await run_in_threadpool(_start_pending, session_factory, capacity.capacity_id):
        # An open report nobody touches does not start a capacity that paused for being idle
        # (or a forgotten tab would undo every idle pause); it waits, and comes back with it.
        return off
    return _error(
        503,
        capacity.starting_message.strip() or _(CAPACITY_STARTING_MESSAGE),
        CAPACITY_STARTING,
        retry_after=STARTING_RETRY_SECONDS,
    )
